"""Stimulus registry: one entry per stimulus kind, owning how presentations are read, what a repeat
is, which spike intervals are binned for each presentation, and where the frames come from.

Two kinds:

* ``movie`` (natural_movie_one/three): presentations are movie frames (30 Hz); a repeat is one pass of
  the movie (the table's ``movie_repeat``/``repeat`` column, else counted from frame-index resets);
  each presentation's own interval is binned (``bins_per_frame`` bins) and the encoder's context
  window spans neighbouring frames of the same repeat.
* ``flashed_images`` (natural_scenes: 118 images, 250 ms each, ~50 times each in random order; Allen
  table ``intervals/natural_scenes_presentations``, column ``frame`` = image index, -1 = blank):
  blank presentations are dropped; a repeat of image i is its occurrence count (0 for its first
  showing, 1 for its second, ...); each presentation's window is aligned to the image onset:
  ``[onset + latency, onset + latency + window)`` in ``window_bins`` bins, so the encoder reads exactly
  that presentation's onset-aligned response (`bin_intervals`, and ``bins_per_frame = window_bins``
  with ``offset_bins = 0`` in `neurrator.data.binning.window_index`).

A stimulus that `KNOWN_STIMULI` does not name takes its kind from the table's layout
(`kind_from_layout`: blank rows or frames not stepping through a movie are flashed images), unless a kind
is given (``--stimulus-kind``). A new kind is one `StimulusKind` subclass added to `STIMULUS_KINDS` (and its
stimulus names to `KNOWN_STIMULI`). Frames come from the file's ``stimulus/templates/<stimulus>`` (an ImageSeries or an
Images container, read by `neurrator.io.movies.frames_from_template`) or from the user; the Allen
warehouse lists the natural-scene templates too (`neurrator.io.allen_warehouse.scene_download_urls`).

The unseen-image test holds whole images out of training: `neurrator.data.splits.split_by_image`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from neurrator.data.splits import Split, check_split, split_by_image, split_repeats
from neurrator.errors import NeurratorError

__all__ = [
    "Presentations",
    "FLASHED_IMAGES",
    "KNOWN_STIMULI",
    "MOVIE",
    "STIMULUS_KINDS",
    "FlashedImagesKind",
    "MovieKind",
    "StimulusKind",
    "bin_intervals",
    "kind_from_layout",
    "occurrence_repeats",
    "stimulus_kind",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Presentations:
    """Stimulus presentations (movie frames or flashed images), sorted by (repeat, start)."""

    frame: np.ndarray  # (P,) int64
    start: np.ndarray  # (P,) float64
    stop: np.ndarray  # (P,) float64
    repeat: np.ndarray  # (P,) int64, 0-based
    kind: str = "movie"  # the stimulus kind that read them (`STIMULUS_KINDS`)

    def __len__(self) -> int:
        return int(self.frame.size)

    @property
    def n_repeats(self) -> int:
        return int(np.unique(self.repeat).size)


@dataclass(frozen=True)
class StimulusKind:
    """How one kind of stimulus is read and windowed. Subclasses implement `presentations`."""

    name: str
    #: frame index values that mean "no image" (dropped from the presentations)
    blank_values: tuple[int, ...] = ()
    #: the frames are a movie in presentation order (context windows span neighbouring frames)
    continuous: bool = True

    def presentations(self, start: np.ndarray, stop: np.ndarray, frame: np.ndarray, repeat: np.ndarray | None, *,
                      label: str):
        """(start, stop, frame, table repeat or None) -> `Presentations`, sorted (repeat, start)."""
        raise NotImplementedError

    def fps(self, frame_rate: float) -> float:
        """Items per second that set the identification tolerance and the 1-s scene blocks."""
        return float(frame_rate) if np.isfinite(frame_rate) and frame_rate > 0 else 30.0

    def offset_bins(self, requested: int, *, latency_s: float = 0.0) -> int:
        """The encoder window's lag in bins for this kind (``requested`` for a movie)."""
        return int(requested)

    def check_split(self, n_repeats: int, *, n_val_repeats: int, n_test_repeats: int, label: str) -> None:
        """Refuse, before any model is loaded, a split the presentations cannot give."""
        check_split(n_repeats, n_val=n_val_repeats, n_test=n_test_repeats, source=label)

    def check_window(self, start: np.ndarray, *, latency_s: float, window_s: float, allow_overlap: bool,
                     label: str) -> None:
        """Refuse a response window that counts the next presentation's response (flashed images only)."""

    def split(self, frame: np.ndarray, repeat: np.ndarray, *, n_val_repeats: int, n_test_repeats: int,
              n_val_images: int, n_test_images: int, seed: int, label: str) -> Split:
        """Presentations -> train / validation / test: whole repeats held out (a movie)."""
        try:
            return split_repeats(repeat, n_val=n_val_repeats, n_test=n_test_repeats)
        except ValueError as err:
            raise NeurratorError(label, f"cannot split the presentations into train/validation/test repeats: {err}"
                                 ) from None

    def drop_blanks(self, start, stop, frame, repeat, *, label: str):
        """Remove blank presentations; refuse any other negative index."""
        frame = np.asarray(frame, dtype=np.int64)
        blank = np.isin(frame, self.blank_values) if self.blank_values else np.zeros(frame.shape, bool)
        bad = (frame < 0) & ~blank
        if bad.any():
            raise NeurratorError(label, f"negative frame indices ({int(frame[bad].min())}) in a {self.name} table")
        keep = ~blank
        rep = None if repeat is None else np.asarray(repeat)[keep]
        return np.asarray(start)[keep], np.asarray(stop)[keep], frame[keep], rep, int(blank.sum())


