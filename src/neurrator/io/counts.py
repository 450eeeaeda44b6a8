"""Spike counts per presentation (units, images, repeats) + images -> an in-memory NWB session of flashed images.

Many array recordings are shared as counts: one number per unit, image and repeat, the spikes counted in
a fixed window after each image onset (e.g. Cowley et al. 2023, macaque V4: 100 ms windows, NaN where a
repeat was not shown). neurrator reads spike times, so a converter has to make up what counts do not
hold. This module makes up as little as it can, says what it made up in the file, and keeps every count
exact:

* presentation order (made up): repeat block after repeat block; block ``r`` shows every image that has
  a count in repeat ``r``, in a seeded random order (``CountProtocol.seed``). An image's n-th showing is
  therefore its n-th repeat of the source when its missing repeats are the last ones (as in the V4 data).
* timing (made up): one onset every ``interval_s`` seconds from ``start_s``; the counting window is
  ``[onset + latency_s, onset + latency_s + window_s)``; ``stop_time`` is the end of the counting
  window (the display duration is not in counts).
* spike times (made up): a count of ``k`` becomes ``k`` times drawn uniformly at random (seeded) inside
  the counting window, at least ``EDGE_S`` from its edges, so any window that contains the counting
  window (e.g. neurrator's default flashed-image window ``[onset + 0.05, onset + 0.30)``) counts exactly
  ``k``. The timing of spikes within the window is NOT data: only the window total is.

`counts_nwbfile` builds the `pynwb.NWBFile` in the layout neurrator reads for flashed images
(`neurrator.data.stimuli.FlashedImagesKind`): units with spike times (and a ``location`` column),
``intervals/<stimulus>_presentations`` (start_time, stop_time, stimulus_name, frame = image index,
count_window_start, count_window_stop, source_repeat), the images as ``stimulus/templates/<stimulus>``
(ImageSeries (I, H, W[, 3]) uint8, colour kept), and the made-up parts in ``session_description`` and
``notes``. Reading the files and writing the NWB file: `neurrator.io.count_files.convert_counts`.
"""

from __future__ import annotations

import uuid
from importlib.metadata import PackageNotFoundError, version
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import NamedTuple

import numpy as np

from neurrator.errors import NeurratorError

__all__ = ["CountPresentations", "CountProtocol", "EDGE_S", "check_counts", "counts_nwbfile", "made_up_notes",
           "order_presentations", "spread_counts"]

try:
    __version__ = version("neurrator")
except PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
    __version__ = "0.0.0+unknown"

#: Spike times drawn from the counting window stay this far (s) from its edges (no float rounding moves
#: one across an edge of a window that starts or ends where the counting window does).
EDGE_S = 1e-4


@dataclass(frozen=True)
class CountProtocol:
    """The made-up presentation protocol of converted counts (each field is written into the file's notes)."""

    window_s: float = 0.1
    """Length of the source's counting window (s): 0.1 for the V4 data of Cowley et al."""
    latency_s: float = 0.05
    """Start of the counting window after the onset (s); with neurrator's default flashed-image window
    (latency 0.05 s, 0.25 s long) a window of up to 0.25 s starting here is counted whole."""
    interval_s: float = 0.5
    """Onset-to-onset interval (s), made up; it must leave room for the response window after the onset."""
    start_s: float = 1.0
    """Onset of the first presentation (s)."""
    seed: int = 0
    """Seed of the presentation order and of the spike times inside each window."""

    def __post_init__(self) -> None:
        if not (self.window_s > 0 and self.latency_s >= 0 and self.start_s >= 0):
            raise ValueError("window_s must be > 0, latency_s and start_s >= 0")
        if self.window_s <= 2 * EDGE_S:
            raise ValueError(f"window_s must be longer than {2 * EDGE_S} s")
        if self.interval_s < self.latency_s + self.window_s:
            raise ValueError(f"interval_s ({self.interval_s}) must be at least latency_s + window_s "
                             f"({self.latency_s + self.window_s}): counting windows may not overlap the next onset")


