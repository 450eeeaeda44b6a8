"""Untrusted text on a terminal: every control character (C0, DEL, C1, bidi overrides and isolates) is escaped
visibly, in errors, in the CLI's log lines and in its one-line errors; long texts are cut with their length."""

from __future__ import annotations

import logging

import pytest
from _helpers import assert_one_line_error, run_cli

from neurrator.errors import MAX_SHOWN_CHARS, NeurratorError, escape_controls, shorten

HOSTILE = ["\x1b[31m", "\x1b]0;owned\x07", "\x00", "\x7f", "\x9b2J", "\u202e", "\u202a", "\u2066", "\u2069",
           "\r", "\x08", "\u2028"]


@pytest.mark.parametrize("bad", HOSTILE)
def test_every_control_character_is_escaped_visibly(bad):
    text = escape_controls(f"a{bad}b")
    assert text.isprintable(), repr(text)
    assert text.startswith("a\\") and text.endswith("b") and len(text) > 3
    assert escape_controls(text) == text  # idempotent


def test_escapes_name_the_code_point():
    assert escape_controls("\x1b") == "\\x1b"
    assert escape_controls("\u202e") == "\\u202e"
    assert escape_controls("\x85") == "\\x85"
    assert escape_controls("é ü 日本 ok") == "é ü 日本 ok"  # printable non-ASCII text stays as it is
    assert escape_controls("a\nb\x1b", keep_newlines=True) == "a\nb\\x1b"


def test_neurrator_error_is_one_safe_line_of_bounded_length():
    err = NeurratorError("evil\x1b[2J\u202e.nwb", "bad value " + "x" * 10 * MAX_SHOWN_CHARS + "\x07")
    text = str(err)
    assert text.isprintable() and text.startswith("evil\\x1b[2J\\u202e.nwb: bad value ")
    assert len(text) < 2 * MAX_SHOWN_CHARS + 200 and f"[{10 * MAX_SHOWN_CHARS + 11:,d} characters in all]" in text


def test_shorten_states_the_full_length():
    assert shorten("x" * 50, 10) == "xxxxxxxxxx... [50 characters in all]"
    assert shorten("short", 10) == "short"


def test_cli_log_lines_escape_what_they_quote(capsys):
    from neurrator.cli import _configure_output

    _configure_output(debug=False, quiet=False)
    logging.getLogger("neurrator.test").warning("asset %s\nFORGED LINE", "x\x1b[31m\u202e")
    err = capsys.readouterr().err
    assert "x\\x1b[31m\\u202e" in err and "\\x0aFORGED LINE" in err
    assert "\x1b" not in err and "\n" + "FORGED" not in err


def test_cli_error_line_escapes_a_hostile_file_name(tmp_path):
    bad = tmp_path / "ses\x1b]0;pwned\x07\u202e.nwb"
    bad.write_bytes(b"not hdf5 at all")
    proc = run_cli("show", str(bad))
    line = assert_one_line_error(proc, "\\x1b]0;pwned\\x07\\u202e.nwb")
    assert "\x1b" not in proc.stderr and "\u202e" not in proc.stderr and "\x07" not in proc.stderr
    assert line.isprintable()
