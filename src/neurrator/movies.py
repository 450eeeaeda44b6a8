"""Movie frames for a stimulus: from the file's stimulus templates, a user's movie file, or a registry.

Order of resolution (`resolve_frames`): the NWB file's ``stimulus/templates/<stimulus>`` (an
ImageSeries/OpticalSeries of (F, H, W) or (F, H, W, 3) frames) -> the ``movie=`` argument -> the
registry `KNOWN_MOVIES` (fetched once into a cache with pooch, checksum verified; an entry without a
verified address is skipped with a warning). Frames are never guessed: when none of these gives
frames, ``frames`` stays None and `require_frames` raises a NeurratorError saying to pass --movie.

Movie files that work (`load_movie_file`): ``.npy``; ``.npz`` (key ``frames``, else the only array);
``.h5``/``.hdf5`` (dataset ``data``, as AllenSDK's older templates); multi-page ``.tif``/``.tiff``
(via Pillow); a folder of ``.png``/``.jpg``/``.tif`` images (sorted by name, via Pillow). Video files
(.mp4, .avi, ...) need a video reader (imageio/av/OpenCV) that neurrator does not depend on: they are
rejected with an error saying to convert them to .npy first.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neurrator.errors import NeurratorError

__all__ = [
    "KNOWN_MOVIES",
    "MovieEntry",
    "check_frames",
    "fetch_known_movie",
    "frames_from_template",
    "load_movie_file",
    "register_movie",
    "require_frames",
    "resolve_frames",
    "to_gray_uint8",
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
    """

    name: str
    n_frames: int
    shape: tuple[int, int]
    url: str | None
    sha256: str | None
    fmt: str = "npy"
    note: str = ""


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
    ),
    "natural_movie_three": MovieEntry(
        name="natural_movie_three", n_frames=3600, shape=(304, 608), url=None, sha256=None, fmt="npy",
        note="Allen Brain Observatory natural_movie_three (AllenSDK get_natural_movie_template(3))",
    ),
}


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
            )
    return reg


def to_gray_uint8(frames: np.ndarray, *, label: str) -> np.ndarray:
    """(F, H, W) or (F, H, W, 3|4) frames of any numeric type -> (F, H, W) uint8.

    Colour is converted with ITU-R 601 luma weights; floats in [0, 1] are scaled by 255, other floats
    and integers wider than 8 bits must already lie in [0, 255].
    """
    a = np.asarray(frames)
    if a.ndim == 4 and a.shape[-1] in (3, 4):
        a = a[..., :3].astype(np.float32) @ np.asarray([0.299, 0.587, 0.114], np.float32)
    if a.ndim != 3:
        raise NeurratorError(label, f"movie frames must be (F, H, W) or (F, H, W, 3), got shape {a.shape}")
    if a.dtype == np.uint8:
        return a
    if a.dtype.kind == "b" or a.dtype.kind not in "uif":
        raise NeurratorError(label, f"movie frames have unsupported dtype {a.dtype}")
    x = a.astype(np.float32)
    if x.size and np.nanmax(x) <= 1.0 and a.dtype.kind == "f":
        x = x * 255.0
    if x.size and (np.nanmin(x) < 0 or np.nanmax(x) > 255.5 or not np.all(np.isfinite(x))):
        raise NeurratorError(label, "movie frame values must lie in [0, 255] (or [0, 1] for floats)")
    return np.round(x).astype(np.uint8)


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
        data = np.stack([np.asarray(im.data[:]) for im in imgs.values()])
    if len(data.shape) == 0 or data.shape[0] == 0:  # e.g. an ImageSeries pointing to an external_file
        log.warning("%s: stimulus/templates/%s holds no frames; looking elsewhere", label, stimulus)
        return None, None
    frames = to_gray_uint8(np.asarray(data[:]), label=f"{label} (stimulus/templates/{stimulus})")
    rate = getattr(ts, "rate", None)
    return frames, (float(rate) if rate else None)


