"""The errors evosim reports to a user as one line.

Everything a user can fix (a bad scenario field, a run directory in the way, a damaged
or foreign file, a run too large for the machine) raises a subclass of
:class:`EvosimError`. The command line prints such an error as one line on stderr and
exits with code 2; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = [
    "EvosimError",
    "FileFormatError",
    "ResourceError",
    "RunDirectoryError",
    "ScenarioError",
]


class EvosimError(Exception):
    """Base class of the errors evosim reports as one line.

    Parameters
    ----------
    message
        What is wrong, naming the field, file or resource.
    hint
        Optional: what to do about it (appended after the message).
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ScenarioError(EvosimError, ValueError):
    """A scenario is invalid. The message is one line naming the field path."""


class FileFormatError(EvosimError, ValueError):
    """A file is unreadable, truncated, not evosim's, or disagrees with another file."""


class RunDirectoryError(EvosimError):
    """A run directory cannot be used: not empty, locked by another run, or incomplete."""


class ResourceError(EvosimError):
    """A run needs more memory or disk than the machine has (or the disk refused a write)."""
