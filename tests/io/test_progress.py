"""Progress without a terminal: heartbeat lines with the time left; progress=False silences library bars."""

from __future__ import annotations

import logging

from neurrator.io import progress as progress_mod
from neurrator.io.progress import Progress, format_seconds, library_bars, progress_iter


class _FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_format_seconds():
    assert [format_seconds(s) for s in (0, 42.4, 75.2, 3725)] == ["0s", "42s", "1m15s", "1h02m"]


def test_heartbeat_lines_give_the_count_and_the_time_left(monkeypatch, caplog):
    clock = _FakeClock()
    monkeypatch.setattr(progress_mod.time, "monotonic", clock)
    with caplog.at_level(logging.INFO, logger="neurrator"):
        with Progress(100, desc="encoder", bars=False, unit="steps", every_s=30) as p:
            for i in range(100):
                clock.now += 1.0  # one second per step: a line every 30 steps
                p.update()
                if i == 49:
                    p.set_postfix(loss="0.5")
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "encoder: 30/100 steps (30%), 30s elapsed, ~1m10s left"
    assert lines[1] == "encoder: 60/100 steps (60%), 1m00s elapsed, ~40s left (loss=0.5)"
    assert lines[-1] == "encoder: done, 100 steps in 1m40s"
    assert len(lines) == 4  # 30, 60, 90 and the end


def test_a_short_loop_says_nothing(caplog):
    with caplog.at_level(logging.DEBUG, logger="neurrator"):
        assert list(progress_iter(range(5), desc="subsets", bars=False)) == list(range(5))
    assert not caplog.records


def test_bars_write_to_stderr_and_heartbeats_do_not(capsys):
    list(progress_iter(range(3), desc="with-bar", bars=True))
    assert "with-bar" in capsys.readouterr().err
    list(progress_iter(range(3), desc="no-bar", bars=False))
    assert "no-bar" not in capsys.readouterr().err


def test_progress_false_silences_the_transformers_loading_weights_bar_and_restores_it(capsys):
    """transformers' "Loading weights" bar (core_model_loading) is `transformers.utils.logging.tqdm`."""
    from huggingface_hub.utils import are_progress_bars_disabled
    from transformers.utils import logging as tf_logging

    tf_logging.enable_progress_bar()
    with library_bars(False):
        assert not tf_logging.is_progress_bar_enabled()
        assert are_progress_bars_disabled()
        list(tf_logging.tqdm(range(3), desc="Loading weights"))
    assert "Loading weights" not in capsys.readouterr().err
    assert tf_logging.is_progress_bar_enabled()
    list(tf_logging.tqdm(range(3), desc="Loading weights"))
    assert "Loading weights" in capsys.readouterr().err
    with library_bars(True):
        assert tf_logging.is_progress_bar_enabled()
