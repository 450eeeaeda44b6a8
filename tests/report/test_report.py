"""`neurrator report` and `show --plot`: read by neurodata type, render every section from what the file
has, say what it lacks, embed everything, and never import torch."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from _report_fixture import BASELINES, CHANCE, SUBSETS, make_derived, new_tables, value

from neurrator.errors import NeurratorError
from neurrator.report.html import build_context, render_context, render_report, write_report
from neurrator.report.data import read_derived


@pytest.fixture(scope="module")
def derived(tmp_path_factory):
    return make_derived(tmp_path_factory.mktemp("report") / "sub-m7_ses-s3_desc-neurrator.nwb")


@pytest.fixture(scope="module")
def data(derived):
    return read_derived(derived)


@pytest.fixture(scope="module")
def page(derived):
    out = write_report(derived)
    assert out == derived.with_suffix(".html")  # default: next to the derived file
    return out.read_text(encoding="utf-8")


def test_read_derived_finds_containers_by_type(data):
    d = data
    assert list(d.subsets["label"]) == [s[0] for s in SUBSETS]
    visp_top1 = d.fidelity[(d.fidelity["label"] == "region:VISp") & (d.fidelity["metric"] == "top1")]
    assert visp_top1["value"].item() == pytest.approx(value(1, "top1"))
    assert visp_top1["ci_lo"].item() == pytest.approx(value(1, "top1") - 0.02)
    assert visp_top1["kind"].item() == "region"
    assert sorted(d.thumbnails) == [0, 1, 2, 3, 4] and d.thumbnails[2].shape == (8, 12) and d.thumbnails[2][0, 0] == 80
    assert d.units.groupby(["_region", "_cell_type"]).size()[("VISl", "SST")] == 1
    assert list(d.units.index) == [100, 101, 102, 103, 104, 105]
    assert set(d.narrations["label"]) == {s[0] for s in SUBSETS if s[1] != "random"}
    assert d.scaling is None and d.unit_neurration is None and d.group_comparison is None  # not in this file


def test_page_is_self_contained(page):
    assert page.startswith("<!DOCTYPE html>")
    external = re.findall(r'(?:src|href)\s*=\s*"(?!data:image/png;base64,|#)([^"]*)"', page)
    assert external == []
    assert "<link" not in page and "<script src" not in page and "@import" not in page and "url(" not in page


def test_page_shows_scores_with_chance_ci_and_baselines(page):
    for fig in ("fig-scaling", "fig-subsets"):
        assert f'id="{fig}" src="data:image/png;base64,' in page
    row = re.search(r"<tr><td>region:VISp</td><td>region</td><td class=\"num\">3</td><td>top1</td>(.*?)</tr>", page)
    assert row is not None
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))
    v = value(1, "top1")
    assert cells[:3] == [f"{v:.3g}", f"[{v - 0.02:.3g}, {v + 0.02:.3g}]", f"{CHANCE['top1']:.3g}"]
    baselines = page[page.index('id="baselines-table"'):]
    for name, shown in (("ridge:top1", "ridge regression"), ("knn:top1", "kNN"),
                        ("floor:narration_similarity", "word-salad floor"),
                        ("constant:narration_similarity", "constant narration")):
        assert re.search(rf"<td>{shown}</td><td>{name.split(':')[1]}</td><td class=\"num\">{BASELINES[name]:.3g}</td>",
                         baselines), name


def test_page_says_plainly_what_the_file_lacks(page):
    for missing in ("No ScalingTable in this file", "No UnitNeurrationTable in this file",
                    "No GroupComparisonTable in this file", "No GroupSeparationTable in this file",
                    "The file stores no per-latent top frames"):
        assert missing in page
    assert 'id="fig-reliability"' not in page and 'id="fig-comparison"' not in page
    assert "stores no stimulus frames" not in page  # this file has them


def test_example_windows_put_oracle_and_every_subset_side_by_side(page):
    block = page[page.index('id="example-0"'):]
    block = block[:block.index("</div>")]
    assert 'id="thumb-0" src="data:image/png;base64,' in block
    assert "oracle thing 0" in block
    for label, kind, _, _ in SUBSETS:
        assert (f"{label} sees thing 0" in block) == (kind != "random")


def test_absent_frames_and_scores_are_said(data):
    html = render_report(dataclasses.replace(data, thumbnails={}, fidelity=None, sae=None))
    assert "This file stores no stimulus frames" in html and 'id="thumb-' not in html
    assert "The file has no decoding-fidelity or scaling results" in html and "No SparseAutoencoder" in html
    assert "<img" not in html
    assert "oracle thing 0" in html  # the narrations still show


def test_new_tables_render_cards_crossings_and_group_figures(data):
    d = dataclasses.replace(data, **new_tables())
    ctx = build_context(d)
    assert {f["id"] for f in ctx["figures"].values() if f} == {"fig-scaling", "fig-subsets", "fig-reliability",
                                                               "fig-comparison", "fig-separation"}
    cross = {(c["region"], c["metric"]): (c["n"], c["ci"]) for c in ctx["crossings"]}
    assert cross[("VISp", "top1")] == ("4", "[3, 6]")
    assert cross[("VISl", "top1")][0].startswith("never")
    cards = {c["unit"]: c for c in ctx["cards"]}
    assert sorted(cards) == [100, 101, 103]  # Units ids, not rows
    assert (cards[103]["region"], cards[103]["cell_type"], cards[103]["driven"]) == ("VISl", "SST", True)
    assert [k["concept"] for k in cards[100]["concepts"]] == ["stripes"]  # sky has q = 0.5
    assert [f for f, src in cards[100]["top_frames"]] == [3, 1, 0] and all(src for _, src in cards[100]["top_frames"])
    assert cards[100]["loo_ci"] == "[0.002, 0.02]"
    html = render_context(ctx)
    assert html.count('class="card"') == 3 and 'id="filter-region"' in html
    assert "No ScalingTable" not in html and "No UnitNeurrationTable" not in html


def test_real_analysis_types_are_found_by_type(tmp_path):
    from pynwb import get_class

    try:
        get_class("ScalingTable", "ndx-neurrator")
    except Exception:  # noqa: BLE001
        pytest.skip("the installed ndx-neurrator has no ScalingTable yet")
    path = make_derived(tmp_path / "typed.nwb", new_types=True)
    d = read_derived(path)
    present = [t for t in ("ScalingTable", "GroupComparisonTable", "GroupSeparationTable") if t in d.types_found]
    if not present:
        pytest.skip("the installed ndx-neurrator has none of the analyses' types yet")
    if "ScalingTable" in present:
        assert d.scaling is not None and set(d.scaling["region"]) == {"VISp", "VISl"}
    html = render_report(d)
    if "GroupComparisonTable" in present:
        assert 'id="fig-comparison"' in html


def test_plot_fidelity_writes_a_figure(derived, tmp_path):
    from matplotlib.image import imread

    from neurrator.report.text import plot_fidelity

    png = plot_fidelity(derived, tmp_path / "fig" / "fidelity.png")
    img = imread(png)
    assert img.shape[0] > 600 and img.shape[1] > 1500  # two rows (scaling, subsets) of three metrics
    assert np.ptp(img[..., :3]) > 0.5  # not blank


def test_errors_name_the_file(tmp_path):
    from ndx_neurrator.testing import mock_NWBFile
    from pynwb import NWBHDF5IO

    with pytest.raises(NeurratorError, match="missing.nwb: no such file"):
        write_report(tmp_path / "missing.nwb")
    empty = tmp_path / "empty.nwb"
    with NWBHDF5IO(str(empty), "w") as io:
        io.write(mock_NWBFile())
    with pytest.raises(NeurratorError, match="empty.nwb: has no neurrator results"):
        write_report(empty)
    assert not empty.with_suffix(".html").exists()


@pytest.mark.slow
def test_report_runs_where_torch_cannot_be_imported(derived, tmp_path):
    script = textwrap.dedent(f"""
        import sys
        class NoTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked in this test")
                return None
        sys.meta_path.insert(0, NoTorch())
        from neurrator.report.html import write_report
        from neurrator.report.text import format_file, plot_fidelity
        write_report({str(derived)!r}, {str(tmp_path / 'r.html')!r})
        format_file({str(derived)!r})
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers", "open_clip"))
        assert not heavy, heavy
        print("ok")
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == "ok" and (tmp_path / "r.html").stat().st_size > 1000
