"""Run results -> a derived NWB file (ndx-neurrator containers), written atomically.

``add_<thing>_to_nwbfile`` functions fill an in-memory ``NWBFile``; only :func:`write_nwbfile_atomic`
touches the disk: it writes a temporary file next to the destination and renames it into place when
complete, so an interrupted run leaves nothing at the output path.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import re
import stat
import tempfile
import time
import uuid
from collections.abc import Collection, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from neurrator.errors import NeurratorError
from neurrator.io.checksums import sha256_file
from neurrator.io.folders import check_name_length
from neurrator.io.h5safety import check_hdf5_file

__all__ = ["PROVENANCE_FILE_NAME", "STALE_TEMPORARY_AGE_S", "add_units_to_nwbfile", "as_rows", "check_writable_dir", "derived_file_name", "encoder_config_text", "jsonable", "new_derived_nwbfile", "output_is_complete", "provenance_record", "read_provenance", "remove_dead_temporaries", "remove_stale_temporaries", "run_provenance", "software_versions", "source_checksum", "stimulus_epochs", "temporary_name", "write_nwbfile_atomic"]

log = logging.getLogger(__name__)

PROVENANCE_FILE_NAME = "neurrator-provenance.json"
_SUBJECT_FIELDS = ("subject_id", "species", "sex", "age", "genotype", "strain", "description")


def derived_file_name(subject_id: str, session_id: str, *, desc: str | None = "neurrator",
                      label: str = "derived file name") -> str:
    """DANDI-layout relative path: ``sub-<subject>/sub-<subject>_ses-<session>_desc-<desc>.nwb``.

    The entity values are sanitised as ``dandi organize`` sanitises them (`_entity`), so a derived file
    lands in the same ``sub-<subject>`` folder, under the same ``ses-<session>``, as its source file
    organised by dandi. ``desc=None`` gives the source's own name (``sub-<subject>_ses-<session>.nwb``).
    The ids come from an untrusted file: a name longer than `neurrator.io.folders.MAX_NAME_BYTES` raises
    `NeurratorError` naming ``label`` (the source), so a run refuses it before any work.

    ``dandi organize`` itself cannot keep ``_desc-neurrator`` (it names files from their metadata and uses
    ``_desc-`` only to break ties): derived files are already organised, so copy them into the dandiset
    instead of running ``dandi organize`` on them (README, "Sharing the results on DANDI").

    Examples
    --------
    >>> derived_file_name("408021", "758798717")
    'sub-408021/sub-408021_ses-758798717_desc-neurrator.nwb'
    >>> derived_file_name("sim0", "sim0", desc=None)
    'sub-sim0/sub-sim0_ses-sim0.nwb'
    """
    sub = _entity(subject_id) or "unknown"
    ses = _entity(session_id) or "unknown"
    tail = f"_desc-{_entity(desc)}" if desc else ""
    name = f"sub-{sub}/sub-{sub}_ses-{ses}{tail}.nwb"
    check_name_length(name, label=label)
    return name


#: What ``dandi organize`` replaces by ``-`` in an entity value (``dandi.organize._sanitize_value``): the
#: entity separator ``_``, path and shell characters, whitespace and ``.``; `_entity` also replaces every
#: character that is not printable (controls, bidirectional overrides), which DANDI's name pattern allows.
_NOT_IN_ENTITY = re.compile(r"[_*\\/<>:|\"'?%@;,.\s]")


def _entity(value: str) -> str:
    """A DANDI entity value, sanitised exactly as ``dandi organize`` does (each ``_ * \\ / < > : | " ' ? % @ ;
    , .`` or whitespace character becomes ``-``), so names agree with dandi-organised source files; a
    character that is not printable (a control character, a bidirectional override) becomes ``-`` too.

    Examples
    --------
    >>> _entity("ses 1.a_b")
    'ses-1-a-b'
    >>> _entity("m\x1b[2J\u202e1")
    'm-[2J-1'
    """
    text = "".join(c if c.isprintable() else "-" for c in str(value))
    return _NOT_IN_ENTITY.sub("-", text)


def check_writable_dir(folder: Path) -> None:
    """Create ``folder`` if needed and prove it writable (before any long computation)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".neurrator-probe-"):
            pass
    except OSError as err:
        raise NeurratorError(folder, f"output folder is not writable ({err.strerror or err})") from None


