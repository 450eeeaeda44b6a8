"""Counts per presentation -> NWB (`neurrator convert`): counts exact after re-binning, what was made up said in
the file, bad input refused in one line; on the real V4 counts (Cowley et al.): exact counts, reliability from
the real repeats, and (slow) a full offline run that identifies unseen images above chance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _helpers import sha256

from neurrator.config import NarrateConfig
from neurrator.errors import NeurratorError
from neurrator.io.count_files import convert_counts, read_image_set
from neurrator.io.counts import CountProtocol, check_counts, order_presentations, spread_counts

V4 = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "real" / "v4_cowley_210325"
CONFIG = NarrateConfig()


@pytest.fixture
def v4() -> Path:
    if not (V4 / "responses_raw_210325.npy").is_file():
        pytest.skip(f"the V4 count fixture is not at {V4} (shared fixtures not checked out)")
    return V4


def _rebinned(path: Path):
    """The converted session re-binned over neurrator's default flashed-image response window."""
    from neurrator.data.binning import bin_session
    from neurrator.data.session import load_session

    s = load_session(path, stimulus="natural_scenes", fetch_movie=False)
    b = bin_session(s, window_bins=CONFIG.train.window_bins, window_s=CONFIG.image_window_s,
                    latency_s=CONFIG.image_latency_s)
    totals = b.counts.reshape(len(s.presentations), b.bins_per_frame, -1).sum(axis=1)
    return s, b, totals


def _tiny_inputs(tmp_path: Path) -> tuple[Path, Path, np.ndarray]:
    rng = np.random.default_rng(0)
    counts = rng.poisson(3.0, size=(4, 5, 3)).astype(np.float64)
    counts[:, 1, 2] = np.nan  # image 1 shown twice, image 3 once
    counts[:, 3, 1:] = np.nan
    np.save(tmp_path / "counts.npy", counts)
    from PIL import Image

    (tmp_path / "imgs").mkdir()
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, size=(8, 10, 3), dtype=np.uint8)).save(tmp_path / "imgs" / f"im{i}.png")
    return tmp_path / "counts.npy", tmp_path / "imgs", counts


def test_hand_example_spikes_fall_inside_their_windows():
    p = CountProtocol(window_s=0.1, latency_s=0.05, interval_s=0.5, start_s=1.0, seed=0)
    counts, shown = check_counts(np.array([[[2.0, np.nan], [1.0, 0.0]]]), label="c")
    pres = order_presentations(shown, p)
    assert pres.image.size == 3 and pres.onset.tolist() == [1.0, 1.5, 2.0]
    assert sorted(zip(pres.image.tolist(), pres.repeat.tolist())) == [(0, 0), (1, 0), (1, 1)]
    t, off = spread_counts(counts, pres, p)
    assert off.tolist() == [0, 3]
    k = [int(((t >= a) & (t < b)).sum()) for a, b in zip(pres.window_start, pres.window_stop)]
    assert k == [int(counts[0, i, r]) for i, r in zip(pres.image, pres.repeat)]


@pytest.mark.parametrize(("bad", "words"), [
    (np.array([[[1.0, np.nan]], [[1.0, 2.0]]]), "NaN must mean 'not shown' for every unit"),
    (np.array([[[1.5]]]), "whole numbers"),
    (np.array([[[-1.0]]]), "whole numbers"),
    (np.full((2, 3, 1), np.nan), "no image was shown"),
    (np.zeros((2,)), "must be (units, images, repeats)"),
])
def test_bad_counts_are_refused(bad, words):
    with pytest.raises(NeurratorError, match=None) as err:
        check_counts(bad, label="c.npy")
    assert str(err.value).startswith("c.npy: ") and words in str(err.value)


def test_protocol_refuses_windows_that_reach_the_next_onset():
    with pytest.raises(ValueError, match="interval_s"):
        CountProtocol(window_s=0.3, latency_s=0.25, interval_s=0.5)


def test_convert_tiny_counts_exact_and_made_up_parts_stated(tmp_path):
    counts_path, imgs, counts = _tiny_inputs(tmp_path)
    before = sha256(counts_path)
    out = convert_counts(counts_path, imgs, tmp_path / "out.nwb", region="V4", session_id="s1",
                         subject={"subject_id": "m1", "species": "Macaca mulatta", "sex": "U"})
    assert sha256(counts_path) == before
    s, b, totals = _rebinned(out)
    assert len(s.presentations) == int((~np.isnan(counts[0])).sum()) == 12
    np.testing.assert_array_equal(totals, counts[:, b.frame, b.repeat].T)  # occurrence = source repeat here
    assert set(s.units.region) == {"V4"} and s.frames.shape[0] == 5
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(str(out), "r") as io:
        nwb = io.read()
        for text in ("MADE UP", "presentation order", "spike times", "seed 0", "session_start_time"):
            assert text in nwb.notes, text
        assert "made up" in nwb.session_description and "counts are exact" in nwb.session_description
        assert nwb.stimulus_template["natural_scenes"].data.shape == (5, 8, 10, 3)  # colour kept
        t = nwb.intervals["natural_scenes_presentations"]
        assert t["count_window_stop"].data[0] - t["count_window_start"].data[0] == pytest.approx(0.1)


