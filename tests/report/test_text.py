"""`neurrator show`: the headline metrics lead the fidelity table, single units are named by unit id."""

from __future__ import annotations

from _report_fixture import make_derived

from neurrator.report.text import SHOW_METRICS, format_file


def test_show_leads_with_the_headline_and_names_units_by_id(tmp_path):
    text = format_file(make_derived(tmp_path / "typed.nwb", new_types=True))
    lines = text.splitlines()
    fidelity = lines.index(next(line for line in lines if line.startswith("decoding fidelity")))
    assert fidelity < lines.index(next(line for line in lines if line.startswith("unit subsets")))
    header = lines[fidelity + 1].split()
    assert header[0] == "subset"
    assert header[1:] == [m for m in SHOW_METRICS if m in header]  # the fixture's metrics, in the headline order
    assert header[1] == "top1"  # no centred cosine in the fixture: frame identification leads
    # the fixture's unit-neurration rows are unit rows 0, 1 and 3 of units 100..105
    assert "  unit 100: reliability 0.61" in text and "  unit 103: reliability 0.42" in text
    assert "unit row" not in text

