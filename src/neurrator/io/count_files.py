"""A count array file (.npy) + an image set (.zip or folder) -> a flashed-image NWB session on disk (`convert_counts`).

The reader behind ``neurrator convert``. Inputs are untrusted: the ``.npy`` header is read first (no
pickle, declared size checked against `neurrator.io.limits.max_array_bytes`), the zip members' declared
sizes and every image's header are checked before anything is decoded, only regular files are read. The
output is written to a temporary name beside ``out`` and renamed when complete; an existing ``out`` and
the inputs are never touched. What is data and what is made up: `neurrator.io.counts`.

Counts layout: ``(units, images, repeats)`` (or ``(units, images)`` for one showing each), NaN where a
repeat was not shown. Images: ``.png``/``.jpg``/``.tif`` files in a ``.zip`` or a folder, in name
order, image ``i`` for column ``i`` of the counts (grey images stay grey, others become RGB).
"""

from __future__ import annotations

import io
import json
import stat
import uuid
import zipfile
from datetime import datetime
from pathlib import Path

import numpy as np

from neurrator.errors import NeurratorError
from neurrator.io.checksums import sha256_file
from neurrator.io.counts import CountProtocol, check_counts, counts_nwbfile
from neurrator.io.limits import check_array_size, memory_guard
from neurrator.io.movie_files import IMAGE_SUFFIXES, _image_bytes, _npy_header, _open_image

__all__ = ["convert_counts", "read_count_array", "read_image_set"]


def _regular(path: Path) -> None:
    if not path.exists():
        raise NeurratorError(path, "not found")
    if not stat.S_ISREG(path.lstat().st_mode):
        raise NeurratorError(path, "is not a regular file (a link, FIFO or device?)")


