"""A user's movie file (``--movie``) -> (F, H, W) uint8 frames, its declared size checked before anything is decoded.

Formats (`load_movie_file`): ``.npy``; ``.npz`` (key ``frames``, else the only array); ``.h5``/``.hdf5``
(dataset ``data``, as AllenSDK's older templates); multi-page ``.tif``/``.tiff`` (via Pillow); a folder of
``.png``/``.jpg``/``.tif`` images (sorted by name, via Pillow); video files ``.mp4``/``.avi``/``.mov``/``.mkv``/
``.webm`` (via PyAV, the optional extra ``neurrator[video]``; `neurrator.io.video_files`), whose declared
frame rate `read_movie_file` returns so that it can be checked against the presentations.

A movie file is untrusted: before any frame is decoded, the size it declares (the ``.npy`` header, the
``.npz`` member's header, the HDF5 dataset's shape and dtype, every TIFF page's and image's header) is
checked against `neurrator.io.limits.max_array_bytes`, and only regular files are read (in a folder: no
symbolic links, FIFOs or devices). Every error names the movie file, never the session.
"""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path

import numpy as np

from neurrator.errors import NeurratorError
from neurrator.io.h5safety import check_hdf5_file
from neurrator.io.limits import check_array_size, memory_guard
from neurrator.io.video_files import VIDEO_SUFFIXES, read_video

__all__ = ["IMAGE_SUFFIXES", "load_movie_file", "read_movie_file", "to_gray_uint8", "to_uint8"]

#: Images read from a movie folder.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
#: Bytes per pixel of Pillow's modes as numpy arrays (others: 4).
_MODE_BYTES = {"1": 1, "L": 1, "P": 1, "LA": 2, "PA": 2, "La": 2, "RGB": 3, "YCbCr": 3, "LAB": 3, "HSV": 3,
               "RGBA": 4, "RGBa": 4, "RGBX": 4, "CMYK": 4, "I": 4, "F": 4, "I;16": 2, "I;16B": 2, "I;16L": 2,
               "I;16N": 2}


def to_gray_uint8(frames: np.ndarray, *, label: str) -> np.ndarray:
    """(F, H, W) or (F, H, W, 3|4) frames of any numeric type -> (F, H, W) uint8.

    Colour is converted with ITU-R 601 luma weights; floats in [0, 1] are scaled by 255, other floats
    and integers wider than 8 bits must already lie in [0, 255].
    """
    return to_uint8(frames, label=label, colour=False)


def to_uint8(frames: np.ndarray, *, label: str, colour: bool = True) -> np.ndarray:
    """(F, H, W) or (F, H, W, 3|4) frames of any numeric type -> (F, H, W) or, with ``colour``, (F, H, W, 3)
    uint8 for colour frames (alpha dropped; every backbone reads colour, grey frames are repeated over RGB).

    Examples
    --------
    >>> to_uint8(np.ones((1, 2, 2, 4)), label="x").shape, to_uint8(np.ones((1, 2, 2, 3)), label="x", colour=False).shape
    ((1, 2, 2, 3), (1, 2, 2))
    """
    a = np.asarray(frames)
    with memory_guard(label, "the movie frames"):
        if a.ndim == 4 and a.shape[-1] in (3, 4):
            a = a[..., :3] if colour else a[..., :3].astype(np.float32) @ np.asarray([0.299, 0.587, 0.114], np.float32)
        if a.ndim != 3 and not (colour and a.ndim == 4 and a.shape[-1] == 3):
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


