"""README.md's "From Python" section, executed: every python block marked ``<!-- tested -->`` runs, in order,
in an empty folder, and what the blocks produce exists and holds what the section says it does."""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
TITLE = "From Python"


def section(text: str, title: str) -> str:
    """The text of the ``## title`` section, up to the next second-level heading."""
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert m, f"README.md has no '## {title}' section"
    return m.group(1)


def marked_blocks(text: str) -> list[str]:
    """The code of each ```python block right after an ``<!-- tested -->`` marker."""
    return re.findall(r"<!-- tested -->\s*\n```python\n(.*?)^```", text, flags=re.M | re.S)


def test_the_section_marks_its_python_blocks_as_tested():
    text = section(README.read_text(), TITLE)
    blocks = marked_blocks(text)
    assert len(blocks) == 4, "the section's four examples are marked <!-- tested -->"
    assert len(re.findall(r"^```python", text, flags=re.M)) == len(blocks), "an untested python block"
    for block in blocks:
        compile(block, "README.md", "exec")


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """(folder, namespace, stdout of each block) after running the section's blocks in an empty folder."""
    text = section(README.read_text(), TITLE)
    folder = tmp_path_factory.mktemp("readme")
    namespace: dict = {"__name__": "__readme__"}
    outputs = []
    before = Path.cwd()
    os.chdir(folder)
    try:
        for i, block in enumerate(marked_blocks(text)):
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(compile(block, f"README.md:{TITLE}:block{i + 1}", "exec"), namespace)
            outputs.append(out.getvalue())
    finally:
        os.chdir(before)
    return folder, namespace, outputs, text


@pytest.mark.slow
def test_the_session_and_the_run_are_what_the_section_says(ran):
    folder, ns, (out1, *_), text = ran
    claim = re.search(r"# (\d+) simulated units \((\d+) pass the quality filter\), (\d+) repeats of a (\d+)-frame",
                      text)
    assert claim, "the first block states the session's size"
    n_sim, n_kept, n_repeats, n_frames = map(int, claim.groups())
    truth, session, result = ns["truth"], ns["session"], ns["result"]
    assert len(truth.unit_ids) == n_sim and truth.frame_features.shape[0] == n_frames
    assert len(session.units) == n_kept == result.n_units
    assert sorted(set(session.presentations.repeat.tolist())) == list(range(n_repeats))
    # every file the text names is there, and they are the ones the run returned
    named = re.findall(r"`(derived/[^`]+)`", text)
    assert len(named) == 2
    for rel in named:
        assert (folder / rel).is_file(), rel
    assert (folder / result.output) == folder / named[0] and (folder / result.report) == folder / named[1]
    assert "narrations from all" in out1 and str(result.output) in out1


@pytest.mark.slow
def test_the_steps_give_the_numbers_in_the_file(ran):
    folder, ns, (_, out2, out3, _), text = ran
    analysis, binned, derived = ns["analysis"], ns["binned"], ns["derived"]
    assert binned.counts.shape == (4 * len(binned.frame), len(ns["session"].units))
    kinds = {r.subset.kind for r in analysis.results}
    assert kinds == {"all", "region", "cell_type", "random", "single_unit"}, kinds
    fid = derived["fidelity"]
    cos = fid[fid.metric == "centred_patch_cosine"].set_index("label")["value"]
    assert sorted(cos.index) == sorted(r.subset.label for r in analysis.results)
    for r in analysis.results:  # "with the same configuration it gives the same numbers as the file"
        assert r.metrics["centred_patch_cosine"].value == pytest.approx(cos[r.subset.label], abs=1e-6), r.subset.label
        assert f"{r.subset.label:22} {r.subset.n_units:3} units" in out2
    # the tables the comment lists, in its order (``...`` stands for the ones between)
    listed = re.search(r"print\(list\(derived\)\)\s+# (.*)", text).group(1).split(", ")
    head, tail = listed[: listed.index("...")], listed[listed.index("...") + 1:]
    assert list(derived)[: len(head)] == head and list(derived)[len(derived) - len(tail):] == tail
    assert str(list(derived)) in out3
    assert "chance_level" in out3 and "q_value" in out3


@pytest.mark.slow
def test_a_subset_decodes_through_the_blend_chosen_for_it(ran):
    """Block 4: the targets it computes are the maps training used (the all-unit choice is training's), and
    the subset's choice decodes the test repeats."""
    from neurrator.models import calibrate_blend

    folder, ns, (*_, out4), text = ran
    analysis, binned, choice, tokens = ns["analysis"], ns["binned"], ns["choice"], ns["tokens"]
    assert choice.n_units == 10 and repr(choice) in out4
    assert tokens.shape == (len(analysis.split.test), *ns["targets"].shape[1:])
    m = analysis.trained.model
    whole = calibrate_blend(analysis.trained, binned, ns["targets"], analysis.split.val)
    row = [float(v) for v in m.blend_table[m.blend_row(binned.counts.shape[1]), 1:]]
    assert [whole.beta, whole.gamma, whole.tau, whole.knn_k, whole.knn_w] == pytest.approx(row)
