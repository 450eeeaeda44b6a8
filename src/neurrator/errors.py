"""User-facing errors: one exception type whose message is one line naming the file and the problem.

Also the one sanitiser of untrusted text shown on a terminal (`escape_controls`) and the one shortener of
long untrusted strings (`shorten`): file names, ids and texts read from archives and derived files may
hold terminal escape sequences, bidirectional overrides or megabytes of text.
"""

from __future__ import annotations

import re
from os import PathLike

__all__ = ["MAX_SHOWN_CHARS", "NeurratorError", "escape_controls", "shorten"]

#: C0 controls, DEL, C1 controls, and the bidirectional embeddings, overrides and isolates
#: (U+202A-U+202E, U+2066-U+2069), plus the line and paragraph separators (U+2028, U+2029).
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")

#: Longest untrusted string shown whole by `show`, `report` and the error messages (characters).
MAX_SHOWN_CHARS = 2000


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: object, *, keep_newlines: bool = False) -> str:
    """Any text -> the same text with every control character escaped visibly (one line unless ``keep_newlines``).

    C0 (``\\x00``-``\\x1f``), DEL, C1 (``\\x80``-``\\x9f``), the line/paragraph separators and the
    bidirectional overrides and isolates (U+202A-U+202E, U+2066-U+2069) become ``\\xNN`` / ``\\uNNNN``, so
    a file name or narration cannot move the cursor, recolour the terminal or reorder what a person reads.
    Escaping is idempotent (the backslash itself is not escaped).

    Examples
    --------
    >>> escape_controls("evil\\x1b[31m.nwb\\u202e")
    'evil\\\\x1b[31m.nwb\\\\u202e'
    >>> escape_controls("a\\nb", keep_newlines=True)
    'a\\nb'
    """
    text = str(text)
    if keep_newlines:
        return "\n".join(_CONTROLS.sub(_escape, line) for line in text.split("\n"))
    return _CONTROLS.sub(_escape, text)


def shorten(text: object, limit: int = MAX_SHOWN_CHARS) -> str:
    """Any text -> at most ``limit`` characters of it, a cut one saying its full length.

    Examples
    --------
    >>> shorten("abcdefgh", 3)
    'abc... [8 characters in all]'
    >>> shorten("abc", 3)
    'abc'
    """
    text = str(text)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [{len(text):,d} characters in all]"


class NeurratorError(Exception):
    """An error the user can cause (bad input file, unknown model id, missing weights, ...).

    Parameters
    ----------
    path
        The file, URL or identifier the problem is about (shown first in the message).
    problem
        What is wrong, in one sentence, ideally with what to do about it.

    The message is one line, with control characters escaped (`escape_controls`) and the path and the
    problem each cut to `MAX_SHOWN_CHARS` (`shorten`): both may quote untrusted input.

    Examples
    --------
    >>> str(NeurratorError("ses.nwb", "no Units table"))
    'ses.nwb: no Units table'
    >>> str(NeurratorError("bad\\x1b]0;title\\x07.nwb", "no Units table"))
    'bad\\\\x1b]0;title\\\\x07.nwb: no Units table'
    """

    def __init__(self, path: str | PathLike | None, problem: str) -> None:
        self.path = None if path is None else str(path)
        self.problem = " ".join(str(problem).split())  # always one line
        super().__init__(self.message)

    @property
    def message(self) -> str:
        problem = escape_controls(shorten(self.problem))
        return problem if self.path is None else f"{escape_controls(shorten(self.path))}: {problem}"

    def __str__(self) -> str:
        return self.message
