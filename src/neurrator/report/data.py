"""Read a derived neurrator NWB file into plain tables for the report (pynwb only, no torch).

Containers are looked up by neurodata type anywhere in the file, never by name or position, so the report
renders from whatever a file holds and says what is absent. Every table becomes a ``pandas.DataFrame`` while
the file is open; nothing returned refers to the file afterwards.

A derived file is untrusted input (it may come from anyone): before a table or thumbnail is read, its declared
size is checked against `neurrator.io.limits.max_array_bytes`, and every index column (rows of another table,
movie frames) is checked to point inside its target (`check_derived_tables`): a ``-1`` never wraps to the last row.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from neurrator.errors import NeurratorError, shorten
from neurrator.io.h5safety import check_hdf5_file
from neurrator.io.limits import check_array_size

__all__ = ["CELL_TYPE_COLUMNS", "READ_TYPES", "TABLES", "DerivedFile", "REGION_COLUMNS", "by_type",
           "check_derived_tables", "open_nwb", "read_derived"]

# Columns of the Units table that name a unit's region and cell type, first match wins.
REGION_COLUMNS = ("region", "brain_area", "location", "ecephys_structure_acronym", "structure")
CELL_TYPE_COLUMNS = ("cell_type", "putative_cell_type", "opto_cell_type", "opto_label")


#: The table types `read_derived` and `neurrator show` read whole (checked by `check_derived_tables`).
READ_TYPES = ("Units", "UnitSubsetsTable", "DecodingFidelityTable", "NarrationsTable", "SAEValidationTable",
              "UnitNeurrationTable", "ConceptTuningTable", "GroupComparisonTable", "GroupSeparationTable",
              "ScalingTable")
#: Columns never read by the report (the Units table's spike times and waveforms, and their indexes).
_UNREAD = ("spike_times", "obs_intervals", "waveform_mean", "waveform_sd", "waveforms", "electrodes")
#: Columns holding movie frame indices (never negative).
_FRAME_COLUMNS = ("frame", "top_frames")

#: The tables of a derived file, in the order `DerivedFile` lists them as a mapping.
TABLES = ("units", "subsets", "fidelity", "narrations", "sae_validation", "unit_neurration", "concept_tuning",
          "group_comparison", "group_separation", "scaling")


@dataclass(eq=False)
class DerivedFile(Mapping):
    """What the report needs from one derived file; tables are ``None`` when the file lacks them.

    Also a read-only mapping of table name -> `pandas.DataFrame` over the tables the file holds
    (`TABLES`; narrations keep their text): ``dict(read_derived(path))`` or ``data["fidelity"]``.
    """

    path: Path
    session: dict[str, Any]
    provenance: dict[str, Any]
    units: pd.DataFrame | None
    encoder: dict[str, Any] | None
    subsets: pd.DataFrame | None
    fidelity: pd.DataFrame | None
    narrations: pd.DataFrame | None
    sae: dict[str, Any] | None
    sae_validation: pd.DataFrame | None
    unit_neurration: pd.DataFrame | None
    concept_tuning: pd.DataFrame | None
    group_comparison: pd.DataFrame | None
    group_separation: pd.DataFrame | None
    scaling: pd.DataFrame | None
    thumbnails: dict[int, np.ndarray] = field(default_factory=dict)
    types_found: list[str] = field(default_factory=list)
    concept_cards: pd.DataFrame | None = None  # unnamed SAE concepts: latent, top_frames, top_units, top_unit_r
    skipped: dict[str, str] = field(default_factory=dict)  # analysis -> why the run skipped it

    def __getitem__(self, name: str) -> pd.DataFrame:
        if name not in TABLES or getattr(self, name) is None:
            raise KeyError(f"{name!r}: not a table of {self.path.name} (it has: {', '.join(self) or 'none'})")
        return getattr(self, name)

    def __iter__(self) -> Iterator[str]:
        return (name for name in TABLES if getattr(self, name) is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def open_nwb(path: Path):
    """``(io, nwbfile)`` for a readable NWB file; user errors as one-line ``NeurratorError``."""
    import h5py
    from pynwb import NWBHDF5IO

    path = Path(path)
    if not path.is_file():
        raise NeurratorError(path, "no such file")
    if not h5py.is_hdf5(str(path)):
        raise NeurratorError(path, "not an HDF5/NWB file")

    with h5py.File(str(path), "r") as h:  # shared files are untrusted: no links out, no size bombs
        check_hdf5_file(h, label=str(path), file_size=path.stat().st_size)
    try:
        io = NWBHDF5IO(str(path), mode="r", load_namespaces=True)
        return io, io.read()
    except Exception as err:  # noqa: BLE001 - unreadable input is the user's problem, said in one line
        raise NeurratorError(path, f"not a readable NWB file ({type(err).__name__}: {err})") from None


def _declared(data) -> tuple[tuple[int, ...], int] | None:
    """(shape, itemsize) a dataset or array declares, without reading it; None for lists and scalars."""
    shape, dtype = getattr(data, "shape", None), getattr(data, "dtype", None)
    if shape is None or dtype is None:
        return None
    return tuple(int(s) for s in shape), int(np.dtype(dtype).itemsize)


def _check_table(table, *, label: str) -> None:
    """A table's declared size (its read columns together) and its index columns, before it is read whole."""
    from hdmf.common import DynamicTableRegion

    columns = [c for c in table.columns if not c.name.startswith(_UNREAD)]
    total = 0
    for col in [table.id, *columns]:
        declared = _declared(col.data)
        if declared is not None:
            total += check_array_size(*declared, label=label, what=f"table {table.name} column {col.name}")
    check_array_size((total,), 1, label=label, what=f"table {table.name} (all its columns)")
    for col in columns:
        if isinstance(col, DynamicTableRegion) and col.table is not None:
            _check_rows(np.asarray(col.data[:]), 0, len(col.table), table=table.name, column=col.name,
                        target=f"the {len(col.table)} rows of {col.table.name}", label=label)
        elif col.name in _FRAME_COLUMNS:
            _check_rows(np.asarray(col.data[:]), 0, None, table=table.name, column=col.name,
                        target="movie frames (0 and up)", label=label)


