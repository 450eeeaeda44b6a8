"""Movie frames for a stimulus: from the file's stimulus templates, a user's movie file, or a registry.

Order of resolution (`resolve_frames`): the NWB file's ``stimulus/templates/<stimulus>`` (an
ImageSeries/OpticalSeries of (F, H, W) or (F, H, W, 3) frames) -> the ``movie=`` argument -> the
registry `KNOWN_MOVIES` (fetched once into a cache with pooch, checksum verified; an entry without a
verified address is skipped with a warning). Frames are never guessed: when none of these gives
frames, ``frames`` stays None and `require_frames` raises a NeurratorError saying to pass --movie.

Movie files that work, and the size checks made before one is decoded, are in
`neurrator.io.movie_files` (`load_movie_file`: .npy, .npz, .h5, multi-page .tif, a folder of images, a video).

The Allen movies (natural_movie_one, natural_movie_three) have no fixed address: their download link
is looked up in the Allen warehouse the way AllenSDK does (`neurrator.io.allen_warehouse`). Their sha256
is not pinned in this file (it could not be checked from this project's machines), so the first
download is trusted and its sha256 recorded next to it (``<name>.npy.sha256``) and in the session's
``frames_source`` (provenance); every later use is checked against that record. Pin a hash with
`register_movie` or ``$NEURRATOR_MOVIE_REGISTRY``. With ``$NEURRATOR_OFFLINE=1`` (or no network) the
error names the file to download and where to put it; a file placed there by hand is used as is.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neurrator.errors import NeurratorError
from neurrator.io.checksums import sha256_file
from neurrator.io.allen_warehouse import movie_download_url
from neurrator.io.httpfile import DEFAULT_TIMEOUT_S, is_timeout, timeout_message
from neurrator.io.limits import check_array_size, memory_guard
from neurrator.io.movie_files import load_movie_file, read_movie_file, to_gray_uint8, to_uint8

__all__ = [
    "FRAME_RATE_TOLERANCE",
    "KNOWN_MOVIES",
    "FetchedMovie",
    "MovieEntry",
    "check_frame_rate",
    "check_frames",
    "fetch_known_movie",
    "fetch_movie",
    "frames_from_template",
    "register_movie",
    "require_frames",
    "resolve_frames",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MovieEntry:
    """One registered movie.

    Attributes
    ----------
    name
        Stimulus name (``natural_movie_one``).
    n_frames, shape
        Expected frame count and (H, W).
    url
        Download address, or None when no verified public address is recorded.
    sha256
        Checksum of the downloaded file, or None when unknown: `fetch_known_movie` then refuses the
        file (printing the hash it computed) unless ``allow_unverified=True``.
    fmt
        File format of the download: "npy" or "h5" (dataset ``data``).
    note
        Where the movie comes from and how to get it by hand.
    allen_movie_number
        For the Allen templates: ``n`` of ``natural_movie_<n>.npy``, whose address is looked up in the
        Allen warehouse when ``url`` is None.
    trust_on_first_use
        Without a pinned ``sha256``, accept the first download and record its hash (checked on every
        later use) instead of refusing it.
    """

    name: str
    n_frames: int
    shape: tuple[int, int]
    url: str | None
    sha256: str | None
    fmt: str = "npy"
    note: str = ""
    allen_movie_number: int | None = None
    trust_on_first_use: bool = False


@dataclass(frozen=True)
class FetchedMovie:
    """A registry movie as loaded: frames, where from, and the sha256 of the file (for provenance)."""

    frames: np.ndarray
    path: Path
    url: str
    sha256: str
    #: "pinned" (matches the registry), "first use" (recorded now), "recorded" (matches the first-use
    #: record), "unverified" (allow_unverified)
    trust: str

    @property
    def source(self) -> str:
        """The provenance string: ``registry:<name> sha256:<hex> (<trust>) from <url>``."""
        return f"registry:{self.path.stem} sha256:{self.sha256} ({self.trust}) from {self.url}"


# The Allen templates are served by the Allen Institute's warehouse (api.brain-map.org) through a
# "well known file" whose download link AllenSDK resolves at run time with an RMA query
# (EcephysProjectWarehouseApi.stimulus_templates). We could not check a stable address or the file's
# sha256 from this project's machines, so both are recorded as unknown (None) instead of invented:
# fetching these entries raises a clear error until a user registers the verified address and checksum
# (`register_movie`, or the JSON file named by $NEURRATOR_MOVIE_REGISTRY), or passes the frames with
# --movie (AllenSDK: EcephysProjectCache.get_natural_movie_template(1) or (3), saved with np.save).
KNOWN_MOVIES: dict[str, MovieEntry] = {
    "natural_movie_one": MovieEntry(
        name="natural_movie_one", n_frames=900, shape=(304, 608), url=None, sha256=None, fmt="npy",
        note="Allen Brain Observatory natural_movie_one (AllenSDK get_natural_movie_template(1))",
        allen_movie_number=1, trust_on_first_use=True,
    ),
    "natural_movie_three": MovieEntry(
        name="natural_movie_three", n_frames=3600, shape=(304, 608), url=None, sha256=None, fmt="npy",
        note="Allen Brain Observatory natural_movie_three (AllenSDK get_natural_movie_template(3))",
        allen_movie_number=3, trust_on_first_use=True,
    ),
}

#: Last reason a registry movie could not be fetched, per stimulus (for `require_frames`' message).
_FETCH_ERRORS: dict[str, str] = {}


def register_movie(entry: MovieEntry) -> None:
    """Add or replace a registry entry (for verified addresses and checksums)."""
    KNOWN_MOVIES[entry.name] = entry


def _registry() -> dict[str, MovieEntry]:
    reg = dict(KNOWN_MOVIES)
    extra = os.environ.get("NEURRATOR_MOVIE_REGISTRY")
    if extra:
        try:
            items = json.loads(Path(extra).read_text())
        except (OSError, ValueError) as err:
            raise NeurratorError(extra, f"cannot read the movie registry file ($NEURRATOR_MOVIE_REGISTRY): {err}")
        for name, d in items.items():
            reg[name] = MovieEntry(
                name=name, n_frames=int(d["n_frames"]), shape=tuple(d.get("shape", (0, 0))), url=d.get("url"),
                sha256=d.get("sha256"), fmt=d.get("fmt", "npy"), note=d.get("note", ""),
                allen_movie_number=d.get("allen_movie_number"),
                trust_on_first_use=bool(d.get("trust_on_first_use", False)),
            )
    return reg


def frames_from_template(nwbfile, stimulus: str, *, label: str) -> tuple[np.ndarray | None, float | None]:
    """Frames and rate of ``stimulus/templates/<stimulus>`` (None, None when absent)."""
    templates = getattr(nwbfile, "stimulus_template", None) or {}
    if stimulus not in templates:
        return None, None
    ts = templates[stimulus]
    data = getattr(ts, "data", None)
    if data is None or not hasattr(data, "shape"):
        # Images containers hold a list of images
        imgs = getattr(ts, "images", None)
        if not imgs:
            return None, None
        total = 0
        for name, im in imgs.items():  # declared sizes first, then the read
            if hasattr(im.data, "shape") and hasattr(im.data, "dtype"):
                total += check_array_size(im.data.shape, np.dtype(im.data.dtype).itemsize, label=label,
                                          what=f"stimulus/templates/{stimulus}/{name}")
        check_array_size((total,), 1, label=label, what=f"the images of stimulus/templates/{stimulus}")
        with memory_guard(label, f"stimulus/templates/{stimulus}"):
            data = np.stack([np.asarray(im.data[:]) for im in imgs.values()])
    if len(data.shape) == 0 or data.shape[0] == 0:  # e.g. an ImageSeries pointing to an external_file
        log.warning("%s: stimulus/templates/%s holds no frames; looking elsewhere", label, stimulus)
        return None, None
    check_array_size(data.shape, np.dtype(data.dtype).itemsize, label=label, what=f"stimulus/templates/{stimulus}")
    with memory_guard(label, f"stimulus/templates/{stimulus}"):
        frames = to_uint8(np.asarray(data[:]), label=f"{label} (stimulus/templates/{stimulus})")  # colour kept
    rate = getattr(ts, "rate", None)
    return frames, (float(rate) if rate else None)


def _by_hand(entry: MovieEntry, target: Path) -> str:
    how = (f"AllenSDK EcephysProjectCache.get_natural_movie_template({entry.allen_movie_number}) saved with np.save"
           if entry.allen_movie_number is not None else (entry.url or entry.note or "the movie"))
    return f"download {entry.name} ({how}) to {target}, or pass --movie FRAMES.npy"


def _load_registry_file(path: Path, entry: MovieEntry) -> np.ndarray:
    frames = load_movie_file(path)  # the file's suffix is the entry's format; sizes checked before reading
    if entry.n_frames and frames.shape[0] != entry.n_frames:
        raise NeurratorError(path, f"registered movie {entry.name} should have {entry.n_frames} frames, "
                                   f"got {frames.shape[0]}")
    return frames


def fetch_movie(
    name: str,
    *,
    cache_dir: str | Path | None = None,
    allow_unverified: bool = False,
    progress: bool = False,
    offline: bool | None = None,
    timeout: float | None = None,
) -> FetchedMovie:
    """A registered movie from ``cache_dir``, downloaded there once (pooch) when missing.

    The address is the entry's ``url``, or for the Allen templates the warehouse's well-known-file link
    (`neurrator.io.allen_warehouse.movie_download_url`). A pinned ``sha256`` is verified; without one, an
    entry with ``trust_on_first_use`` records the first download's hash in ``<file>.sha256`` and checks
    later uses against it; other entries are refused (the message prints the hash) unless
    ``allow_unverified``. ``offline`` (default ``$NEURRATOR_OFFLINE``) never touches the network;
    ``timeout`` (default `neurrator.io.httpfile.DEFAULT_TIMEOUT_S`) is how long the warehouse and the
    download may go silent.

    Raises
    ------
    NeurratorError
        Unknown name, no address, checksum mismatch (pinned or recorded), unknown checksum, a failed
        download or lookup (the message names the file to download and where to put it).
    """
    reg = _registry()
    if name not in reg:
        raise NeurratorError(name, f"not a registered movie; known: {', '.join(sorted(reg))}; pass --movie FRAMES.npy")
    entry = reg[name]
    if entry.url is None and entry.allen_movie_number is None:
        raise NeurratorError(
            name,
            "no verified download address is registered for this movie "
            f"({entry.note}); pass --movie FRAMES.npy or register it via $NEURRATOR_MOVIE_REGISTRY",
        )
    if offline is None:
        offline = os.environ.get("NEURRATOR_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")
    if cache_dir is not None:
        cache = Path(cache_dir)
    else:
        import pooch

        cache = Path(pooch.os_cache("neurrator")) / "movies"
    target = cache / f"{name}.{entry.fmt}"
    record = target.with_name(target.name + ".sha256")
    pinned = entry.sha256.lower() if entry.sha256 else None

    if target.exists():  # downloaded before, or placed by hand
        digest = sha256_file(target)
        recorded = record.read_text().split()[0] if record.exists() else None
        if pinned and digest != pinned:
            raise NeurratorError(target, f"sha256 {digest} does not match the registered {pinned} for {name}; "
                                         "delete the file to download it again")
        if not pinned and recorded and digest != recorded:
            raise NeurratorError(target, f"sha256 {digest} differs from {recorded} recorded at first use of {name}; "
                                         f"the file changed: delete it and {record.name} to fetch it again")
        if pinned:
            trust = "pinned"
        elif recorded:
            trust = "recorded"
        else:  # placed by hand: its hash is recorded now, as a first use
            trust = "first use"
            record.write_text(f"{digest}  {target.name}\n")
        text = record.read_text() if record.exists() else ""
        url = text.split("  from ", 1)[1].strip() if "  from " in text else str(target)
        return FetchedMovie(_load_registry_file(target, entry), target, url, digest, trust)

    if offline:
        raise NeurratorError(name, f"offline ($NEURRATOR_OFFLINE) and not in the cache; {_by_hand(entry, target)}")

    timeout = DEFAULT_TIMEOUT_S if timeout is None else float(timeout)
    url = entry.url
    if url is None:
        try:
            url = movie_download_url(int(entry.allen_movie_number), timeout=timeout)
        except NeurratorError as err:
            raise NeurratorError(name, f"{err.message}; {_by_hand(entry, target)}") from err
    import pooch

    # pooch's HTTP downloader passes ``timeout`` to requests (connect and between bytes)
    downloader = pooch.HTTPDownloader(progressbar=progress, timeout=timeout) if url.startswith("http") else None
    try:
        path = Path(pooch.retrieve(url=url, known_hash=None if pinned is None else f"sha256:{pinned}",
                                   fname=target.name, path=cache, progressbar=progress, downloader=downloader))
    except ValueError as err:  # pooch: hash mismatch (the bad download is removed by pooch)
        raise NeurratorError(url, f"checksum mismatch for {name}: {err}".splitlines()[0]) from err
    except Exception as err:  # noqa: BLE001 - network errors of every kind become one clear line
        if is_timeout(err):
            raise NeurratorError(url, f"{timeout_message(timeout, f'downloading movie {name}')}; "
                                      f"{_by_hand(entry, target)}") from err
        raise NeurratorError(url, f"cannot download movie {name}: {type(err).__name__}: {err}; "
                                  f"{_by_hand(entry, target)}") from err
    digest = sha256_file(path)
    if pinned:
        trust = "pinned"
    elif entry.trust_on_first_use:
        trust = "first use"
        log.warning("%s: no sha256 is pinned; trusting the first download (sha256 %s), recorded in %s",
                    name, digest, record)
    else:
        msg = f"no checksum is registered for {name}; the downloaded file has sha256 {digest}"
        if not allow_unverified:
            path.unlink(missing_ok=True)
            raise NeurratorError(url, msg + "; verify it and register it (or pass allow_unverified)")
        log.warning(msg)
        import warnings

        warnings.warn(msg, stacklevel=2)
        trust = "unverified"
    try:
        frames = _load_registry_file(path, entry)
    except NeurratorError:
        path.unlink(missing_ok=True)  # never keep a bad download as the trusted copy
        raise
    if trust in ("first use", "pinned"):
        record.write_text(f"{digest}  {target.name}  from {url}\n")
    return FetchedMovie(frames, path, url, digest, trust)


def fetch_known_movie(
    name: str,
    *,
    cache_dir: str | Path | None = None,
    allow_unverified: bool = False,
    progress: bool = False,
) -> np.ndarray:
    """The frames of `fetch_movie` (kept for callers that need no provenance)."""
    return fetch_movie(name, cache_dir=cache_dir, allow_unverified=allow_unverified, progress=progress).frames


def resolve_frames(
    nwbfile,
    *,
    stimulus: str,
    movie: str | Path | np.ndarray | None,
    label: str,
    fetch: bool = True,
    cache_dir: str | Path | None = None,
    timeout: float | None = None,
) -> tuple[np.ndarray | None, str, float | None]:
    """Frames for ``stimulus``: template -> ``movie`` -> registry. Returns (frames, source, rate).

    ``rate`` is the frame rate the template or the video file declares (None for the other sources).

    A registry movie that cannot be fetched leaves frames None (with a warning): reading a session
    does not need frames; `require_frames` raises with the reason when they are needed.
    """
    frames, rate = frames_from_template(nwbfile, stimulus, label=label)
    if frames is not None:
        return frames, f"template:{stimulus}", rate
    if movie is not None:
        if isinstance(movie, np.ndarray):
            return to_gray_uint8(movie, label="movie array"), "array", None
        frames, rate = read_movie_file(movie)
        return frames, str(movie), rate
    reg = _registry() if fetch else {}
    if stimulus in reg:
        try:
            got = fetch_movie(stimulus, cache_dir=cache_dir, timeout=timeout)
        except NeurratorError as err:
            _FETCH_ERRORS[stimulus] = err.message
            log.warning("%s: no frames for %s: %s", label, stimulus, err.message)
            return None, "", None
        _FETCH_ERRORS.pop(stimulus, None)
        return got.frames, got.source, None
    return None, "", None


def require_frames(session) -> np.ndarray:
    """The session's frames, or a NeurratorError saying how to supply them (never guessed)."""
    if session.frames is not None:
        return session.frames
    hint = ""
    if session.stimulus in _FETCH_ERRORS:
        hint = f" and the registry fetch failed ({_FETCH_ERRORS[session.stimulus]})"
    elif session.stimulus in _registry():
        hint = " and it was not fetched from the registry"
    raise NeurratorError(
        session.path_label,
        f"no movie frames for stimulus '{session.stimulus}': the file has no stimulus template{hint}; "
        "pass the frames with --movie (.npy/.npz/.h5/.tif, a folder of PNGs, or a video: .mp4/.avi/.mov/.mkv)",
    )


