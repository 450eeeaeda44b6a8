"""The command line: every error a user can cause is one line, exit 1, input untouched, nothing written."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from _helpers import FAST_FLAGS, assert_one_line_error, run_cli, sha256
from click.testing import CliRunner

from neurrator.cli import main


def test_help_lists_every_command():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("narrate", "demo", "show", "simulate", "ls", "process"):
        assert command in result.output


# -- bad session files, through `neurrator narrate` --------------------------------------------------


def _copy(src: Path, dst: Path) -> Path:
    shutil.copy(src, dst)
    return dst


def _edit(path: Path, edit) -> Path:
    with h5py.File(path, "r+") as f:
        edit(f)
    return path


def _spikes(f: h5py.File, change) -> None:
    data = f["units/spike_times"][:]
    change(data)
    f["units/spike_times"][...] = data


def _presentations(f: h5py.File) -> h5py.Group:
    return f["intervals/natural_movie_one_presentations"]


def _unsorted(d: np.ndarray) -> None:
    d[0], d[1] = d[1] + 1.0, d[0]


def _frame_beyond(f: h5py.File) -> None:
    frames = _presentations(f)["frame"]
    data = frames[:]
    data[3] = 10_000
    frames[...] = data


def _stop_before_start(f: h5py.File) -> None:
    g = _presentations(f)
    stop = g["stop_time"][:]
    stop[5] = g["start_time"][5] - 1.0
    g["stop_time"][...] = stop


BAD_FILES = {
    "not an HDF5 file": (lambda p, sim: _write(p, b"this is not NWB\n"), "HDF5"),
    "truncated file": (lambda p, sim: _write(p, sim.read_bytes()[: sim.stat().st_size // 2]), ""),
    "HDF5 that is not NWB": (lambda p, sim: _edit_new_h5(p), "NWB"),
    "no Units table": (lambda p, sim: _edit(_copy(sim, p), lambda f: f.__delitem__("units")), "Units"),
    "NaN spike times": (lambda p, sim: _edit(_copy(sim, p), lambda f: _spikes(f, lambda d: d.__setitem__(0, np.nan))),
                        "NaN"),
    "negative spike times": (lambda p, sim: _edit(_copy(sim, p), lambda f: _spikes(f, lambda d: d.__setitem__(0, -5.0))),
                             "negative"),
    "unsorted spike times": (lambda p, sim: _edit(_copy(sim, p), lambda f: _spikes(f, _unsorted)), "sorted"),
    "frame index beyond the movie": (lambda p, sim: _edit(_copy(sim, p), _frame_beyond), "frame"),
    "stop before start": (lambda p, sim: _edit(_copy(sim, p), _stop_before_start), "stop"),
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _edit_new_h5(path: Path) -> Path:
    with h5py.File(path, "w") as f:
        f["data"] = np.arange(10)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_session_file_is_one_line_error(case, small_sim, tmp_path):
    make, needle = BAD_FILES[case]
    bad = make(tmp_path / "bad.nwb", small_sim)
    before = sha256(bad)
    out = tmp_path / "out"
    line = assert_one_line_error(run_cli("narrate", str(bad), "--out", str(out), *FAST_FLAGS), "bad.nwb")
    assert needle.lower() in line.lower(), line
    assert sha256(bad) == before, "the input was modified"
    assert not list(out.rglob("*.nwb")) if out.exists() else True


@pytest.mark.slow
def test_missing_stimulus_lists_the_tables_that_exist(small_sim, tmp_path):
    line = assert_one_line_error(run_cli("narrate", str(small_sim), "--out", str(tmp_path / "o"),
                                         "--stimulus", "natural_movie_three", *FAST_FLAGS), small_sim.name)
    assert "natural_movie_one" in line  # the table that does exist is named


@pytest.mark.slow
def test_movie_frame_count_inconsistent_with_presentations(small_sim, tmp_path):
    bad = _edit(_copy(small_sim, tmp_path / "nomovie.nwb"), lambda f: f.__delitem__("stimulus/templates"))
    movie = tmp_path / "short.npy"
    np.save(movie, np.zeros((10, 8, 8), np.uint8))
    before = sha256(bad)
    line = assert_one_line_error(run_cli("narrate", str(bad), "--out", str(tmp_path / "o"), "--movie", str(movie),
                                         *FAST_FLAGS))
    assert "frame" in line
    assert sha256(bad) == before


# -- bad options and outputs ----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("option, value, valid", [("--backbone", "resnet", "tiny"), ("--narrator", "gpt9", "retrieval")])
def test_unknown_model_ids_list_the_valid_ones(option, value, valid, small_sim, tmp_path):
    line = assert_one_line_error(run_cli("narrate", str(small_sim), "--out", str(tmp_path / "o"), option, value,
                                         *FAST_FLAGS), value)
    assert valid in line


@pytest.mark.slow
def test_real_weights_missing_offline_say_how_to_get_them(small_sim, tmp_path):
    env = {"HF_HOME": str(tmp_path / "hf"), "HUGGINGFACE_HUB_CACHE": str(tmp_path / "hf" / "hub")}
    line = assert_one_line_error(run_cli("narrate", str(small_sim), "--out", str(tmp_path / "o"), "--backbone",
                                         "llava", *FAST_FLAGS, env=env), "llava")
    assert "download" in line.lower()


@pytest.mark.slow
def test_output_folder_not_writable(small_sim, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    line = assert_one_line_error(run_cli("narrate", str(small_sim), "--out", str(blocker / "out"), *FAST_FLAGS))
    assert "not writable" in line


@pytest.mark.slow
def test_corrupt_encoder_checkpoint_folder(small_sim, tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text("{}")
    (ckpt / "weights.safetensors").write_bytes(b"\x00garbage")
    (ckpt / "metadata.json").write_text("{}")
    before = sha256(ckpt)
    assert_one_line_error(run_cli("narrate", str(small_sim), "--out", str(tmp_path / "o"), "--encoder", str(ckpt),
                                  *FAST_FLAGS), "ckpt")
    assert sha256(ckpt) == before


@pytest.mark.slow
def test_checkpoint_with_wrong_sha256_is_refused(small_sim, tmp_path):
    """A checkpoint folder whose weights no longer match the sha256 recorded in its metadata."""
    import torch

    from neurrator.data.binning import bin_session
    from neurrator.data.splits import split_repeats
    from neurrator.models.checkpoint import save_checkpoint
    from neurrator.data.session import load_session
    from neurrator.models.training import TrainConfig, train_encoder

    session = load_session(small_sim)
    binned = bin_session(session)
    split = split_repeats(binned.repeat, n_val=1, n_test=1)
    targets = np.random.default_rng(0).normal(size=(session.frames.shape[0], 4, 8)).astype(np.float32)
    torch.manual_seed(0)
    trained = train_encoder(binned, targets, split, config=TrainConfig(max_epochs=1), progress=False)
    folder = save_checkpoint(trained, tmp_path / "ckpt")
    weights = folder / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert_one_line_error(run_cli("narrate", str(small_sim), "--out", str(tmp_path / "o"), "--encoder", str(folder),
                                  *FAST_FLAGS), "sha256")


def _untrained_checkpoint(folder: Path, unit_ids: np.ndarray, *, seed: int) -> Path:
    """A checkpoint on the tiny backbone's targets (weights of ``seed``) for the given unit ids (not trained)."""
    from neurrator.models.backbones import load_backbone
    from neurrator.models.checkpoint import save_checkpoint
    from neurrator.config import EncoderConfig
    from neurrator.models.encoder import SpikeEncoder
    from neurrator.models.training import TrainConfig, TrainedEncoder

    spec = load_backbone("tiny", seed=seed).spec
    enc = EncoderConfig(n_units=len(unit_ids), n_patches=spec.n_patches, dim=spec.dim, window_bins=8, d_model=8,
                        n_heads=2, n_latents=2, depth=1, linear_rank=4)
    trained = TrainedEncoder(model=SpikeEncoder(config=enc).eval(), encoder_config=enc, train_config=TrainConfig(),
                             history=[], unit_ids=np.asarray(unit_ids, dtype=np.int64), target_spec=spec,
                             stimulus="natural_movie_one")
    return save_checkpoint(trained, folder)


