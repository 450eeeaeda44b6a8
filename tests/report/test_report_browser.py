"""The report in a real browser: headless Chromium loads the page from disk without console errors or
network requests, every figure decodes to a non-empty image, the neuron filter works, and a screenshot is
saved in the test's temporary folder. Skipped without Chromium unless CI is set (CI installs it)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
from _chromium import chromium_path, load_page
from _report_fixture import make_derived, new_tables

from neurrator.report.html import render_report
from neurrator.report.data import read_derived

FIGURES = ("fig-scaling", "fig-subsets", "fig-reliability", "fig-comparison", "fig-separation")
PROBE = """(() => {
  const imgs = {};
  document.querySelectorAll("img[id]").forEach(i => { imgs[i.id] = [i.complete, i.naturalWidth, i.naturalHeight]; });
  const visible = () => Array.from(document.querySelectorAll("#cards .card"))
                             .filter(c => getComputedStyle(c).display !== "none").map(c => c.dataset.region);
  const all = visible();
  const sel = document.getElementById("filter-region");
  sel.value = "VISl"; sel.dispatchEvent(new Event("change"));
  const visl = visible();
  const count = document.getElementById("card-count").textContent;
  sel.value = ""; sel.dispatchEvent(new Event("change"));
  return {imgs, all, visl, count, title: document.title, width: document.documentElement.scrollWidth};
})()"""


def _need_chromium() -> str:
    exe = chromium_path()
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but chromium is not installed (.ci/run installs Debian's chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return exe


def test_report_loads_in_headless_chromium(tmp_path: Path):
    _need_chromium()
    derived = make_derived(tmp_path / "sub-m7_ses-s3_desc-neurrator.nwb")
    html = tmp_path / "report.html"
    html.write_text(render_report(dataclasses.replace(read_derived(derived), **new_tables())), encoding="utf-8")
    shot = tmp_path / "report.png"
    result = load_page(html, probe=PROBE, screenshot=shot)

    assert result["errors"] == []
    assert result["requests"] == [html.resolve().as_uri()]  # the page itself and nothing else
    probe = result["probe"]
    assert probe["title"] == "neurrator report: sub-m7_ses-s3_desc-neurrator.nwb"
    for fig in FIGURES:
        complete, w, h = probe["imgs"][fig]
        assert complete and w > 300 and h > 150, (fig, w, h)
    thumbs = [k for k in probe["imgs"] if k.startswith("thumb-")]
    assert thumbs and all(probe["imgs"][k][1] == 12 and probe["imgs"][k][2] == 8 for k in thumbs)
    assert sorted(probe["all"]) == ["VISl", "VISp", "VISp"] and probe["visl"] == ["VISl"]
    assert probe["count"] == "1 of 3 cards shown"
    assert probe["width"] <= 1280  # nothing wider than the window
    from matplotlib.image import imread

    img = imread(shot)
    assert 1200 <= img.shape[1] <= 1280 and img.shape[0] > 2000  # the full page, not just the first screen
