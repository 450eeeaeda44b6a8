"""Structural checks of an untrusted HDF5 file before anything reads it: nothing outside the file, no memory bombs.

`check_hdf5_file` walks every object of an opened `h5py.File` (link by link, never following an
external link) and raises `NeurratorError(file, problem)` naming the file and the object when:

- a link is an **external link** (HDF5 would open another file, e.g. a system file);
- a dataset is **virtual** with a source outside the file, or keeps its raw data in **external
  storage** files (``H5Pset_external``);
- a link is of a type h5py cannot resolve (user-defined links);
- a group is reached again through a hard link below itself (a **link cycle**), or the nesting is
  deeper than `MAX_DEPTH`, or the file holds more than `MAX_OBJECTS` objects;
- a dataset's **declared size** is impossible or insane: larger than `max_dataset_bytes` (default
  `MAX_DATASET_BYTES`, ``$NEURRATOR_MAX_DATASET_BYTES``); contiguous data that would end beyond the end of
  the file; or a chunked/unallocated dataset declaring more than `MAX_EXPANSION` times the file size
  (and more than `EXPANSION_FLOOR_BYTES`): e.g. a compressed ``spike_times`` claiming 10^9 elements in
  a 100 kB file. No dataset's data is read; only object headers are.

`check_numeric_dataset` is the per-read check: dtype kind and element count before a full read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from neurrator.errors import NeurratorError

__all__ = [
    "EXPANSION_FLOOR_BYTES",
    "MAX_DATASET_BYTES",
    "MAX_DEPTH",
    "MAX_EXPANSION",
    "MAX_OBJECTS",
    "ScanReport",
    "check_hdf5_file",
    "check_numeric_dataset",
    "declared_nbytes",
    "max_dataset_bytes",
]

#: Deepest group nesting accepted (NWB files nest about 6 levels).
MAX_DEPTH = 64
#: Most objects (groups + datasets) accepted in one file.
MAX_OBJECTS = 2_000_000
#: Largest declared dataset accepted, in bytes (override: ``$NEURRATOR_MAX_DATASET_BYTES``).
MAX_DATASET_BYTES = 64 * 2**30
#: A chunked or unallocated dataset may declare at most this many times the file's size (gzip's best
#: ratio is about 1030:1) ...
MAX_EXPANSION = 1024
#: ... once it declares more than this (small datasets are never refused for their ratio).
EXPANSION_FLOOR_BYTES = 256 * 2**20


@dataclass(frozen=True)
class ScanReport:
    """What `check_hdf5_file` visited: groups, datasets, soft links, largest declared dataset (bytes)."""

    groups: int
    datasets: int
    soft_links: int
    largest_declared_bytes: int


def max_dataset_bytes() -> int:
    """`MAX_DATASET_BYTES`, or ``$NEURRATOR_MAX_DATASET_BYTES`` when set to a positive integer."""
    env = os.environ.get("NEURRATOR_MAX_DATASET_BYTES", "").strip()
    if env:
        try:
            value = int(float(env))
        except ValueError:
            value = 0
        if value > 0:
            return value
    return MAX_DATASET_BYTES


def declared_nbytes(shape: tuple[int, ...] | None, itemsize: int) -> int:
    """Bytes a full read of a dataset of ``shape`` would allocate (Python ints: no overflow)."""
    if shape is None:
        return 0
    n = 1
    for s in shape:
        n *= int(s)
    return n * int(itemsize)


def _gib(n: int) -> str:
    return f"{n / 2**30:.3g} GiB" if n >= 2**30 else f"{n / 2**20:.3g} MiB"


def _check_dataset(ds, name: str, *, label: str, file_size: int | None, limit: int) -> int:
    import h5py

    dcpl = ds.id.get_create_plist()
    layout = dcpl.get_layout()
    if layout == h5py.h5d.VIRTUAL:
        for src in ds.virtual_sources():
            if src.file_name != ".":
                raise NeurratorError(label, f"dataset {name} is a virtual dataset reading from another file "
                                     f"({src.file_name!r}); neurrator never reads outside the input file")
    if dcpl.get_external_count() > 0:
        ext = dcpl.get_external(0)[0]
        ext = ext.decode(errors="replace") if isinstance(ext, bytes) else str(ext)
        raise NeurratorError(label, f"dataset {name} keeps its data in an external file ({ext!r}); neurrator "
                             "never reads outside the input file")
    nbytes = declared_nbytes(ds.shape, ds.id.get_type().get_size())
    if nbytes > limit:
        raise NeurratorError(label, f"dataset {name} declares {_gib(nbytes)} (shape {ds.shape}), more than the "
                             f"{_gib(limit)} limit (NEURRATOR_MAX_DATASET_BYTES); refusing to read it")
    if file_size is None or nbytes == 0:
        return nbytes
    if layout == h5py.h5d.CONTIGUOUS:
        offset = ds.id.get_offset()
        if offset is not None and offset + nbytes > file_size:
            raise NeurratorError(label, f"dataset {name} declares {nbytes} bytes at offset {offset}, beyond the "
                                 f"end of the {file_size}-byte file (truncated or corrupt file)")
    if (layout != h5py.h5d.COMPACT and nbytes > EXPANSION_FLOOR_BYTES and nbytes > MAX_EXPANSION * file_size
            and not (layout == h5py.h5d.CONTIGUOUS and ds.id.get_offset() is not None)):
        raise NeurratorError(label, f"dataset {name} declares {_gib(nbytes)} (shape {ds.shape}) in a "
                             f"{_gib(file_size)} file: more than {MAX_EXPANSION}x the file could hold "
                             "(a memory bomb or a corrupt file); refusing to read it")
    return nbytes


def check_hdf5_file(h5file, *, label: str, file_size: int | None = None,
                    max_bytes: int | None = None) -> ScanReport:
    """Walk every link of ``h5file`` and refuse anything that reads outside it or declares insane sizes.

    Parameters
    ----------
    h5file
        An opened, readable `h5py.File`.
    label
        The file's name in error messages.
    file_size
        Size of the file in bytes (enables the checks against the file size); None skips them.
    max_bytes
        Largest declared dataset accepted (default `max_dataset_bytes`).

    Returns
    -------
    ScanReport

    Raises
    ------
    NeurratorError
        Naming ``label`` and the offending object (see the module docstring for the list).
    """
    import h5py

    limit = max_dataset_bytes() if max_bytes is None else int(max_bytes)
    root = h5file["/"]
    seen: set[tuple] = {_key(root)}
    stack = [("/", root, 0, frozenset({_key(root)}))]
    groups = datasets = soft = 0
    largest = 0
    while stack:
        path, group, depth, ancestors = stack.pop()
        groups += 1
        if depth > MAX_DEPTH:
            raise NeurratorError(label, f"group {path} is nested {depth} levels deep (more than {MAX_DEPTH}); "
                                 "refusing a file this deep")
        try:
            names = list(group)
        except Exception as err:  # noqa: BLE001 - a broken group index is a corrupt file
            raise NeurratorError(label, f"cannot list group {path} ({type(err).__name__}: {err})") from None
        for name in names:
            child = f"{path.rstrip('/')}/{name}"
            try:
                link = group.get(name, getlink=True)
            except Exception as err:  # noqa: BLE001
                raise NeurratorError(label, f"cannot read link {child} ({type(err).__name__}: {err})") from None
            if isinstance(link, h5py.ExternalLink):
                raise NeurratorError(label, f"{child} is an external link to {link.filename!r}:{link.path}; "
                                     "neurrator never reads outside the input file")
            if isinstance(link, h5py.SoftLink):
                soft += 1  # its target is checked through its hard link; here only: no cycle, not outside
                target = _resolve_soft(h5file, link.path if link.path.startswith("/") else
                                       f"{path.rstrip('/')}/{link.path}", label=label, where=child)
                if target is not None and isinstance(target, h5py.Group) and _key(target) in ancestors:
                    raise NeurratorError(label, f"{child} is a soft link to {link.path}, one of its parent groups "
                                         "(a link cycle)")
                continue
            if not isinstance(link, h5py.HardLink):
                raise NeurratorError(label, f"{child} is a link of an unsupported type ({type(link).__name__})")
            try:
                obj = group[name]
            except Exception as err:  # noqa: BLE001
                raise NeurratorError(label, f"cannot open {child} ({type(err).__name__}: {err})") from None
            key = _key(obj)
            if isinstance(obj, h5py.Group):
                if key in ancestors:
                    raise NeurratorError(label, f"{child} links back to one of its parent groups (a link cycle)")
                if key in seen:
                    continue
                seen.add(key)
                if len(seen) > MAX_OBJECTS:
                    raise NeurratorError(label, f"more than {MAX_OBJECTS} objects; refusing a file this large")
                stack.append((child, obj, depth + 1, ancestors | {key}))
            elif isinstance(obj, h5py.Dataset):
                if key in seen:
                    continue
                seen.add(key)
                datasets += 1
                if len(seen) > MAX_OBJECTS:
                    raise NeurratorError(label, f"more than {MAX_OBJECTS} objects; refusing a file this large")
                try:
                    nbytes = _check_dataset(obj, child, label=label, file_size=file_size, limit=limit)
                except NeurratorError:
                    raise
                except Exception as err:  # noqa: BLE001 - unreadable headers are a corrupt file
                    raise NeurratorError(label, f"cannot inspect dataset {child} ({type(err).__name__}: "
                                         f"{err})") from None
                largest = max(largest, nbytes)
    return ScanReport(groups, datasets, soft, largest)


def _resolve_soft(h5file, target: str, *, label: str, where: str, hops: int = 0):
    """The object a soft link's path names, walking it link by link (never through an external link)."""
    import h5py

    if hops > 32:
        raise NeurratorError(label, f"{where}: soft links point at soft links more than 32 times (a link cycle)")
    cur = h5file["/"]
    walked = ""
    for comp in [c for c in target.split("/") if c and c != "."]:
        if not isinstance(cur, h5py.Group):
            return None
        link = cur.get(comp, getlink=True)
        walked = f"{walked}/{comp}"
        if link is None:
            return None  # dangling: pynwb reports it if it matters
        if isinstance(link, h5py.ExternalLink):
            raise NeurratorError(label, f"{where} is a soft link through the external link {walked} to "
                                 f"{link.filename!r}; neurrator never reads outside the input file")
        if isinstance(link, h5py.SoftLink):
            nxt = link.path if link.path.startswith("/") else f"{walked.rsplit('/', 1)[0]}/{link.path}"
            cur = _resolve_soft(h5file, nxt, label=label, where=where, hops=hops + 1)
            if cur is None:
                return None
        elif isinstance(link, h5py.HardLink):
            cur = cur[comp]
        else:
            return None
    return cur


