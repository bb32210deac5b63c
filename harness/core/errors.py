"""The harness's own error types, below every other module so that any of them can raise them.

The command line turns these into one clear line; any other exception is a bug and shows
its traceback.
"""


class HarnessError(Exception):
    """Something a user can fix: bad data, a broken submission, an impossible setting."""


class DatasetError(HarnessError, RuntimeError):
    """A dataset that is missing, corrupt or inconsistent with its declaration."""


class SubmissionError(HarnessError, RuntimeError):
    """A submission that cannot be loaded or breaks the plug-in contract."""