def software_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("neurrator", "ndx-neurrator", "pynwb", "hdmf", "numpy", "torch", "transformers", "open_clip_torch"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def provenance_record(*, source: str, source_checksum: str, config: dict[str, Any], extra: dict | None = None) -> str:
    """The JSON provenance stored in every derived file (NWB ``general/source_script``)."""
    record = {
        "software": "neurrator",
        "versions": software_versions(),
        "created": datetime.now(timezone.utc).isoformat(),
        "source": source,
        "source_checksum": source_checksum,
        "config": config,
    }
    if extra:
        record.update(extra)
    return json.dumps(record, sort_keys=True, indent=1, default=str)


def new_derived_nwbfile(session, *, provenance: str):
    """An empty ``NWBFile`` with the source's subject and session metadata and the provenance record."""
    from pynwb import NWBFile
    from pynwb.file import Subject

    subject = None
    fields = {k: str(v) for k, v in (session.subject or {}).items() if k in _SUBJECT_FIELDS and v not in (None, "")}
    if fields.get("subject_id"):
        subject = Subject(**fields)
    start = session.session_start_time
    if start is None:
        start = datetime(1970, 1, 1, tzinfo=timezone.utc)
    elif start.tzinfo is None:
        start = start.replace(tzinfo=timezone.utc)
    return NWBFile(
        session_description=f"neurrator narrations of {session.session_description or session.identifier}"[:2000],
        identifier=str(uuid.uuid4()),
        session_start_time=start,
        session_id=session.session_id,
        subject=subject,
        source_script=provenance,
        source_script_file_name=PROVENANCE_FILE_NAME,
        data_collection=f"derived from {session.source} ({session.identifier}) by neurrator",
        experiment_description=f"Spike-to-patch-token decoding and narration of the {session.stimulus} movie "
                               "(neurrator: frozen vision backbone targets, frozen multimodal narrator, SAE validation)",
        keywords=["neurrator", "neural decoding", "narration", "visual cortex", session.stimulus],
    )


def stimulus_epochs(presentations) -> np.ndarray:
    """(K, 2) [start, stop] of each repeat's block of presentations (the analysed observation intervals)."""
    starts, stops = [], []
    for r in np.unique(presentations.repeat):
        mask = presentations.repeat == r
        starts.append(float(presentations.start[mask].min()))
        stops.append(float(presentations.stop[mask].max()))
    order = np.argsort(starts)
    return np.column_stack([np.asarray(starts)[order], np.asarray(stops)[order]])


def add_units_to_nwbfile(nwbfile, units, *, epochs: np.ndarray, rows: np.ndarray | None = None,
                         resolution: float | None = None):
    """The units used, with the source's unit ids, region, cell type, probe position and their spike
    times inside ``epochs`` ((K, 2) start/stop), which are recorded as each unit's ``obs_intervals``.

    Only the analysed stimulus epochs are copied (the source file keeps the whole recording under the
    same unit ids), so the derived file stays small for multi-hour sessions. ``resolution`` is the
    source Units table's spike-time resolution in seconds (`neurrator.data.outline.SessionOutline`); it is
    copied when known (nwbinspector's best practice) and never guessed: None, NaN or <= 0 leave it unset.
    """
    from pynwb.misc import Units

    rows = np.arange(len(units.ids)) if rows is None else np.asarray(rows)
    epochs = np.asarray(epochs, dtype=np.float64).reshape(-1, 2)
    known = resolution is not None and np.isfinite(resolution) and resolution > 0
    table = Units(name="units", description="units used by neurrator; ids are the source file's unit ids; spike "
                  "times are those inside the analysed stimulus epochs (obs_intervals)",
                  **({"resolution": float(resolution)} if known else {}))
    table.add_column("region", "brain region of the unit ('unknown' when the source does not say)")
    table.add_column("cell_type", "cell type of the unit (cell-type column or opto-tagging; 'unknown' otherwise)")
    table.add_column("probe", "probe / electrode group of the unit ('' when unknown)")
    table.add_column("depth_um", "position along the probe in micrometres (NaN when unknown)")
    for i in rows:
        spikes = units.spike_times[units.offsets[i]:units.offsets[i + 1]]
        lo = np.searchsorted(spikes, epochs[:, 0], side="left")
        hi = np.searchsorted(spikes, epochs[:, 1], side="right")
        kept = np.concatenate([spikes[a:b] for a, b in zip(lo, hi)]) if len(epochs) else spikes[:0]
        table.add_unit(id=int(units.ids[i]), spike_times=kept, obs_intervals=epochs, region=str(units.region[i]),
                       cell_type=str(units.cell_type[i]), probe=str(units.probe[i]), depth_um=float(units.depth[i]))
    nwbfile.units = table
    return table


def write_nwbfile_atomic(nwbfile, path: Path, *, source_path: Path | None = None) -> Path:
    """Write ``nwbfile`` to ``path`` via a temporary file in the same folder, renamed when complete.

    The output path only ever holds nothing, its previous file, or the new complete file: a run killed
    at any point (even SIGKILL) leaves at most a hidden ``.<stem>.<host>.<pid>.*.tmp.nwb`` beside it,
    which the next write to the same path removes once its process is gone (and the next run removes
    from its output folder once untouched for `STALE_TEMPORARY_AGE_S`); a full disk or a file-size
    limit removes the temporary file and raises one line; two runs writing the same path at once each
    write their own temporary file and the last rename wins (both complete).
    """
    from pynwb import NWBHDF5IO

    path = Path(path)
    if source_path is not None and path.resolve() == Path(source_path).resolve():
        raise NeurratorError(path, "the output path is the source file; choose another output")
    check_writable_dir(path.parent)
    remove_dead_temporaries(path)
    prefix, suffix = temporary_name(path, ".nwb")
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=suffix)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        tmp.unlink()  # h5py creates it
        with NWBHDF5IO(str(tmp), mode="w") as io:
            io.write(nwbfile)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        # HDF5 reports failed system writes (ENOSPC, EFBIG, EIO) as RuntimeError "... errno = N ..."
        if isinstance(err, OSError) or (isinstance(err, Exception) and "errno" in text):
            why = err.strerror if isinstance(err, OSError) and err.strerror else text
            kept = "the previous file was kept" if path.exists() else "nothing was written"
            raise NeurratorError(path, f"could not write the output file ({why}); {kept}") from None
        raise
    return path