def _check_rows(values: np.ndarray, lo: int, hi: int | None, *, table: str, column: str, target: str,
                label: str) -> None:
    if values.size == 0:
        return
    if values.dtype.kind not in "iu":
        if values.dtype.kind != "f" or not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
            raise NeurratorError(label, f"table {table} column {column} holds non-integer indices "
                                 f"({values.dtype}); it must index {target}")
    bad = (values < lo) | (values >= hi) if hi is not None else values < lo
    if np.any(bad):
        first = values[bad].ravel()[0]
        raise NeurratorError(label, f"table {table} column {column} holds index {first:g}, outside {target} "
                             "(a corrupt or hostile file)")


def check_derived_tables(nwbfile, *, label: str) -> None:
    """Raise `NeurratorError` naming ``label`` when a table the report reads (`READ_TYPES`) declares more than
    `neurrator.io.limits.max_array_bytes`, or one of its index columns points outside its target: rows of
    another table (``unit_subset``, ``units``, ``unit``: DynamicTableRegions) or movie frames (``frame``,
    ``top_frames``: never negative)."""
    found = by_type(nwbfile)
    for kind in READ_TYPES:
        for table in found.get(kind, []):
            _check_table(table, label=label)


def by_type(nwbfile) -> dict[str, list]:
    """Every object in the file grouped by neurodata type name (file order within a type)."""
    found: dict[str, list] = {}
    for obj in nwbfile.objects.values():
        found.setdefault(getattr(obj, "neurodata_type", type(obj).__name__), []).append(obj)
    return found


def _frame(table) -> pd.DataFrame:
    """A DynamicTable as a DataFrame; region columns stay row numbers, ragged columns lists."""
    df = table.to_dataframe(index=True)
    for col in df.columns:
        if len(df) and isinstance(df[col].iloc[0], pd.DataFrame):  # a region resolved despite index=True
            df[col] = [int(v.index[0]) for v in df[col]]
    return df.reset_index(drop=False)


def _rows(values) -> list[int]:
    return [int(v) if np.ndim(v) == 0 else int(np.asarray(v).ravel()[0]) for v in values]


def _first_column(df: pd.DataFrame, names: tuple[str, ...]) -> str | None:
    return next((n for n in names if n in df.columns), None)


