"""The ``bench`` command line: parses and checks options, then calls the layers below; the
health check of data and results (``bench doctor``) lives here too.
"""
from harness.cli.commands import main

__all__ = ["main"]