def load_movie_file(path: str | Path) -> np.ndarray:
    """Read a movie the user names -> (F, H, W) uint8 (formats in the module docstring)."""
    p = Path(path)
    if not p.exists():
        raise NeurratorError(p, "movie file not found")
    suffix = p.suffix.lower()
    try:
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.suffix.lower() in (".png", ".jpg", ".jpeg", ".tif", ".tiff"))
            if not files:
                raise NeurratorError(p, "movie folder holds no .png/.jpg/.tif images")
            from PIL import Image

            arr = np.stack([np.asarray(Image.open(f)) for f in files])
        elif suffix == ".npy":
            arr = np.load(p, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                key = "frames" if "frames" in z.files else (z.files[0] if len(z.files) == 1 else None)
                if key is None:
                    raise NeurratorError(p, f"npz holds {z.files}; name the frames array 'frames'")
                arr = z[key]
        elif suffix in (".h5", ".hdf5"):
            import h5py

            with h5py.File(p, "r") as f:
                if "data" not in f:
                    raise NeurratorError(p, "HDF5 movie needs a dataset named 'data'")
                arr = f["data"][:]
        elif suffix in (".tif", ".tiff"):
            from PIL import Image, ImageSequence

            with Image.open(p) as im:
                arr = np.stack([np.asarray(page) for page in ImageSequence.Iterator(im)])
        elif suffix in (".mp4", ".avi", ".mov", ".mkv", ".webm", ".gif"):
            raise NeurratorError(
                p, "video files need a video reader neurrator does not ship; convert to .npy (F, H, W) uint8 first"
            )
        else:
            raise NeurratorError(p, f"unsupported movie format '{suffix}' (use .npy, .npz, .h5, .tif or a PNG folder)")
    except NeurratorError:
        raise
    except (OSError, ValueError) as err:
        raise NeurratorError(p, f"cannot read movie: {err}") from err
    return to_gray_uint8(arr, label=str(p))


def fetch_known_movie(
    name: str,
    *,
    cache_dir: str | Path | None = None,
    allow_unverified: bool = False,
    progress: bool = False,
) -> np.ndarray:
    """Download a registered movie once into ``cache_dir`` (pooch), verify its sha256, load it.

    Raises NeurratorError when the name is not registered, the entry has no address, the checksum
    does not match, or the checksum is unknown (unless ``allow_unverified``: then it warns with the
    computed hash).
    """
    import pooch

    reg = _registry()
    if name not in reg:
        raise NeurratorError(name, f"not a registered movie; known: {', '.join(sorted(reg))}; pass --movie FRAMES.npy")
    entry = reg[name]
    if entry.url is None:
        raise NeurratorError(
            name,
            "no verified download address is registered for this movie "
            f"({entry.note}); pass --movie FRAMES.npy or register it via $NEURRATOR_MOVIE_REGISTRY",
        )
    cache = Path(cache_dir) if cache_dir is not None else Path(pooch.os_cache("neurrator")) / "movies"
    fname = f"{name}.{entry.fmt}"
    target = cache / fname
    try:
        path = pooch.retrieve(
            url=entry.url, known_hash=None if entry.sha256 is None else f"sha256:{entry.sha256}",
            fname=fname, path=cache, progressbar=progress,
        )
    except ValueError as err:  # pooch: hash mismatch (the bad download is removed by pooch)
        raise NeurratorError(entry.url, f"checksum mismatch for {name}: {err}".splitlines()[0]) from err
    except Exception as err:  # noqa: BLE001 - network errors of every kind become one clear line
        raise NeurratorError(entry.url, f"cannot download movie {name}: {type(err).__name__}: {err}") from err
    if entry.sha256 is None:
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        msg = f"no checksum is registered for {name}; the downloaded file has sha256 {digest}"
        if not allow_unverified:
            target.unlink(missing_ok=True)
            raise NeurratorError(entry.url, msg + "; verify it and register it (or pass allow_unverified)")
        log.warning(msg)
        import warnings

        warnings.warn(msg, stacklevel=2)
    if entry.fmt == "h5":
        import h5py

        with h5py.File(path, "r") as f:
            arr = f["data"][:]
    else:
        arr = np.load(path, allow_pickle=False)
    frames = to_gray_uint8(arr, label=str(path))
    if entry.n_frames and frames.shape[0] != entry.n_frames:
        raise NeurratorError(path, f"registered movie {name} should have {entry.n_frames} frames, got {frames.shape[0]}")
    return frames


def resolve_frames(
    nwbfile,
    *,
    stimulus: str,
    movie: str | Path | np.ndarray | None,
    label: str,
    fetch: bool = True,
    cache_dir: str | Path | None = None,
) -> tuple[np.ndarray | None, str, float | None]:
    """Frames for ``stimulus``: template -> ``movie`` -> registry. Returns (frames, source, rate)."""
    frames, rate = frames_from_template(nwbfile, stimulus, label=label)
    if frames is not None:
        return frames, f"template:{stimulus}", rate
    if movie is not None:
        if isinstance(movie, np.ndarray):
            return to_gray_uint8(movie, label="movie array"), "array", None
        return load_movie_file(movie), str(movie), None
    reg = _registry() if fetch else {}
    if stimulus in reg:
        if reg[stimulus].url is None:
            msg = (f"{label}: no frames for {stimulus} in the file and no verified download address registered; "
                   "pass --movie FRAMES.npy to train or evaluate")
            log.warning(msg)
            return None, "", None
        return fetch_known_movie(stimulus, cache_dir=cache_dir), f"registry:{stimulus}", None
    return None, "", None


def require_frames(session) -> np.ndarray:
    """The session's frames, or a NeurratorError saying how to supply them (never guessed)."""
    if session.frames is not None:
        return session.frames
    hint = ""
    if session.stimulus in _registry():
        hint = f" (the registry entry for {session.stimulus} has no verified download address)"
    raise NeurratorError(
        session.path_label,
        f"no movie frames for stimulus '{session.stimulus}': the file has no stimulus template{hint}; "
        "pass the frames with --movie (.npy/.npz/.h5/.tif or a folder of PNGs)",
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