@pytest.mark.slow
def test_encoder_from_another_session_or_seed_is_refused_before_any_work(small_sim, tmp_path):
    """Checkpoint metadata is checked against the session and the backbone up front, naming the file."""
    import time

    from neurrator.data.session import load_session

    ids = load_session(small_sim).units.ids
    other = _untrained_checkpoint(tmp_path / "other-session", ids + 100_000, seed=0)
    t0 = time.monotonic()
    line = assert_one_line_error(run_cli("narrate", str(small_sim), "--out", str(tmp_path / "o"), "--encoder",
                                         str(other), *FAST_FLAGS, "--cache-dir", str(tmp_path / "c")),
                                 str(other), f"none of the session's {len(ids)} units")
    assert time.monotonic() - t0 < 60, line
    assert not (tmp_path / "c" / "targets").exists()  # refused before the targets were computed
    seed0 = _untrained_checkpoint(tmp_path / "seed0", ids, seed=0)
    assert_one_line_error(run_cli("narrate", str(small_sim), "--out", str(tmp_path / "o"), "--encoder", str(seed0),
                                  *FAST_FLAGS, "--seed", "1", "--cache-dir", str(tmp_path / "c")),
                          str(seed0), "pass --seed 0")
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").rglob("*.nwb"))


@pytest.mark.slow
def test_disk_full_while_writing_leaves_nothing(small_sim, tmp_path, monkeypatch):
    """ENOSPC during the write: one-line error, no output file, no temporary file left."""
    import pynwb

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pynwb.NWBHDF5IO, "write", full)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["narrate", str(small_sim), "--out", str(out), *FAST_FLAGS,
                                       "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 1
    assert "No space left on device" in result.output and "Traceback" not in result.output
    assert not [p for p in out.rglob("*") if p.is_file()], list(out.rglob("*"))


@pytest.mark.slow
def test_debug_shows_the_traceback(tmp_path):
    bad = tmp_path / "bad.nwb"
    bad.write_text("nope")
    proc = run_cli("--debug", "narrate", str(bad), "--out", str(tmp_path / "o"))
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_show_rejects_a_file_without_results(small_sim):
    assert_one_line_error(run_cli("show", str(small_sim)), small_sim.name, "neurrator")


def test_simulate_writes_a_session_and_truth(tmp_path):
    out = tmp_path / "sim.nwb"
    proc = run_cli("simulate", str(out), "--units", "20", "--repeats", "3", "--seed", "1",
                   "--movie-out", str(tmp_path / "frames.npy"))
    assert proc.returncode == 0, proc.stderr
    assert out.is_file() and np.load(tmp_path / "frames.npy").ndim == 3


# -- streamed sources, through the CLI (the local DANDI stand-in; nothing leaves 127.0.0.1) ------------


@pytest.mark.slow
def test_missing_dandi_asset_and_failing_network(small_sim, tmp_path):
    from standin import DandiStandin

    with DandiStandin(files={"sub-sim0/sub-sim0_ses-small.nwb": small_sim}, dandiset_id="000999") as server:
        env = {"NEURRATOR_DANDI_API_URL": server.api_url}
        missing = "dandi://000999/sub-sim0/sub-sim0_ses-nothere.nwb"
        line = assert_one_line_error(run_cli("narrate", missing, "--out", str(tmp_path / "o"), *FAST_FLAGS,
                                             "--cache-dir", str(tmp_path / "c1"), env=env), "sub-sim0_ses-nothere.nwb")
        assert "no such asset" in line.lower()

        server.fail_always(True)  # every file request fails: retried with backoff, then one clear line
        line = assert_one_line_error(run_cli("narrate", server.dandi_url("sub-sim0/sub-sim0_ses-small.nwb"), "--out",
                                             str(tmp_path / "o"), *FAST_FLAGS, "--cache-dir", str(tmp_path / "c2"),
                                             env=env), "sub-sim0_ses-small.nwb")
        assert server.file_requests > 1, "the failing reads were not retried"
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").rglob("*.nwb"))


@pytest.mark.slow
def test_hanging_servers_end_the_run_after_timeout_seconds(small_sim, tmp_path):
    """--timeout bounds a silent file server and a silent DANDI API: one line naming the limit, exit 1."""
    import time

    from standin import DandiStandin

    asset = "sub-sim0/sub-sim0_ses-small.nwb"
    with DandiStandin(files={asset: small_sim}, dandiset_id="000999") as server:
        server.fail_always(True, mode="hang")
        t0 = time.monotonic()
        line = assert_one_line_error(run_cli("narrate", server.url_for(asset), "--out", str(tmp_path / "o"),
                                             *FAST_FLAGS, "--cache-dir", str(tmp_path / "c"), "--timeout", "1"),
                                     server.url_for(asset), "within 1 s", "--timeout")
        assert time.monotonic() - t0 < 60, line
        server.fail_always(False)
        server.hang_api(True)
        line = assert_one_line_error(run_cli("ls", "000999", "--timeout", "1",
                                             env={"NEURRATOR_DANDI_API_URL": server.api_url}),
                                     "dandi://000999", "within 1 s while listing assets")
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").rglob("*.nwb"))


@pytest.mark.parametrize("value", ["0", "-3", "soon"])
def test_timeout_must_be_a_positive_number_of_seconds(value):
    result = CliRunner().invoke(main, ["ls", "000999", "--timeout", value])
    assert result.exit_code == 2 and "--timeout" in result.output and "Traceback" not in result.output


# -- what a new user sees: help texts, quiet logs, no leftovers (issue 16) ---------------------------------


def test_top_level_help_does_not_cut_command_summaries():
    result = CliRunner().invoke(main, ["--help"])
    commands = result.output.split("Commands:", 1)[1].strip().splitlines()
    names = [line.split()[0] for line in commands]
    assert names == ["convert", "demo", "ls", "narrate", "process", "report", "show", "simulate"], commands
    for line in commands:
        assert not line.rstrip().endswith("..."), line
        assert line.rstrip().endswith("."), line


def test_narrate_help_names_the_split_reference_and_encoder_options():
    result = CliRunner().invoke(main, ["narrate", "--help"], terminal_width=200)
    text = " ".join(result.output.split())
    for option in ("--val-repeats", "--test-repeats", "--reference-narrator"):
        assert option in text, option
    assert "a checkpoint folder, or a neurrator NWB file" in text


def test_cli_defaults_build_the_library_default_config():
    """The options repeat NarrateConfig's defaults: together they must give the same configuration."""
    from neurrator.cli import _config, narrate
    from neurrator.config import NarrateConfig

    options = {p.name: p.default for p in narrate.params if p.name not in ("sources", "out", "debug", "quiet")}
    options["no_quality_filter"] = False
    assert _config(False, **options).to_json() == NarrateConfig(progress=False).to_json()


def test_simulate_movie_seed_changes_the_movie_not_the_population(tmp_path):
    from neurrator.simulate import load_truth, truth_path

    args = ["--units", "12", "--repeats", "4", "--seed", "1"]
    for name, extra in (("a", []), ("b", ["--movie-seed", "3"])):
        result = CliRunner().invoke(main, ["simulate", str(tmp_path / f"{name}.nwb"), *args, *extra,
                                           "--movie-out", str(tmp_path / f"{name}.npy")])
        assert result.exit_code == 0, result.output
    a, b = load_truth(truth_path(tmp_path / "a.nwb")), load_truth(truth_path(tmp_path / "b.nwb"))
    assert (a.params["movie_seed"], b.params["movie_seed"]) == (0, 3)
    assert not np.array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))
    np.testing.assert_array_equal(a.tuning, b.tuning)