def _units(nwbfile) -> pd.DataFrame | None:
    if nwbfile.units is None:
        return None
    cols = [c for c in nwbfile.units.colnames if c not in ("spike_times", "obs_intervals", "waveform_mean",
                                                            "waveform_sd", "waveforms", "electrodes")]
    data = {c: list(nwbfile.units[c].data[:]) for c in cols if not c.endswith("_index")
            and len(nwbfile.units[c].data) == len(nwbfile.units)}
    df = pd.DataFrame(data, index=list(nwbfile.units.id.data[:]))
    region = _first_column(df, REGION_COLUMNS)
    cell = _first_column(df, CELL_TYPE_COLUMNS)
    df["_region"] = df[region].astype(str) if region else "unknown"
    df["_cell_type"] = df[cell].astype(str) if cell else "unknown"
    return df


def _module_table(nwbfile, name: str, *, label: str) -> pd.DataFrame | None:
    """The plain DynamicTable ``processing/neurrator/<name>`` (``concept_cards``, ``skipped_analyses``), checked
    like the typed tables, or None when the file has none."""
    module = (nwbfile.processing or {}).get("neurrator")
    table = module.data_interfaces.get(name) if module is not None else None
    if table is None or not hasattr(table, "columns"):
        return None
    _check_table(table, label=label)
    return _frame(table)


def _thumbnails(found: dict[str, list], *, label: str) -> dict[int, np.ndarray]:
    """Stimulus frames stored in the file: ``Images`` whose images are named ``frame_<index>`` (each image and
    all of them together within `neurrator.io.limits.max_array_bytes`, else `NeurratorError`), or an
    ``ImageSeries`` with in-file data indexed by frame (skipped when it declares more than that limit)."""
    from neurrator.io.limits import max_array_bytes

    thumbs: dict[int, np.ndarray] = {}
    total = 0
    for images in found.get("Images", []):
        for name, img in images.images.items():
            tail = name.rsplit("_", 1)[-1]
            if name.startswith("frame") and tail.isdigit():
                declared = _declared(img.data)
                if declared is not None:
                    total += check_array_size(*declared, label=label, what=f"thumbnail {images.name}/{name}")
                    check_array_size((total,), 1, label=label, what=f"the thumbnails up to {images.name}/{name}")
                thumbs[int(tail)] = np.asarray(img.data[:])
    if not thumbs:
        for series in found.get("ImageSeries", []) + found.get("OpticalSeries", []):
            data = series.data
            if getattr(series, "external_file", None) is not None or data is None or np.ndim(data) < 3:
                continue
            declared = _declared(data)
            if declared is not None and int(np.prod(declared[0], dtype=object)) * declared[1] <= max_array_bytes():
                thumbs = {i: np.asarray(data[i]) for i in range(data.shape[0])}
                break
    return thumbs


