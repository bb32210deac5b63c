"""The harness's own error types, below every other module so that any of them can raise them."""


class DatasetError(RuntimeError):
    """A dataset that is missing, corrupt or inconsistent with its declaration."""


class SubmissionError(RuntimeError):
    """A submission that cannot be loaded or breaks the plug-in contract."""
