"""A long loop -> a tqdm bar (``bars=True``) or heartbeat log lines with the expected time left (``bars=False``),
and the libraries' own bars (transformers' "Loading weights", huggingface_hub downloads) switched off.

The CLI shows bars only when stderr is a terminal; a run whose stderr goes to a file gets one INFO line per
loop every `HEARTBEAT_S` seconds instead (``"encoder: 1200/6000 steps (20%), 1m05s elapsed, ~4m20s left"``)
and one when the loop ends. From Python, ``progress=False`` shows no bar at all; the heartbeat lines go to
the ``neurrator`` logger (silent unless logging is configured).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["HEARTBEAT_S", "Progress", "format_seconds", "library_bars", "progress_iter", "stderr_is_terminal"]

log = logging.getLogger("neurrator.progress")

#: Seconds between two heartbeat lines of one loop.
HEARTBEAT_S = 30.0


def format_seconds(seconds: float) -> str:
    """``75.2`` -> ``"1m15s"``; ``3725`` -> ``"1h02m"``; under a minute ``"42s"``."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


class Progress:
    """Counts steps of one loop: a tqdm bar when ``bars``, else heartbeat lines (see the module docstring).

    Examples
    --------
    >>> with Progress(3, desc="demo", bars=False, unit="step") as p:
    ...     for _ in range(3):
    ...         p.update()
    >>> p.n
    3
    """

    def __init__(self, total: int | None, *, desc: str, bars: bool, unit: str = "item",
                 every_s: float | None = None) -> None:
        self.total, self.desc, self.unit, self.n = total, desc, unit, 0
        self.every_s = HEARTBEAT_S if every_s is None else every_s
        self._t0 = self._last = time.monotonic()
        self._postfix = ""
        self._bar = None
        if bars:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, leave=False)

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            log.info("%s", self.line(now))

    def set_postfix(self, **values: Any) -> None:
        """Shown beside the bar, or at the end of the next heartbeat line."""
        if self._bar is not None:
            self._bar.set_postfix(**values)
        self._postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def line(self, now: float | None = None) -> str:
        """``"desc: n/total unit (pct%), elapsed, ~left"`` (no total: the count and the elapsed time)."""
        elapsed = (time.monotonic() if now is None else now) - self._t0
        text = f"{self.desc}: {self.n}"
        if self.total:
            text += f"/{self.total} {self.unit} ({100 * self.n / self.total:.0f}%), {format_seconds(elapsed)} elapsed"
            if 0 < self.n < self.total:
                text += f", ~{format_seconds(elapsed * (self.total - self.n) / self.n)} left"
        else:
            text += f" {self.unit}, {format_seconds(elapsed)} elapsed"
        return text + (f" ({self._postfix})" if self._postfix else "")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif time.monotonic() - self._t0 >= self.every_s:  # a loop long enough to have had heartbeats
            log.info("%s: done, %d %s in %s", self.desc, self.n, self.unit,
                     format_seconds(time.monotonic() - self._t0))

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress_iter(items: Iterable, *, desc: str, bars: bool, unit: str = "item", total: int | None = None
                  ) -> Iterator:
    """Yield ``items`` while counting them with a `Progress` (``total`` defaults to ``len(items)``)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(total, desc=desc, bars=bars, unit=unit) as p:
        for item in items:
            yield item
            p.update()


@contextlib.contextmanager
def library_bars(enabled: bool) -> Iterator[None]:
    """Within the block, the bars of transformers ("Loading weights", from ``transformers.utils.logging.tqdm``
    in ``core_model_loading``) and huggingface_hub (downloads) are on only when ``enabled``; each library's
    previous setting comes back afterwards (both are dependencies of neurrator)."""
    undo = []
    if not enabled:
        from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
        from transformers.utils import logging as tf_logging

        if tf_logging.is_progress_bar_enabled():
            tf_logging.disable_progress_bar()
            undo.append(tf_logging.enable_progress_bar)
        if not are_progress_bars_disabled():
            disable_progress_bars()
            undo.append(enable_progress_bars)
    try:
        yield
    finally:
        for fn in undo:
            fn()


def stderr_is_terminal() -> bool:
    """Whether stderr is an interactive terminal (False for a file, a pipe, or a replaced/closed stream)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False