def _shortened(value: Any, limit: int) -> Any:
    """Strings (also inside lists, dicts and DataFrame cells) cut to ``limit`` characters, their length stated."""
    if isinstance(value, str):
        return shorten(value, limit)
    if isinstance(value, pd.DataFrame):
        df = value.copy()
        for col in df.columns:
            if df[col].dtype == object:
                df[col] = [_shortened(v, limit) for v in df[col]]
        return df
    if isinstance(value, dict):
        return {k: _shortened(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        return [_shortened(v, limit) for v in value]
    return value


def read_derived(path: Path, *, max_chars: int | None = None) -> DerivedFile:
    """Read the report's material from a derived neurrator file.

    Parameters
    ----------
    path
        A file written by ``neurrator narrate`` / ``demo`` (or any file with ndx-neurrator containers).
    max_chars
        When given, every string of the tables, session and SAE labels is cut to this many characters
        (`neurrator.errors.shorten`: the full length is stated), as the report and the plots show them.

    Returns
    -------
    DerivedFile
        Plain tables and dictionaries; ``None`` for every container type the file does not hold.
    """
    path = Path(path)
    io, nwbfile = open_nwb(path)
    try:
        found = by_type(nwbfile)
        if not any(t in found for t in ("UnitSubsetsTable", "DecodingFidelityTable", "NarrationsTable",
                                        "EncoderCheckpoint", "UnitNeurrationTable")):
            raise NeurratorError(path, "has no neurrator results (no ndx-neurrator containers)")
        check_derived_tables(nwbfile, label=str(path))
        subject = nwbfile.subject
        session = {
            "file": path.name, "session_id": nwbfile.session_id, "identifier": nwbfile.identifier,
            "description": nwbfile.session_description, "start": str(nwbfile.session_start_time),
            "subject_id": getattr(subject, "subject_id", None), "species": getattr(subject, "species", None),
            "genotype": getattr(subject, "genotype", None), "sex": getattr(subject, "sex", None),
            "age": getattr(subject, "age", None),
        }
        try:
            provenance = json.loads(nwbfile.source_script or "{}")
        except json.JSONDecodeError:
            provenance = {"raw": nwbfile.source_script}
        provenance = provenance if isinstance(provenance, dict) else {"raw": provenance}

        def one(kind: str):
            return found[kind][0] if found.get(kind) else None

        subsets = None
        if (t := one("UnitSubsetsTable")) is not None:
            subsets = _frame(t)
            subsets["n_units"] = [len(u) for u in subsets["units"]]
        labels = list(subsets["label"]) if subsets is not None else []
        kinds = list(subsets["kind"]) if subsets is not None else []

        def label(rows) -> tuple[list[str], list[str]]:
            rows = _rows(rows)
            return ([labels[r] if 0 <= r < len(labels) else str(r) for r in rows],
                    [kinds[r] if 0 <= r < len(kinds) else "?" for r in rows])

        fidelity = None
        if (t := one("DecodingFidelityTable")) is not None:
            fidelity = _frame(t)
            fidelity["label"], fidelity["kind"] = label(fidelity["unit_subset"])
            for col in ("ci_lo", "ci_hi", "p_value", "q_value"):
                if col not in fidelity:
                    fidelity[col] = np.nan

        narrations = None
        parts = []
        for t in found.get("NarrationsTable", []):
            df = _frame(t)
            df["table"] = t.name
            df["label"], df["kind"] = label(df["unit_subset"])
            parts.append(df)
        if parts:
            narrations = pd.concat(parts, ignore_index=True)

        encoder = None
        if (t := one("EncoderCheckpoint")) is not None:
            encoder = {k: getattr(t, k, None) for k in ("architecture", "backbone_id", "backbone_layer", "n_patches",
                                                        "dim", "preprocessing", "stimulus", "config",
                                                        "training_metrics", "validation_metrics", "software_versions")}
            encoder["n_units"] = len(t.units.data) if t.units is not None else None

        sae = None
        if (t := one("SparseAutoencoder")) is not None:
            sae = {"architecture": t.architecture, "config": t.config,
                   "labels": [str(x) for x in t.concept_labels[:]] if t.concept_labels is not None else [],
                   "sources": [str(x) for x in t.concept_label_sources[:]]
                   if getattr(t, "concept_label_sources", None) is not None else [],
                   "naming_split": [str(x) for x in t.naming_split[:]]
                   if getattr(t, "naming_split", None) is not None else []}

        def table(kind: str) -> pd.DataFrame | None:
            t = one(kind)
            return None if t is None else _frame(t)

        result = DerivedFile(
            path=path, session=session, provenance=provenance, units=_units(nwbfile), encoder=encoder,
            subsets=subsets, fidelity=fidelity, narrations=narrations, sae=sae,
            sae_validation=table("SAEValidationTable"), unit_neurration=table("UnitNeurrationTable"),
            concept_tuning=table("ConceptTuningTable"), group_comparison=table("GroupComparisonTable"),
            group_separation=table("GroupSeparationTable"), scaling=table("ScalingTable"),
            thumbnails=_thumbnails(found, label=str(path)), types_found=sorted(found),
            concept_cards=_module_table(nwbfile, "concept_cards", label=str(path)),
        )
        skipped = _module_table(nwbfile, "skipped_analyses", label=str(path))
        if skipped is not None and {"analysis", "reason"} <= set(skipped):
            result.skipped = {str(a): str(r) for a, r in zip(skipped["analysis"], skipped["reason"])}
        for df in (result.unit_neurration, result.concept_tuning):
            if df is not None and "unit" in df:
                df["unit"] = _rows(df["unit"])
        if max_chars is not None:
            for name in (*TABLES, "session", "encoder", "sae", "concept_cards", "skipped"):
                setattr(result, name, _shortened(getattr(result, name), max_chars))
        return result
    finally:
        io.close()