def test_simulate_with_too_few_repeats_says_which_options_narrate_needs(tmp_path):
    result = CliRunner().invoke(main, ["simulate", str(tmp_path / "s.nwb"), "--units", "12", "--repeats", "4"])
    assert result.exit_code == 0, result.output
    assert "--val-repeats 1 --test-repeats 1" in result.output


@pytest.mark.slow
def test_failed_run_leaves_no_folder_it_created(small_sim, tmp_path):
    """The README promises nothing is left: a fresh --out folder (and its parents) is removed on failure,
    an existing one is kept with its contents."""
    fresh = tmp_path / "new" / "out"
    assert_one_line_error(run_cli("narrate", str(small_sim), "--out", str(fresh), "--stimulus", "natural_movie_three",
                                  *FAST_FLAGS))
    assert not (tmp_path / "new").exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("x")
    result = CliRunner().invoke(main, ["narrate", str(small_sim), "--out", str(existing / "sub" / "r.nwb"),
                                       "--stimulus", "natural_movie_three", *FAST_FLAGS])
    assert result.exit_code == 1
    assert sorted(p.name for p in existing.iterdir()) == ["keep.txt"]


_LOAD_SCORER = ("from neurrator.cli import _configure_output; import sys; "
                "print('bars' if _configure_output(debug=False, quiet=False) else 'no bars'); sys.stdout.flush(); "
                "from neurrator.models.embedder import load_sentence_embedder; load_sentence_embedder(device='cpu')")


