"""User-facing errors: one exception type whose message is one line naming the file and the problem."""

from __future__ import annotations

from os import PathLike


class NeurratorError(Exception):
    """An error the user can cause (bad input file, unknown model id, missing weights, ...).

    Parameters
    ----------
    path
        The file, URL or identifier the problem is about (shown first in the message).
    problem
        What is wrong, in one sentence, ideally with what to do about it.

    Examples
    --------
    >>> str(NeurratorError("ses.nwb", "no Units table"))
    'ses.nwb: no Units table'
    """

    def __init__(self, path: str | PathLike | None, problem: str) -> None:
        self.path = None if path is None else str(path)
        self.problem = " ".join(str(problem).split())  # always one line
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return self.problem if self.path is None else f"{self.path}: {self.problem}"

    def __str__(self) -> str:
        return self.message