class CountPresentations(NamedTuple):
    """The made-up presentations, in time order."""

    image: np.ndarray  # (P,) int64 image index (column of the counts)
    repeat: np.ndarray  # (P,) int64 source repeat (third axis of the counts)
    onset: np.ndarray  # (P,) float64 s
    window_start: np.ndarray  # (P,) float64 s, onset + latency_s
    window_stop: np.ndarray  # (P,) float64 s, window_start + window_s


def check_counts(counts: np.ndarray, *, label: str) -> tuple[np.ndarray, np.ndarray]:
    """(N, I, R) or (N, I) counts with NaN = not shown -> ((N, I, R) int64 counts (0 where not shown), (I, R) shown).

    Raises `NeurratorError` (naming ``label``) unless the counts are finite non-negative integers wherever
    they are not NaN, and NaN marks the same (image, repeat) pairs for every unit.

    Examples
    --------
    >>> c, shown = check_counts(np.array([[[1, np.nan]], [[0, np.nan]]]), label="c.npy")
    >>> c[:, 0, 0].tolist(), shown.tolist()
    ([1, 0], [[True, False]])
    """
    a = np.asarray(counts)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or 0 in a.shape:
        raise NeurratorError(label, f"counts must be (units, images, repeats) or (units, images), got shape "
                             f"{np.shape(counts)}")
    if a.dtype.kind not in "uif" or a.dtype.kind == "b":
        raise NeurratorError(label, f"counts have dtype {a.dtype}; spike counts are numbers")
    x = a.astype(np.float64)
    nan = np.isnan(x)
    shown = ~nan[0]
    differ = np.flatnonzero((nan != nan[:1]).any(axis=(1, 2)))
    if differ.size:
        n = int(differ[0])
        i, r = (int(v) for v in np.argwhere(nan[n] != nan[0])[0])
        raise NeurratorError(label, f"unit {n} {'has no count' if nan[n, i, r] else 'has a count'} for image {i}, "
                             f"repeat {r}, unit 0 {'does' if nan[n, i, r] else 'does not'}: NaN must mean 'not "
                             "shown' for every unit alike")
    v = x[~nan]
    if not np.all(np.isfinite(v)) or (v < 0).any() or (v != np.round(v)).any():
        raise NeurratorError(label, "counts must be non-negative whole numbers (NaN = not shown); averaged or "
                             "normalised responses cannot be turned into spikes")
    if v.size and v.max() > np.iinfo(np.uint16).max:
        raise NeurratorError(label, f"a count of {int(v.max())} spikes in one window is more than neurrator "
                             f"bins ({np.iinfo(np.uint16).max})")
    if not shown.any():
        raise NeurratorError(label, "no image was shown (every count is NaN)")
    return np.where(nan, 0, x).astype(np.int64), shown


def order_presentations(shown: np.ndarray, protocol: CountProtocol) -> CountPresentations:
    """(I, R) shown mask -> the made-up presentations: repeat blocks, images in seeded random order.

    Examples
    --------
    >>> p = order_presentations(np.array([[True, True], [True, False]]), CountProtocol(seed=1))
    >>> sorted(zip(p.image.tolist(), p.repeat.tolist())), p.onset.tolist()
    ([(0, 0), (0, 1), (1, 0)], [1.0, 1.5, 2.0])
    """
    rng = np.random.default_rng(protocol.seed)
    image, repeat = [], []
    for r in range(shown.shape[1]):
        imgs = rng.permutation(np.flatnonzero(shown[:, r]))
        image.append(imgs)
        repeat.append(np.full(imgs.size, r))
    img = np.concatenate(image).astype(np.int64)
    rep = np.concatenate(repeat).astype(np.int64)
    onset = protocol.start_s + np.arange(img.size) * protocol.interval_s
    w0 = onset + protocol.latency_s
    return CountPresentations(img, rep, onset, w0, w0 + protocol.window_s)