def read_count_array(path: str | Path) -> np.ndarray:
    """A ``.npy`` of counts -> the array, its header checked first (no pickle; size under the limit)."""
    p = Path(path)
    _regular(p)
    if p.suffix.lower() != ".npy":
        raise NeurratorError(p, "counts must be a .npy file (units, images, repeats), NaN = not shown")
    with open(p, "rb") as fh:
        _npy_header(fh, label=str(p), what="the count array")
    try:
        with memory_guard(str(p), "the count array"):
            return np.load(p, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise NeurratorError(p, f"cannot read the count array ({err})") from None


def _as_array(im, *, gray: bool) -> np.ndarray:
    return np.asarray(im.convert("L" if gray else "RGB"))


def _decode(items: list[tuple[str, bytes | Path]], *, label: str) -> np.ndarray:
    """(name, bytes or path) images -> (I, H, W[, 3]) uint8, every header checked before any decoding."""
    total = 0
    gray = True
    for name, src in items:
        with _open_image(io.BytesIO(src) if isinstance(src, bytes) else src) as im:
            total += _image_bytes(im)
            gray &= im.mode in ("1", "L", "I;16", "I;16B", "I;16L", "I", "F")
        check_array_size((total,), 1, label=label, what=f"the images up to {name}")
    arrays = []
    for _name, src in items:
        with _open_image(io.BytesIO(src) if isinstance(src, bytes) else src) as im:
            arrays.append(_as_array(im, gray=gray))
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise NeurratorError(label, f"the images differ in size ({sorted(shapes)[:3]} ...); resize them to one size")
    return np.stack(arrays)


def read_image_set(path: str | Path) -> np.ndarray:
    """A ``.zip`` of images or a folder of images -> (I, H, W) or (I, H, W, 3) uint8, in name order.

    Raises
    ------
    NeurratorError
        Naming the zip or folder (or the image): no images, not a zip, a link or special file in the
        folder, images of different sizes, or more declared bytes than `neurrator.io.limits.max_array_bytes`.
    """
    p = Path(path)
    label = str(p)
    if not p.exists():
        raise NeurratorError(p, "image set not found")
    try:
        with memory_guard(label, "the images"):
            if p.is_dir():
                files = []
                for f in sorted(p.iterdir()):
                    if f.suffix.lower() in IMAGE_SUFFIXES:
                        _regular(f)
                        files.append((f.name, f))
                if not files:
                    raise NeurratorError(p, "the folder holds no .png/.jpg/.tif images")
                return _decode(files, label=label)
            _regular(p)
            if p.suffix.lower() != ".zip":
                raise NeurratorError(p, "images must be a .zip of images or a folder of images")
            with zipfile.ZipFile(p) as zf:
                members = sorted((i for i in zf.infolist() if not i.is_dir() and not i.filename.startswith("__MACOSX")
                                  and Path(i.filename).suffix.lower() in IMAGE_SUFFIXES), key=lambda i: i.filename)
                if not members:
                    raise NeurratorError(p, "the zip holds no .png/.jpg/.tif images")
                check_array_size((sum(i.file_size for i in members),), 1, label=label,
                                 what="the zip's images (uncompressed)")
                return _decode([(i.filename, zf.read(i)) for i in members], label=label)
    except NeurratorError:
        raise
    except Exception as err:  # noqa: BLE001 - zipfile and Pillow raise many kinds: one line naming the file
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise NeurratorError(p, f"cannot read the images: {type(err).__name__}: {first}") from None


def convert_counts(counts_path: str | Path, images_path: str | Path, out: str | Path, *,
                   protocol: CountProtocol | None = None, stimulus: str = "natural_scenes", region: str = "unknown",
                   subject: dict[str, str] | None = None, session_id: str | None = None,
                   session_start_time: datetime | None = None) -> Path:
    """Counts + images -> an NWB session at ``out`` that neurrator reads as flashed images.

    Parameters
    ----------
    counts_path
        ``.npy`` (units, images, repeats) spike counts per presentation window, NaN = not shown.
    images_path
        ``.zip`` or folder of the images, in the order of the counts' image axis.
    out
        The ``.nwb`` file to write; refused when it exists.
    protocol
        The made-up order and timing and the source's counting window (`CountProtocol`).
    stimulus, region, subject, session_id, session_start_time
        Name of the presentation table and image template; brain area of every unit; `pynwb.file.Subject`
        fields; session id (default: the counts file's stem); start time (default: made up, 1970-01-01).

    Examples
    --------
    ``neurrator convert responses_raw_210325.npy images_210325.zip --out v4.nwb --region V4`` (CLI), then
    ``neurrator narrate v4.nwb --stimulus natural_scenes --out results``.
    """
    protocol = protocol or CountProtocol()
    cp, ip, out = Path(counts_path), Path(images_path), Path(out)
    if out.suffix.lower() != ".nwb":
        raise NeurratorError(out, "the output must be an .nwb file")
    if out.exists() or out.is_symlink():
        raise NeurratorError(out, "already exists; remove it or choose another output")
    counts, shown = check_counts(read_count_array(cp), label=str(cp))
    images = read_image_set(ip)
    if images.shape[0] != counts.shape[1]:
        raise NeurratorError(ip, f"holds {images.shape[0]} images but {cp.name} has {counts.shape[1]} image columns")
    digests = {cp.name: sha256_file(cp)} | ({ip.name: sha256_file(ip)} if ip.is_file() else {})
    source = ", ".join(f"{name} sha256 {d}" for name, d in digests.items()) + ("" if ip.is_file() else f", {ip.name}/")
    ident = str(uuid.uuid5(uuid.NAMESPACE_URL, "neurrator-convert:" + json.dumps(
        [digests, vars(protocol), stimulus, region], sort_keys=True, default=str)))
    nwb = counts_nwbfile(counts, shown, images, protocol=protocol, stimulus=stimulus, source=source, region=region,
                         subject=subject, session_id=session_id or cp.stem, session_start_time=session_start_time,
                         identifier=ident, label=str(cp))
    from pynwb import NWBHDF5IO

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.{uuid.uuid4().hex[:8]}.part.nwb")
    try:
        with NWBHDF5IO(str(tmp), "w") as nwb_io:
            nwb_io.write(nwb)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