def test_convert_refuses_bad_input_and_leaves_nothing(tmp_path):
    counts_path, imgs, _ = _tiny_inputs(tmp_path)
    out = tmp_path / "out.nwb"
    (imgs / "im4.png").unlink()
    with pytest.raises(NeurratorError, match="holds 4 images but counts.npy has 5 image columns"):
        convert_counts(counts_path, imgs, out)
    assert list(tmp_path.glob("*.nwb")) == [] and list(tmp_path.glob(".*part*")) == []
    out.write_bytes(b"keep me")
    with pytest.raises(NeurratorError, match="already exists"):
        convert_counts(counts_path, imgs, out)
    assert out.read_bytes() == b"keep me"
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(NeurratorError, match="pickle"):
        convert_counts(tmp_path / "obj.npy", imgs, tmp_path / "o2.nwb")


def test_image_zip_over_the_limit_is_refused_before_decoding(tmp_path, monkeypatch):
    import zipfile

    from PIL import Image

    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "a.png")
    with zipfile.ZipFile(tmp_path / "i.zip", "w") as zf:
        zf.write(tmp_path / "a.png", "a.png")
    monkeypatch.setenv("NEURRATOR_MAX_ARRAY_BYTES", "1000")
    with pytest.raises(NeurratorError, match=r"i\.zip: the images up to a\.png declares"):
        read_image_set(tmp_path / "i.zip")


def test_v4_counts_survive_exactly_and_reliability_uses_the_real_repeats(v4, tmp_path):
    from neurrator.data.responses import trial_responses, unit_reliability

    raw = np.load(v4 / "responses_raw_210325.npy")
    out = convert_counts(v4 / "responses_raw_210325.npy", v4 / "images_210325.zip", tmp_path / "v4.nwb", region="V4")
    s, b, totals = _rebinned(out)
    assert totals.shape == (int((~np.isnan(raw[0])).sum()), 50) == (4840, 50)
    np.testing.assert_array_equal(totals, raw[:, b.frame, b.repeat].T)  # every count of every unit, exactly
    assert s.frames.shape[0] == 640
    # reliability over the repeats the converted file holds (the 6 every image got) = from the raw array
    tr = trial_responses(b, np.arange(len(s.presentations)), offset_bins=0)
    assert tr.repeats.tolist() == list(range(6)) and tr.frames.size == 640
    direct = raw[:, :, :6].transpose(2, 1, 0)
    np.testing.assert_allclose(tr.values + tr.baseline.astype(np.float32), direct, atol=1e-4)
    rel = unit_reliability(tr.values, n_null=200)
    ref = unit_reliability((direct - direct.mean(axis=(0, 1))).astype(np.float32), n_null=200)
    np.testing.assert_allclose(rel.value, ref.value, atol=1e-5)
    odd, even = direct[0::2].mean(axis=0), direct[1::2].mean(axis=0)  # an independent odd/even split-half
    r = np.array([np.corrcoef(odd[:, n], even[:, n])[0, 1] for n in range(50)])
    assert np.median(np.abs(rel.value - 2 * r / (1 + r))) < 0.05
    assert rel.driven.sum() >= 40  # V4 units respond reliably to these images (measured: all 50)


@pytest.mark.slow
def test_v4_converted_session_runs_and_decodes_unseen_images(v4, tmp_path):
    """neurrator convert then narrate with the offline models: unseen images identified above chance (~110 s)."""
    from _helpers import run_cli

    from neurrator.report.data import read_derived

    conv = run_cli("convert", str(v4 / "responses_raw_210325.npy"), str(v4 / "images_210325.zip"),
                   "--out", str(tmp_path / "v4.nwb"), "--region", "V4", "--subject-id", "PE",
                   "--species", "Macaca mulatta", "--session-id", "210325")
    assert conv.returncode == 0, conv.stderr
    run = run_cli("narrate", str(tmp_path / "v4.nwb"), "--stimulus", "natural_scenes", "--out", str(tmp_path / "o"),
                  "--reference-narrator", "tiny", "--test-images", "120", "--val-images", "40")
    derived = tmp_path / "o" / "sub-PE" / "sub-PE_ses-210325_desc-neurrator.nwb"
    assert run.returncode == 0 and derived.is_file(), run.stderr[-2000:]
    d = read_derived(derived)
    fid = d["fidelity"]
    row = fid[(fid.label == "all") & (fid.metric == "top5")].iloc[0]
    assert row.value > 2 * row.chance_level and row.ci_lo > row.chance_level  # measured 0.056 vs 0.0078
    rel = d["unit_neurration"]["reliability"].to_numpy(float)
    assert np.isfinite(rel).sum() == 50 and np.median(rel) > 0.3  # measured median ~0.7 over the real repeats


def test_convert_cli_writes_and_refuses_in_one_line(tmp_path):
    from _helpers import assert_one_line_error, run_cli

    counts_path, imgs, _ = _tiny_inputs(tmp_path)
    ok = run_cli("convert", str(counts_path), str(imgs), "--out", str(tmp_path / "s.nwb"), "--region", "V4",
                 "--subject-id", "m1", "--species", "Macaca mulatta")
    assert ok.returncode == 0 and "wrote" in ok.stdout and (tmp_path / "s.nwb").is_file(), ok.stderr
    again = run_cli("convert", str(counts_path), str(imgs), "--out", str(tmp_path / "s.nwb"))
    assert_one_line_error(again, "s.nwb", "already exists")
    bad = run_cli("convert", str(counts_path), str(imgs), "--out", str(tmp_path / "t.nwb"), "--interval-s", "0.1")
    assert_one_line_error(bad, "interval_s")
    assert not (tmp_path / "t.nwb").exists()