def check_frames(frames: np.ndarray, frame_index: np.ndarray, *, label: str, frames_source: str = "") -> None:
    """Raise unless every presented frame exists and the movie length matches the presentations."""
    n = int(frames.shape[0])
    if frame_index.size == 0:
        return
    hi = int(frame_index.max())
    where = f" ({frames_source})" if frames_source else ""
    if hi >= n:
        raise NeurratorError(
            label, f"presentations show frame index {hi}, beyond the movie's {n} frames{where}"
        )
    if n != hi + 1:
        raise NeurratorError(
            label,
            f"the movie has {n} frames{where} but the presentations show frames 0..{hi}; "
            "the frame count is inconsistent (wrong movie?)",
        )


#: Relative difference accepted between a video's declared frame rate and the presentations' rate.
FRAME_RATE_TOLERANCE = 0.05


def check_frame_rate(rate: float, start: np.ndarray, stop: np.ndarray, *, label: str) -> None:
    """Raise unless a video's declared ``rate`` matches the presentations' rate (1 / median duration) within 5%.

    ``label`` is the video file. A movie shown at another rate than its file declares is refused: a
    wrong file is the likelier cause; a movie deliberately shown slower or faster is passed as frames
    without a rate (.npy).

    Examples
    --------
    >>> check_frame_rate(25.0, np.arange(3) / 25, np.arange(1, 4) / 25, label="bikes.mp4")
    >>> check_frame_rate(25.0, np.arange(3) / 30, np.arange(1, 4) / 30, label="bikes.mp4")
    Traceback (most recent call last):
    ...
    neurrator.errors.NeurratorError: bikes.mp4: the video declares 25 frames/s but the presentations show 30 frames/s (median frame duration 0.0333 s); wrong video? (a movie shown at another rate on purpose: pass its frames as .npy)
    """
    durations = np.asarray(stop, np.float64) - np.asarray(start, np.float64)
    if durations.size == 0:
        return
    med = float(np.median(durations))
    if not (np.isfinite(rate) and rate > 0):
        raise NeurratorError(label, "the video declares no frame rate; pass its frames as .npy instead")
    shown = 1.0 / med if med > 0 else float("inf")
    if abs(shown - rate) > FRAME_RATE_TOLERANCE * rate:
        raise NeurratorError(label, f"the video declares {rate:.4g} frames/s but the presentations show {shown:.4g} "
                             f"frames/s (median frame duration {med:.3g} s); wrong video? (a movie shown at another "
                             "rate on purpose: pass its frames as .npy)")
