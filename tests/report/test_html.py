"""The HTML page: a limited number of unit cards, the whole per-unit table embedded as a CSV download."""

from __future__ import annotations

import base64
import io
import re

import pandas as pd

from _report_fixture import make_derived

from neurrator.report import html
from neurrator.report.data import read_derived


def test_the_page_embeds_every_unit_as_csv_and_limits_the_cards(tmp_path, monkeypatch):
    data = read_derived(make_derived(tmp_path / "typed.nwb", new_types=True))
    monkeypatch.setattr(html, "MAX_CARDS", 2)
    page = html.render_report(data)
    link = re.search(r'id="cards-csv" href="data:text/csv;base64,([^"]+)" download="typed_units.csv"', page)
    assert link, "no CSV download of the unit table"
    table = pd.read_csv(io.StringIO(base64.b64decode(link.group(1)).decode("utf-8")))
    assert table["unit_id"].tolist() == [100, 101, 103]  # unit ids, not rows
    assert table.loc[table["unit_id"] == 103, "top_concept"].item() == "darkness"
    assert page.count('<div class="card" data-region') == 2
    assert "Showing 2 of the 3 analysed units" in page