def spread_counts(counts: np.ndarray, pres: CountPresentations, protocol: CountProtocol
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(N, I, R) int counts -> (spike_times (S,) float64 sorted per unit, offsets (N + 1,) int64).

    Unit ``n`` fires ``counts[n, image, repeat]`` spikes in each presentation's counting window, drawn
    uniformly in ``[window_start + EDGE_S, window_stop - EDGE_S]`` (seed ``protocol.seed + 1``).

    Examples
    --------
    >>> c = np.array([[[2]], [[0]]])
    >>> t, off = spread_counts(c, order_presentations(np.array([[True]]), CountProtocol()), CountProtocol())
    >>> off.tolist(), bool(np.all((t >= 1.05) & (t < 1.15)))
    ([0, 2, 2], True)
    """
    rng = np.random.default_rng(protocol.seed + 1)
    k = counts[:, pres.image, pres.repeat]  # (N, P)
    lo, width = pres.window_start + EDGE_S, protocol.window_s - 2 * EDGE_S
    times = []
    for n in range(k.shape[0]):
        starts = np.repeat(lo, k[n])
        times.append(np.sort(starts + rng.uniform(0.0, width, size=starts.size)))
    offsets = np.concatenate([[0], np.cumsum([t.size for t in times])]).astype(np.int64)
    spikes = np.concatenate(times) if offsets[-1] else np.zeros(0, np.float64)
    return spikes.astype(np.float64), offsets


def made_up_notes(protocol: CountProtocol, *, source: str, n_presentations: int, stimulus: str) -> str:
    """The ``notes`` of a converted session: what is data and what was made up, with every parameter."""
    p = protocol
    return (
        f"Converted by neurrator convert from spike counts per presentation ({source}). DATA: the spike count "
        f"of every unit in every shown (image, repeat), kept exactly as the count of spikes inside "
        f"[count_window_start, count_window_stop) of intervals/{stimulus}_presentations (the source's "
        f"{p.window_s:g} s counting window; source_repeat = the source's repeat index), and the images "
        f"(stimulus/templates/{stimulus}). MADE UP (not in the source): (1) presentation order: repeat block "
        f"after repeat block, block r showing every image that has a count in repeat r, in a random order "
        f"(seed {p.seed}); (2) timing: {n_presentations} onsets every {p.interval_s:g} s from {p.start_s:g} s, "
        f"counting window from onset + {p.latency_s:g} s to onset + {p.latency_s + p.window_s:g} s, stop_time = "
        f"the end of the counting window (the display duration is unknown); (3) spike times: each count spread "
        f"uniformly at random (seed {p.seed + 1}) inside its counting window, at least {EDGE_S:g} s from the "
        f"edges (spike timing within a window, ISIs and anything finer than the window are not data); "
        f"(4) session_start_time, unless given. Analyse with a response window that contains the counting "
        f"window and ends before the next onset: {_window_advice(p)}"
    )


def _window_advice(p: CountProtocol) -> str:
    """Whether neurrator's default flashed-image window (onset + 0.05 s to + 0.30 s) fits this protocol."""
    lat, end = p.latency_s, p.latency_s + p.window_s
    if lat >= 0.05 - 1e-9 and end <= 0.30 + 1e-9 and p.interval_s >= 0.30:
        return "neurrator's default (onset + 0.05 s to onset + 0.30 s) does."
    return (f"neurrator's default (onset + 0.05 s to onset + 0.30 s) does NOT; pass --response-latency {lat:g} "
            f"--response-window {p.window_s:g} (or any window from at most {lat:g} s to at least {end:g} s after the "
            f"onset, ending by {p.interval_s:g} s).")


def counts_nwbfile(counts: np.ndarray, shown: np.ndarray, images: np.ndarray, *, protocol: CountProtocol,
                   stimulus: str = "natural_scenes", source: str = "counts", region: str = "unknown",
                   subject: dict[str, str] | None = None, session_id: str = "counts",
                   session_start_time: datetime | None = None, identifier: str | None = None,
                   label: str = "counts"):
    """Checked counts (`check_counts`) + (I, H, W[, 3]) uint8 images -> a `pynwb.NWBFile` (nothing written).

    Parameters
    ----------
    counts, shown
        (N, I, R) int64 counts and the (I, R) mask of shown pairs, from `check_counts`.
    images
        (I, H, W) or (I, H, W, 3) uint8, image ``i`` = column ``i`` of the counts (colour kept).
    region
        Brain area of every unit (the Units ``location`` column), e.g. ``"V4"``.
    subject
        `pynwb.file.Subject` fields (subject_id, species, sex, age, ...); None: no subject.
    """
    from hdmf.backends.hdf5 import H5DataIO
    from hdmf.common import VectorData, VectorIndex
    from pynwb import NWBFile
    from pynwb.epoch import TimeIntervals
    from pynwb.file import Subject
    from pynwb.image import ImageSeries
    from pynwb.misc import Units

    N, n_images, R = counts.shape
    if images.shape[0] != n_images:
        raise NeurratorError(label, f"the counts have {n_images} images but the image set holds {images.shape[0]}")
    pres = order_presentations(shown, protocol)
    spikes, offsets = spread_counts(counts, pres, protocol)
    notes = made_up_notes(protocol, source=source, n_presentations=pres.image.size, stimulus=stimulus)
    made_up_start = session_start_time is None
    nwb = NWBFile(
        session_description=(
            f"Spike counts per presentation converted to spike times ({N} units, {n_images} images, up to {R} "
            f"repeats, {pres.image.size} presentations) by neurrator {__version__} from {source}. The counts are "
            "exact; presentation order, timing and the spike times inside each counting window are made up "
            "(see notes)."),
        identifier=identifier or str(uuid.uuid4()),
        session_start_time=datetime(1970, 1, 1, tzinfo=timezone.utc) if made_up_start else session_start_time,
        session_id=session_id,
        notes=notes + (" session_start_time is made up (1970-01-01)." if made_up_start else ""),
        stimulus_notes=f"{n_images} images (stimulus/templates/{stimulus}), flashed; order and timing made up",
        source_script=f"neurrator {__version__} convert",
        source_script_file_name="neurrator/io/counts.py",
        subject=Subject(**subject) if subject else None,
    )
    spike_data = VectorData(name="spike_times", data=spikes,
                            description="spike times (s), MADE UP inside each counting window (see notes); "
                                        "only the count per window is data")
    nwb.units = Units(name="units", id=np.arange(N), description="units of the count array (id = its row)",
                      columns=[spike_data,
                               VectorIndex(name="spike_times_index", data=offsets[1:], target=spike_data),
                               VectorData(name="location", description="brain area", data=[region] * N)])
    P = pres.image.size
    nwb.add_time_intervals(TimeIntervals(
        name=f"{stimulus}_presentations", id=np.arange(P),
        description=f"presentations of the {n_images} images; order and timing MADE UP (see notes)",
        columns=[
            VectorData(name="start_time", description="onset (s), made up", data=pres.onset),
            VectorData(name="stop_time", description="end of the counting window (s), made up",
                       data=pres.window_stop),
            VectorData(name="stimulus_name", description="stimulus", data=[stimulus] * P),
            VectorData(name="frame", description="image index into stimulus/templates (column of the counts)",
                       data=pres.image.astype(np.float64)),
            VectorData(name="count_window_start", description="start of the counting window (s)",
                       data=pres.window_start),
            VectorData(name="count_window_stop", description="end of the counting window (s)", data=pres.window_stop),
            VectorData(name="source_repeat", description="repeat index in the source count array",
                       data=pres.repeat),
        ]))
    nwb.add_stimulus_template(ImageSeries(
        name=stimulus, data=H5DataIO(np.ascontiguousarray(images), compression="gzip",
                                     chunks=(1,) + images.shape[1:]),
        unit="NA", format="raw", rate=1.0 / protocol.interval_s, starting_time=0.0,
        description="the images, index = frame column of the presentations (uint8, colour kept when RGB); "
                    "rate = the made-up presentation rate"))
    return nwb
