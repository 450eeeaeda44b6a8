"""The README's examples run as written and produce what they claim."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def _example_code() -> str:
    text = README.read_text()
    section = text.split("## Examples", 1)[1].split("## Mock factories", 1)[0]
    return "\n".join(re.findall(r"```python\n(.*?)```", section, flags=re.S))


def test_readme_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(_example_code(), str(README), "exec"), namespace)
    df = namespace["df"]
    assert list(df["metric"]) == ["top1", "top1"] and list(df["n_units"]) == [6, 2]
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(tmp_path / "sub-mouse1_ses-session1_desc-neurrator.nwb", "r") as io:
        module = io.read().processing["neurrator"]
        assert set(module.data_interfaces) == {
            "unit_subsets", "encoder", "predictions", "predictions_lazy", "narrations", "sae_validation", "sae",
            "decoding_fidelity", "narrations_by_subset", "sae_validation_by_subset", "patch_basis",
            "predictions_compact", "decoding_fidelity_stats", "unit_neurration", "concept_tuning",
            "group_comparison", "group_separation", "scaling",
        }
        tidy = namespace["tidy"]
        assert list(tidy["subset"]) == ["all", "all", "random:2:seed3", "random:2:seed3"]
        assert list(tidy["text"])[2] == "a tree"
        compact = module["predictions_compact"].get_windows([0, 2])
        np.testing.assert_array_equal(compact[1], np.zeros((4, 8), np.float32))
        by_hand = (np.ones((1, 2), np.float32) @ module["patch_basis"].components[:].reshape(2, -1)).reshape(4, 8)
        np.testing.assert_allclose(compact[0], by_hand, rtol=1e-6)
        assert module["decoding_fidelity_stats"]["beats_null"][:].tolist() == [True, False]
        assert np.isnan(module["scaling"]["crossing_n"][2])
        lazy = module["predictions_lazy"].data[:]
        np.testing.assert_array_equal(lazy[:, 0, 0], np.arange(5, dtype=np.float32))
        assert module["encoder"].get_weights_bytes() == namespace["weights"]
        assert list(module["sae_validation"]["supporting_concepts"][0]) == ["bird", "branch"]


def test_docstring_examples_run():
    import doctest

    import ndx_neurrator.build

    result = doctest.testmod(ndx_neurrator.build, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 2 and result.failed == 0