def _npy_header(fh, *, label: str, what: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from an open ``.npy`` stream's header (nothing else is read)."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, _, dtype = fmt.read_array_header_2_0(fh)
        else:
            raise NeurratorError(label, f"{what} is .npy format version {version}; neurrator reads 1.0 and 2.0")
    except NeurratorError:
        raise
    except (ValueError, OSError, EOFError) as err:
        raise NeurratorError(label, f"cannot read movie: {what} has no valid .npy header ({err})") from None
    if dtype.hasobject:
        raise NeurratorError(label, f"{what} holds Python objects (a pickle); refusing it")
    check_array_size(shape, dtype.itemsize, label=label, what=what)
    return tuple(shape), dtype


def _npz_key(p: Path) -> str:
    """The member to read from an ``.npz`` file, its header checked (and its declared size in the zip)."""
    label = str(p)
    try:
        with zipfile.ZipFile(p) as zf:
            members = {i.filename[: -len(".npy")]: i for i in zf.infolist() if i.filename.endswith(".npy")}
            key = "frames" if "frames" in members else (next(iter(members)) if len(members) == 1 else None)
            if key is None:
                raise NeurratorError(p, f"npz holds {sorted(members)}; name the frames array 'frames'")
            info = members[key]
            check_array_size((info.file_size,), 1, label=label, what=f"member {info.filename} (uncompressed)")
            with zf.open(info) as fh:
                _npy_header(fh, label=label, what=f"member {info.filename}")
    except zipfile.BadZipFile as err:
        raise NeurratorError(p, f"not a valid .npz (zip) file ({err})") from None
    return key


def _open_image(path: Path):
    """Pillow's lazy open (the header only); its own decompression-bomb refusal becomes one line naming the file."""
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():  # the declared size is checked right after, against our own limit
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(path)
    except Image.DecompressionBombError as err:
        raise NeurratorError(path, f"declares an image far larger than any movie frame ({err}); refusing to read it "
                             "(NEURRATOR_MAX_ARRAY_BYTES bounds what is decoded)") from None


def _image_bytes(im) -> int:
    width, height = im.size
    return int(width) * int(height) * _MODE_BYTES.get(im.mode, 4)


def _tiff_pages(p: Path) -> list[np.ndarray]:
    label = str(p)
    with _open_image(p) as im:
        n = int(getattr(im, "n_frames", 1))
        total = 0
        for i in range(n):  # headers only: seeking a page decodes nothing
            im.seek(i)
            total += _image_bytes(im)
            check_array_size((total,), 1, label=label, what=f"the {i + 1} first TIFF pages")
        pages = []
        for i in range(n):
            im.seek(i)
            pages.append(np.asarray(im))
        return pages


def _folder_images(p: Path) -> list[np.ndarray]:
    files = []
    for f in sorted(p.iterdir()):
        if f.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        mode = f.lstat().st_mode
        if not stat.S_ISREG(mode):
            kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file"
            raise NeurratorError(f, f"is {kind}; a movie folder may hold regular image files only")
        files.append(f)
    if not files:
        raise NeurratorError(p, "movie folder holds no .png/.jpg/.tif images")
    total = 0
    for f in files:  # headers only
        with _open_image(f) as im:
            total += _image_bytes(im) * int(getattr(im, "n_frames", 1))
        check_array_size((total,), 1, label=str(f), what=f"the images of {p.name} up to this one")
    arrays = []
    for f in files:
        with _open_image(f) as im:
            arrays.append(np.asarray(im))
    return arrays


def _read(p: Path) -> tuple[np.ndarray, float | None]:
    """The file's frames as stored, and the frame rate it declares (videos only; None for the others)."""
    suffix = p.suffix.lower()
    label = str(p)
    if p.is_dir():
        return np.stack(_folder_images(p)), None
    if not stat.S_ISREG(os.stat(p).st_mode):
        raise NeurratorError(p, "is not a regular file (a FIFO or a device?); pass a movie file")
    if suffix == ".npy":
        with open(p, "rb") as fh:
            shape, dtype = _npy_header(fh, label=label, what="the array")
        return np.load(p, allow_pickle=False), None
    if suffix == ".npz":
        key = _npz_key(p)
        with np.load(p, allow_pickle=False) as z:
            return z[key], None
    if suffix in (".h5", ".hdf5"):
        import h5py

        with h5py.File(p, "r") as f:
            check_hdf5_file(f, label=label, file_size=p.stat().st_size)
            if "data" not in f or not isinstance(f["data"], h5py.Dataset):
                raise NeurratorError(p, "HDF5 movie needs a dataset named 'data'")
            ds = f["data"]
            check_array_size(ds.shape or (), ds.dtype.itemsize, label=label, what="dataset data")
            return ds[()], None
    if suffix in (".tif", ".tiff"):
        return np.stack(_tiff_pages(p)), None
    if suffix in VIDEO_SUFFIXES:
        video = read_video(p)
        return video.frames, video.fps
    raise NeurratorError(p, f"unsupported movie format '{suffix}' (use .npy, .npz, .h5, .tif, a PNG folder, or a "
                            f"video: {', '.join(VIDEO_SUFFIXES)})")


def load_movie_file(path: str | Path) -> np.ndarray:
    """A movie file or folder the user names -> (F, H, W) uint8 (formats and checks in the module docstring)."""
    return read_movie_file(path)[0]


def read_movie_file(path: str | Path) -> tuple[np.ndarray, float | None]:
    """A movie file or folder -> ((F, H, W) uint8 frames, frames per second the file declares or None).

    Only video files declare a rate; for them it is the stream's average rate (NaN when absent).

    Raises
    ------
    NeurratorError
        Naming the movie file (or the image of a folder): missing, unreadable, not a regular file, or
        declaring more than `neurrator.io.limits.max_array_bytes` before anything was decoded.
    """
    p = Path(path)
    if not p.exists():
        raise NeurratorError(p, "movie file not found")
    try:
        with memory_guard(str(p), "the movie"):
            arr, fps = _read(p)
    except (NeurratorError, ImportError):
        raise
    except Exception as err:  # noqa: BLE001 - Pillow, numpy and zipfile raise many kinds: one line naming the file
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise NeurratorError(p, f"cannot read movie: {type(err).__name__}: {first}") from None
    return to_gray_uint8(arr, label=str(p)), fps
