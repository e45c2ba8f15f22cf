"""The one error type pkubectl commands raise for the user to read."""

from __future__ import annotations


class CliError(Exception):
    """A user-facing failure: printed as ``error: MESSAGE`` on stderr, exit code 1.

    Commands raise it (or let client errors through) and never print
    tracebacks; ``kubectl.cli.main`` translates everything at the edge.
    """

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code