@pytest.mark.slow
def test_library_bars_only_on_a_terminal(tmp_path):
    """The "Loading weights" bar of transformers: absent with stderr in a file, present on a terminal."""
    import fcntl
    import pty
    import struct
    import termios

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for key in ("HF_HUB_DISABLE_PROGRESS_BARS", "TQDM_DISABLE"):
        env.pop(key, None)
    log = tmp_path / "stderr.log"
    with log.open("w") as err:
        proc = subprocess.run([sys.executable, "-c", _LOAD_SCORER], stdout=subprocess.PIPE, stderr=err, text=True,
                              env=env, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "no bars", log.read_text()
    assert "Loading weights" not in log.read_text() and "\r" not in log.read_text()

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # tqdm draws nothing at 0 columns
    proc = subprocess.Popen([sys.executable, "-c", _LOAD_SCORER], stdout=subprocess.PIPE, stderr=follower, env=env)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    out, _ = proc.communicate(timeout=300)
    os.close(leader)
    assert proc.returncode == 0 and out.decode().strip() == "bars"
    assert "Loading weights" in b"".join(chunks).decode(errors="replace")


@pytest.mark.slow
def test_quiet_run_writes_no_bars_or_info_to_a_log_file(small_sim, tmp_path):
    """`neurrator --quiet narrate ... 2> log`: the log holds no progress bar, no library output, no INFO line."""
    log = tmp_path / "stderr.log"
    with log.open("w") as err:
        proc = subprocess.run([sys.executable, "-m", "neurrator", "--quiet", "narrate", str(small_sim), "--out",
                               str(tmp_path / "out"), *FAST_FLAGS, "--val-repeats", "1", "--test-repeats", "1",
                               "--cache-dir", str(tmp_path / "cache")], stdout=subprocess.PIPE, stderr=err, text=True,
                              timeout=900, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    text = log.read_text()
    assert proc.returncode == 0, text
    for noise in ("Loading weights", "\r", "it/s", "INFO", "%|"):
        assert noise not in text, (noise, text)
    assert proc.stdout.count("skipped") <= 1 and "wrote" in proc.stdout


# -- fail early (issue 14.3, 16): these need pipeline.py to call neurrator.models.loading before reading data -----


def _no_data_reads(monkeypatch):
    """Reading spike times or frames before the checks fails the test (the outline reads neither)."""
    from neurrator.data import session

    def refuse(*args, **kwargs):
        raise AssertionError("the session's data was read before the split and the models were checked")

    monkeypatch.setattr(session, "read_session", refuse)


def test_simulated_4_repeats_fail_before_any_data_is_read(tmp_path, monkeypatch):
    sim = tmp_path / "sim4.nwb"
    assert CliRunner().invoke(main, ["simulate", str(sim), "--units", "12", "--repeats", "4"]).exit_code == 0
    _no_data_reads(monkeypatch)
    result = CliRunner().invoke(main, ["narrate", str(sim), "--out", str(tmp_path / "o"), *FAST_FLAGS])
    assert result.exit_code == 1
    assert "--val-repeats 1 --test-repeats 1" in result.output and "n_val" not in result.output, result.output
    assert not (tmp_path / "o").exists()


def test_default_config_without_captions_fails_before_any_data_is_read(small_sim, tmp_path, monkeypatch):
    bare = _edit(_copy(small_sim, tmp_path / "nocaptions.nwb"),
                 lambda f: f.__delitem__("processing/stimulus/natural_movie_one_captions"))
    _no_data_reads(monkeypatch)
    result = CliRunner().invoke(main, ["narrate", str(bare), "--out", str(tmp_path / "o"), *FAST_FLAGS])
    assert result.exit_code == 1
    assert "--reference-narrator tiny with --backbone tiny" in result.output, result.output


@pytest.mark.parametrize("command", ["narrate", "process", "demo", "simulate"])
@pytest.mark.parametrize("seed", ["-1", str(2**40)])
def test_out_of_range_seed_is_a_usage_error_before_any_work(command, seed, tmp_path):
    target = {"narrate": [str(tmp_path / "missing.nwb"), "--out", str(tmp_path / "o")],
              "process": ["000021", "--out", str(tmp_path / "o")],
              "demo": ["--out", str(tmp_path / "o")],
              "simulate": [str(tmp_path / "s.nwb")]}[command]
    result = CliRunner().invoke(main, [command, *target, "--seed", seed])
    assert result.exit_code == 2, result.output
    assert "--seed" in result.output and "0<=x<=4294967295" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "o").exists() and not (tmp_path / "s.nwb").exists()


def test_scaling_draws_and_null_pools_reach_the_analyses():
    from neurrator.cli import _config

    config = _config(progress=False, no_quality_filter=False, scaling_draws=12, null_pools=30)
    assert config.analyses.scaling_draws == 12 and config.analyses.null_pools == 30
    result = CliRunner().invoke(main, ["narrate", "--help"], terminal_width=200)
    assert "--scaling-draws" in result.output and "--null-pools" in result.output
    bad = CliRunner().invoke(main, ["narrate", "x.nwb", "--null-pools", "3"])
    assert bad.exit_code == 2 and "--null-pools" in bad.output
