"""Hostile derived files for `report` and `show`: bad index columns, thumbnail and table bombs, huge and hostile
strings, and outputs aimed at the input or at NWB files. Each is refused in one line naming the file (exit 1, no
traceback, no "internal error"), the input unchanged and nothing left at the output path; long texts are cut."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from _helpers import assert_one_line_error, run_cli, sha256
from _report_fixture import make_derived
from click.testing import CliRunner

from neurrator.cli import main

NEURRATOR = "processing/neurrator"
LIMIT = 1_000_000
HUGE = 20_000_000  # characters of the hostile narration, after its hostile prefix
PREFIX = "\x1b]0;owned\x07\x1b[2J\u202e"


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    return make_derived(tmp_path_factory.mktemp("clean") / "sub-m7_ses-s3_desc-neurrator.nwb")


def _variant(clean: Path, folder: Path, edit) -> Path:
    import h5py

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / clean.name
    shutil.copy(clean, path)
    with h5py.File(path, "a") as f:
        edit(f)
    return path


def _set(name: str, index: int, value):
    def edit(f):
        f[f"{NEURRATOR}/{name}"][index] = value
    return edit


def _replace(f, name: str, data: np.ndarray | None = None, *, shape=None, dtype=None):
    """Replace a dataset, keeping its attributes (its NWB type): real ``data``, or an unallocated ``shape``."""
    ds = f[name]
    attrs = dict(ds.attrs)
    del f[name]
    if data is not None:
        new = f.create_dataset(name, data=data, chunks=True, compression="gzip")
    else:
        new = f.create_dataset(name, shape=shape, dtype=dtype, chunks=True, compression="gzip")
    new.attrs.update(attrs)


def _thumbnail_bomb(f):
    _replace(f, f"{NEURRATOR}/frame_thumbnails/frame_0", np.zeros((2000, 1000), np.uint8))


def _table_bomb(f):
    group = f[f"{NEURRATOR}/decoding_fidelity"]
    for name in list(group):  # every column (and the ids) declares 2 million rows: 16 MB each, nothing stored
        _replace(f, f"{NEURRATOR}/decoding_fidelity/{name}", shape=(2_000_000,), dtype=group[name].dtype)


#: name -> (edit, words the error line must hold); the error names the file in every case.
BAD_INDICES = {
    "fidelity subset -1": (_set("decoding_fidelity/unit_subset", 0, -1),
                           ["decoding_fidelity", "unit_subset", "-1", "12 rows of unit_subsets"]),
    "narration subset past the end": (_set("narrations/unit_subset", 3, 12),
                                      ["narrations", "unit_subset", "12", "12 rows of unit_subsets"]),
    "subset unit -1": (_set("unit_subsets/units", 0, -1), ["unit_subsets", "units", "-1", "6 rows of units"]),
    "narration frame -1": (_set("narrations/frame", 0, -1), ["narrations", "frame", "-1", "movie frames"]),
}
BOMBS = {
    "thumbnail": (_thumbnail_bomb, ["thumbnail frame_thumbnails/frame_0", "NEURRATOR_MAX_ARRAY_BYTES"]),
    "table": (_table_bomb, ["table decoding_fidelity", "NEURRATOR_MAX_ARRAY_BYTES"]),
}


def _invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def _one_line_error(result, path: Path, words) -> str:
    assert result.exit_code == 1, (result.exit_code, result.output, result.exception)
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"Error: {path}: "), lines[0]
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


CASES = {**BAD_INDICES, **BOMBS}
#: `show` prints no thumbnails (it never reads them); every other case reaches both commands.
RUNS = [(case, command) for case in CASES for command in ("show", "report")
        if not (case == "thumbnail" and command == "show")]


@pytest.mark.parametrize(("case", "command"), RUNS)
def test_hostile_derived_files_are_refused_in_one_line(case, command, clean, tmp_path, monkeypatch):
    monkeypatch.setenv("NEURRATOR_MAX_ARRAY_BYTES", str(LIMIT))
    edit, words = CASES[case]
    path = _variant(clean, tmp_path / "in", edit)
    before = sha256(path.parent)
    html = path.with_suffix(".html")
    _one_line_error(_invoke(command, str(path)), path, words)
    assert sha256(path.parent) == before  # the input untouched, nothing written beside it
    assert not html.exists()


def test_the_clean_fixture_passes_the_same_limit(clean, tmp_path, monkeypatch):
    """The checks refuse the hostile variants, not any file: the clean one renders under the same limit."""
    monkeypatch.setenv("NEURRATOR_MAX_ARRAY_BYTES", str(LIMIT))
    path = _variant(clean, tmp_path, lambda f: None)
    assert _invoke("show", str(path)).exit_code == 0
    result = _invoke("report", str(path))
    assert result.exit_code == 0, result.output
    assert path.with_suffix(".html").is_file()


@pytest.fixture(scope="module")
def hostile_text(clean, tmp_path_factory) -> Path:
    """A narration of 20 million characters holding terminal escapes, and escapes in the ids."""
    def edit(f):
        f[f"{NEURRATOR}/narrations/text"][0] = PREFIX + "n" * HUGE
        f[f"{NEURRATOR}/unit_subsets/label"][0] = "all\x1b[31m\u2066"
        del f["general/session_id"]
        f["general/session_id"] = "s3\x1b[1A\x9b2K"

    return _variant(clean, tmp_path_factory.mktemp("text"), edit)


def test_show_cuts_long_texts_and_escapes_control_characters(hostile_text):
    result = _invoke("show", "--all", str(hostile_text))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert len(out) < 200_000, len(out)
    assert f"[{len(PREFIX) + HUGE:,d} characters in all]" in out  # the full length is stated
    assert "\\x1b]0;owned\\x07\\x1b[2J\\u202e" in out and "all\\x1b[31m\\u2066" in out and "s3\\x1b[1A\\x9b2K" in out
    assert all(line.isprintable() for line in out.splitlines())


def test_report_cuts_long_texts_and_escapes_control_characters(hostile_text, tmp_path):
    out = tmp_path / "page.html"
    result = _invoke("report", str(hostile_text), "-o", str(out))
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert len(page) < 2_000_000, len(page)
    assert f"[{len(PREFIX) + HUGE:,d} characters in all]" in page
    assert "\x1b" not in page and "\u202e" not in page and "\x9b" not in page


# -- outputs --------------------------------------------------------------------------------------------


def test_report_never_writes_over_its_input_or_an_nwb_file(clean, tmp_path):
    path = _variant(clean, tmp_path / "in", lambda f: None)
    other = _variant(clean, tmp_path / "other", lambda f: None)
    disguised = tmp_path / "disguised.html"  # an NWB file named like a page
    shutil.copy(clean, disguised)
    link = tmp_path / "link.html"
    link.symlink_to(path)
    before = {p: sha256(p) for p in (path, other, disguised)}
    cases = {
        "-o is the input": (["-o", str(path)], path, "is the input file"),
        "-o is the input through a link": (["-o", str(link)], link, "is the input file"),
        "-o is another NWB file": (["-o", str(other)], other, "ends in .nwb"),
        "-o is an HDF5 file named .html": (["-o", str(disguised)], disguised, "is an HDF5/NWB file"),
        "-o is a folder": (["-o", str(tmp_path)], tmp_path, "folder"),
    }
    for name, (args, named, words) in cases.items():
        result = _invoke("report", str(path), *args)
        assert result.exit_code != 0, name
        if "folder" not in name:  # click itself refuses a folder for -o (dir_okay=False)
            _one_line_error(result, named, [words])
    assert {p: sha256(p) for p in before} == before
    assert link.is_symlink()


def test_report_refuses_an_input_named_html(clean, tmp_path):
    page = tmp_path / "results.html"
    shutil.copy(clean, page)
    before = sha256(tmp_path)
    _one_line_error(_invoke("report", str(page)), page, ["HTML page"])
    assert sha256(tmp_path) == before


def test_show_plot_never_writes_over_its_input(clean, tmp_path):
    path = _variant(clean, tmp_path, lambda f: None)
    before = sha256(path)
    result = _invoke("show", str(path), "--plot", str(path))
    _one_line_error(result, path, ["is the input file"])
    assert sha256(path) == before


def test_the_promise_holds_in_a_real_process(clean, tmp_path):
    """The same refusal as a subprocess: one `Error: <file>: ...` line, exit 1, no traceback."""
    path = _variant(clean, tmp_path, _set("decoding_fidelity/unit_subset", 0, -1))
    before = sha256(tmp_path)
    assert_one_line_error(run_cli("report", str(path)), f"Error: {path}: ", "decoding_fidelity", "unit_subset")
    assert sha256(tmp_path) == before