def _sorted(frame, start, stop, repeat, *, kind: str):
    order = np.lexsort((start, repeat))
    return Presentations(frame=frame[order], start=start[order], stop=stop[order],
                         repeat=repeat[order].astype(np.int64), kind=kind)


@dataclass(frozen=True)
class MovieKind(StimulusKind):
    """A movie shown in full passes (repeats)."""

    name: str = "movie"

    def presentations(self, start, stop, frame, repeat, *, label: str):
        start, stop, frame, repeat, _ = self.drop_blanks(start, stop, frame, repeat, label=label)
        order = np.lexsort((frame, start))
        start, stop, frame = start[order], stop[order], frame[order]
        if repeat is not None and np.all(np.isfinite(np.asarray(repeat, np.float64)[order])):
            _, rep = np.unique(np.asarray(repeat)[order].astype(np.int64), return_inverse=True)
        else:  # a new pass starts where the frame index goes back
            rep = np.concatenate([[0], np.cumsum(np.diff(frame) < 0)]).astype(np.int64)
        return _sorted(frame, start, stop, np.asarray(rep, dtype=np.int64), kind=self.name)


def occurrence_repeats(frame: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Repeat of each presentation = how many times its image was shown before (0-based, in time order).

    Examples
    --------
    >>> occurrence_repeats(np.array([3, 1, 3, 3, 1]), np.arange(5.0))
    array([0, 0, 1, 2, 1])
    """
    frame = np.asarray(frame, dtype=np.int64)
    order = np.lexsort((np.asarray(start), frame))  # by image, then time
    f = frame[order]
    first = np.concatenate([[0], np.flatnonzero(np.diff(f) != 0) + 1]) if f.size else np.zeros(0, np.int64)
    run_start = np.repeat(first, np.diff(np.concatenate([first, [f.size]])))
    rep = np.empty(frame.size, np.int64)
    rep[order] = np.arange(f.size) - run_start
    return rep


@dataclass(frozen=True)
class FlashedImagesKind(StimulusKind):
    """Images flashed one at a time in random order (Allen natural_scenes)."""

    name: str = "flashed_images"
    blank_values: tuple[int, ...] = (-1,)
    continuous: bool = False

    def presentations(self, start, stop, frame, repeat, *, label: str):
        start, stop, frame, _, _ = self.drop_blanks(start, stop, frame, repeat, label=label)
        if frame.size == 0:
            raise NeurratorError(label, "the image presentations are all blanks (frame = -1)")
        start = np.asarray(start, np.float64)
        return _sorted(frame, start, np.asarray(stop, np.float64), occurrence_repeats(frame, start), kind=self.name)

    def fps(self, frame_rate: float) -> float:
        """1: images are independent items (every image its own block, no neighbour is near-identical)."""
        return 1.0

    def offset_bins(self, requested: int, *, latency_s: float = 0.0) -> int:
        """0: the window is already aligned to the onset plus the latency."""
        if requested:
            log.info("flashed images: the window is aligned to the onset (+ %g s latency); --offset-bins ignored",
                     latency_s)
        return 0

    def check_split(self, n_repeats: int, *, n_val_repeats: int, n_test_repeats: int, label: str) -> None:
        """Nothing to check before the data: images, not repeats, are held out (`split`)."""

    def check_window(self, start: np.ndarray, *, latency_s: float, window_s: float, allow_overlap: bool,
                     label: str) -> None:
        """Refuse a response window longer than the inter-onset interval.

        The window ``[onset + latency, onset + latency + window)`` reaches into the next presentation's
        response when it ends after the next onset plus the same latency, i.e. when ``window`` exceeds the
        time to the next onset. Refused (unless ``allow_overlap``) when that happens for more than 1% of the
        presentations (5 ms of timing jitter tolerated).

        Examples
        --------
        >>> FLASHED_IMAGES.check_window(np.arange(5) * 0.25, latency_s=0.05, window_s=0.25, allow_overlap=False,
        ...                             label="s.nwb")
        >>> FLASHED_IMAGES.check_window(np.arange(5) * 0.2, latency_s=0.05, window_s=0.25, allow_overlap=False,
        ...                             label="s.nwb")
        Traceback (most recent call last):
        neurrator.errors.NeurratorError: s.nwb: the response window (0.05 to 0.3 s after each onset) is longer than the time to the next presentation (median 0.2 s) for 4 of 5 presentations: it would count the next image's response; shorten --response-window (or --response-latency), or pass --allow-overlap
        """
        onsets = np.sort(np.asarray(start, dtype=np.float64))
        if onsets.size < 2 or allow_overlap:
            return
        ioi = np.diff(onsets)
        over = int(np.sum(window_s > ioi + 0.005))
        if over > 0.01 * onsets.size:
            raise NeurratorError(label, f"the response window ({latency_s:g} to {latency_s + window_s:g} s after each "
                                 f"onset) is longer than the time to the next presentation (median "
                                 f"{float(np.median(ioi)):.3g} s) for {over} of {onsets.size} presentations: it would "
                                 "count the next image's response; shorten --response-window (or --response-latency), "
                                 "or pass --allow-overlap")

    def split(self, frame: np.ndarray, repeat: np.ndarray, *, n_val_repeats: int, n_test_repeats: int,
              n_val_images: int, n_test_images: int, seed: int, label: str) -> Split:
        """Presentations -> train / validation / test: whole images held out (the unseen-image test)."""
        try:
            return split_by_image(frame, n_val_images=n_val_images, n_test_images=n_test_images, seed=seed)
        except NeurratorError as err:
            raise NeurratorError(label, f"{err.problem} (--val-images / --test-images)") from None


MOVIE = MovieKind()
FLASHED_IMAGES = FlashedImagesKind()
#: kind name -> kind
STIMULUS_KINDS: dict[str, StimulusKind] = {MOVIE.name: MOVIE, FLASHED_IMAGES.name: FLASHED_IMAGES}
#: Allen stimulus name -> kind name (other names are movies unless a kind is given)
KNOWN_STIMULI: dict[str, str] = {
    "natural_movie_one": "movie",
    "natural_movie_three": "movie",
    "natural_movie_1": "movie",
    "natural_movie_3": "movie",
    "natural_scenes": "flashed_images",
}


def kind_from_layout(frame: np.ndarray, start: np.ndarray) -> str:
    """The stimulus kind a presentation table's layout shows: ``flashed_images`` when it has blank rows
    (frame -1) or its frames, in time order, do not step through a movie (fewer than half of the steps go to
    the next frame); else ``movie``.

    Examples
    --------
    >>> kind_from_layout(np.tile(np.arange(10), 3), np.arange(30.0)), kind_from_layout(np.array([4, 1, 7, 1]), np.arange(4.0))
    ('movie', 'flashed_images')
    """
    frame = np.asarray(frame)
    if frame.size and np.any(frame == -1):
        return "flashed_images"
    steps = np.diff(frame[np.argsort(np.asarray(start), kind="stable")])
    return "movie" if steps.size == 0 or np.mean(steps == 1) >= 0.5 else "flashed_images"


def stimulus_kind(stimulus: str, *, kind: str | None = None, frame: np.ndarray | None = None,
                  start: np.ndarray | None = None) -> StimulusKind:
    """The kind of ``stimulus``: ``kind`` when given, else `KNOWN_STIMULI`, else the table's layout
    (`kind_from_layout` of ``frame`` and ``start``, when given), else ``movie``."""
    name = kind or KNOWN_STIMULI.get(stimulus) or (kind_from_layout(frame, start) if frame is not None and
                                                   start is not None else "movie")
    if name not in STIMULUS_KINDS:
        raise NeurratorError(stimulus, f"unknown stimulus kind {name!r}; kinds: {', '.join(STIMULUS_KINDS)}")
    return STIMULUS_KINDS[name]


def bin_intervals(start: np.ndarray, stop: np.ndarray, *, kind: StimulusKind, bins_per_frame: int,
                  window_bins: int, window_s: float = 0.25, latency_s: float = 0.0
                  ) -> tuple[np.ndarray, np.ndarray, int]:
    """Intervals to bin per presentation and bins per interval, for `neurrator.data.binning.bin_spikes`.

    A movie bins each presentation's own interval in ``bins_per_frame`` bins. Flashed images bin the
    onset-aligned window ``[start + latency_s, start + latency_s + window_s)`` in ``window_bins`` bins
    (then train with ``bins_per_frame = window_bins`` and ``offset_bins = 0``: each window is exactly
    its presentation's bins).

    Examples
    --------
    >>> s, e, b = bin_intervals(np.array([1.0, 1.25]), np.array([1.25, 1.5]), kind=FLASHED_IMAGES,
    ...                         bins_per_frame=4, window_bins=10, window_s=0.3, latency_s=0.05)
    >>> s.tolist(), e.tolist(), b
    ([1.05, 1.3], [1.35, 1.6], 10)
    """
    start = np.asarray(start, np.float64)
    if kind.continuous:
        return start, np.asarray(stop, np.float64), int(bins_per_frame)
    if window_s <= 0:
        raise ValueError("window_s must be > 0")
    onset = start + float(latency_s)
    return onset, onset + float(window_s), int(window_bins)