def _key(obj) -> tuple:
    import h5py

    info = h5py.h5o.get_info(obj.id)
    return (info.fileno, info.addr)


def check_numeric_dataset(data, *, label: str, what: str, kinds: str = "fiu",
                          max_elements: int | None = None) -> None:
    """Refuse a dataset (h5py, numpy or list) whose dtype is not numeric, or with too many elements.

    Parameters
    ----------
    data
        What will be read (an `h5py.Dataset`, a numpy array, or a sequence).
    label
        The file's name in error messages.
    what
        The object's name in error messages (e.g. "units/spike_times").
    kinds
        Accepted numpy dtype kinds ("f" float, "i"/"u" integers, "b" bool).
    max_elements
        Largest element count accepted (None: no limit).
    """
    dtype = getattr(data, "dtype", None)
    if dtype is None:
        dtype = np.asarray(data).dtype
    dtype = np.dtype(dtype)
    if dtype.kind not in kinds:
        names = {"f": "float", "i": "integer", "u": "unsigned integer", "b": "boolean"}
        want = " or ".join(names.get(k, k) for k in kinds)
        raise NeurratorError(label, f"{what} holds {_dtype_name(dtype)} values, not {want} numbers")
    if max_elements is not None:
        n = declared_nbytes(getattr(data, "shape", np.shape(data)), 1)
        if n > max_elements:
            raise NeurratorError(label, f"{what} has {n} elements, more than the {max_elements} neurrator accepts")


def _dtype_name(dtype: np.dtype) -> str:
    import h5py

    if h5py.check_string_dtype(dtype) is not None or dtype.kind in "SU":
        return "string"
    if dtype.kind == "O":
        return "object (variable-length)"
    if dtype.kind == "V":
        return "compound/opaque"
    return str(dtype)