def remove_dead_temporaries(path: Path, *, killed: Collection[int] = ()) -> None:
    """Remove temporary files of earlier writes to ``path`` (the NWB file or its HTML report) whose
    process (on this host) no longer runs, or is one of the ``killed`` pids (this process killed them:
    dead even while not yet reaped)."""
    host = re.sub(r"[^A-Za-z0-9-]+", "-", platform.node()) or "host"
    import glob

    for tmp in path.parent.glob(f".{glob.escape(path.stem)}.{host}.*.tmp.*"):
        if not _TEMPORARY_NAME.fullmatch(tmp.name):
            continue
        pid_text = tmp.name[len(f".{path.stem}.{host}.") :].split(".", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        if int(pid_text) in killed:
            tmp.unlink(missing_ok=True)
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except OSError:  # alive under another user: leave it
            continue


#: A temporary file of this tool untouched for this long is stale: a live writer modifies its temporary
#: file continuously (HDF5 writes, then the rename follows at once), so only a killed run leaves one this old.
STALE_TEMPORARY_AGE_S = 30 * 60

#: The exact names of this tool's temporary files: `write_nwbfile_atomic`'s ``.<stem>.<host>.<pid>.<8>.tmp.nwb``,
#: the HTML report's ``.<stem>.<host>.<pid>.<8>.tmp.html`` and `check_writable_dir`'s ``.neurrator-probe-<8>``
#: (``<8>``: the 8 characters `tempfile.mkstemp` adds).
_TEMPORARY_NAME = re.compile(r"\..+\.[A-Za-z0-9-]+\.\d+\.[a-z0-9_]{8}\.tmp\.(?:nwb|html)|\.neurrator-probe-[a-z0-9_]{8}")


def temporary_name(path: Path, suffix: str) -> tuple[str, str]:
    """The ``prefix``, ``suffix`` for `tempfile.mkstemp` of a temporary file that will be renamed to ``path``."""
    host = re.sub(r"[^A-Za-z0-9-]+", "-", platform.node()) or "host"
    return f".{Path(path).stem}.{host}.{os.getpid()}.", f".tmp{suffix}"


def remove_stale_temporaries(folder: Path, *, max_age_s: float = STALE_TEMPORARY_AGE_S) -> list[Path]:
    """Remove this tool's temporary files left by killed runs in ``folder`` and its ``sub-*`` folders.

    Only files whose whole name matches this tool's temporary names and that were last modified more
    than ``max_age_s`` ago are removed, so a concurrent writer's live temporary file (on this or another
    host) is never touched. Each removal is logged; returns the removed paths.
    """
    folder = Path(folder)
    removed = []
    now = time.time()
    try:
        folders = [folder, *sorted(p for p in folder.glob("sub-*") if p.is_dir() and not p.is_symlink())]
    except OSError:
        return removed
    for where in folders:
        try:
            candidates = [p for p in where.iterdir() if _TEMPORARY_NAME.fullmatch(p.name)]
        except OSError:
            continue
        for tmp in candidates:
            try:
                info = tmp.lstat()
                age = now - info.st_mtime
                if not stat.S_ISREG(info.st_mode) or age <= max_age_s:
                    continue
                tmp.unlink()
            except OSError:
                continue
            removed.append(tmp)
            log.info("removed %s: a temporary file left by an interrupted run (untouched for %.0f min)", tmp, age / 60)
    return removed


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_provenance(nwbfile) -> dict[str, Any]:
    text = nwbfile.source_script
    if not text:
        return {}
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return {}


def output_is_complete(path: Path, *, source: str | None = None) -> bool:
    """True when ``path`` is a readable neurrator output (of ``source`` when given) with all its containers."""
    import h5py
    import ndx_neurrator  # noqa: F401
    from pynwb import NWBHDF5IO


    path = Path(path)
    if not path.is_file():
        return False
    try:
        with h5py.File(path, "r") as h5:  # never follow an external link planted at the output path
            check_hdf5_file(h5, label=str(path), file_size=path.stat().st_size)
        with NWBHDF5IO(str(path), mode="r") as io:
            nwbfile = io.read()
            module = nwbfile.processing.get("neurrator")
            if module is None:
                return False
            kinds = {type(c).__name__ for c in module.data_interfaces.values()}
            needed = {"EncoderCheckpoint", "UnitSubsetsTable", "PatchPredictions", "NarrationsCollection",
                      "SAEValidationTable", "SparseAutoencoder", "DecodingFidelityTable"}
            if not needed <= kinds:
                return False
            return source is None or read_provenance(nwbfile).get("source") == source
    except Exception:  # noqa: BLE001 - any failure to read means "not complete"
        return False


def as_rows(values: Sequence[Any]) -> np.ndarray:
    return np.asarray(list(values), dtype=np.int64)


def encoder_config_text(payload) -> str:
    """The EncoderCheckpoint ``config`` text: the checkpoint's config.json with its metadata.json inside."""
    config = json.loads(payload.config_json)
    config["metadata"] = json.loads(payload.metadata_json)
    return json.dumps(config, sort_keys=True)


def source_checksum(source: str) -> str:
    """``sha256:<hex>`` of a local source file; streamed sources name the archive's asset digest instead."""
    path = Path(source)
    if "://" not in source and path.is_file():
        return "sha256:" + sha256_file(path)
    return "unavailable: streamed source (see the archive's asset digest)"


def jsonable(value: Any) -> Any:
    """numpy values and arrays inside dicts/lists -> plain JSON types."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def run_provenance(session, *, config_json: str, extra: dict[str, Any]) -> str:
    """The provenance record of a run on ``session``: source, its checksum, configuration, the session's
    own reading choices (frames, presentation table, dropped units, opto-tagging) and ``extra``."""
    record = {"source_identifier": session.identifier, "frames_source": session.frames_source,
              "presentation_table": session.presentation_table,
              "dropped_units": {why: [int(u) for u in ids] for why, ids in session.dropped_units.items()},
              "opto_tagging": jsonable(session.opto)}
    record.update(extra)
    return provenance_record(source=session.source, source_checksum=source_checksum(session.source),
                             config=json.loads(config_json), extra=record)
