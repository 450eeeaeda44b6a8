"""A dandiset -> one annotated NWB file per session, in parallel on Dask distributed.

A LocalCluster by default, or an existing scheduler (which is how it runs on SLURM or Kubernetes
through dask-jobqueue / dask-kubernetes). Resumable: a session whose output exists and validates is
skipped. One failing session does not stop the others; every failure is listed at the end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from neurrator.config import NarrateConfig
from neurrator.errors import NeurratorError, escape_controls, shorten
from neurrator.io.folders import path_inside
from neurrator.io.sources import list_assets
from neurrator.nwb.derived import check_writable_dir, output_is_complete, remove_dead_temporaries, remove_stale_temporaries
from neurrator.pipeline import narrate_session

log = logging.getLogger(__name__)

DERIVED_SUFFIX = "_desc-neurrator.nwb"

#: BIDS-like modality suffixes (the last ``_word`` of a DANDI file name) that hold no spike-sorted units.
_NON_UNIT_MODALITIES = frozenset({"ophys", "icephys", "image", "behavior", "ogen", "misc"})

#: Why an asset is not a session, as `classify_asset` returns it (short keys for grouping the report).
SKIP_REASONS = {
    "lfp": "per-probe LFP file (_probe-<id>; LFP only, the units are in the session file)",
    "derived": "a derived file of neurrator (_desc-neurrator)",
    "derived_other": "a derived file (_desc-<label>), not raw data",
    "modality": "its modality suffix names no extracellular units",
    "not_nwb": "not an NWB file",
    "match": "does not match --match",
}


def classify_asset(path: str) -> str | None:
    """Why an asset is not a session file (a key of `SKIP_REASONS`), or None for a session file.

    Follows the DANDI layout of the Allen Visual Coding dandiset (000021): the session file is
    ``sub-X/sub-X_ses-Y.nwb`` (or ``..._ecephys.nwb`` / ``..._behavior+ecephys.nwb``), each probe's
    LFP is ``sub-X/sub-X_ses-Y_probe-Z_ecephys.nwb``. Only the name is read: nothing is downloaded.

    Examples
    --------
    >>> classify_asset("sub-1/sub-1_ses-2.nwb") is None
    True
    >>> classify_asset("sub-1/sub-1_ses-2_probe-3_ecephys.nwb")
    'lfp'
    >>> classify_asset("sub-1/sub-1_ses-2_behavior+ecephys.nwb") is None
    True
    >>> classify_asset("sub-1/sub-1_ses-2_ophys.nwb")
    'modality'
    """
    name = PurePosixPath(path).name
    if not name.lower().endswith(".nwb"):
        return "not_nwb"
    stem = name[: -len(".nwb")]
    if name.endswith(DERIVED_SUFFIX):
        return "derived"
    entities = stem.split("_")
    if any(re.fullmatch(r"desc-.+", e) for e in entities):
        return "derived_other"
    if any(re.fullmatch(r"probe-.+", e) for e in entities):
        return "lfp"
    last = entities[-1] if len(entities) > 1 else ""
    if last and "-" not in last:  # a modality suffix such as ecephys, behavior+ecephys, ophys
        parts = set(last.lower().split("+"))
        if "ecephys" not in parts and parts & _NON_UNIT_MODALITIES:
            return "modality"
    return None


@dataclass(frozen=True)
class SkippedAsset:
    """An asset of the dandiset that is not processed, with the reason key (`SKIP_REASONS`)."""

    path: str
    reason: str


@dataclass(frozen=True)
class SessionOutcome:
    """What happened to one asset: ``done``, ``skipped`` (already complete), ``failed`` or ``cancelled`` (Ctrl-C)."""

    asset: str
    output: str
    status: str
    message: str = ""
    seconds: float = 0.0


@dataclass
class ProcessReport:
    """All outcomes of one `process_dandiset` run."""

    dandiset: str
    outcomes: list[SessionOutcome] = field(default_factory=list)
    ignored: list[SkippedAsset] = field(default_factory=list)
    #: Ctrl-C stopped the run: unfinished sessions are ``cancelled`` (a rerun resumes).
    interrupted: bool = False

    @property
    def failed(self) -> list[SessionOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    def summary(self) -> str:
        if self.interrupted:  # one line: what finished and what was cancelled
            return escape_controls(f"{self.dandiset}: interrupted: {self.count('done')} done, {self.count('skipped')} skipped "
                    f"(already complete), {self.count('failed')} failed, {self.count('cancelled')} cancelled of "
                    f"{len(self.outcomes)} sessions; rerun the same command to resume")
        lines = [f"{self.dandiset}: {len(self.outcomes)} sessions: {self.count('done')} done, "
                 f"{self.count('skipped')} skipped (already complete), {self.count('failed')} failed"]
        lines += [f"  FAILED {o.asset}: {o.message}" for o in self.failed]
        if self.ignored:
            counts = Counter(a.reason for a in self.ignored)
            lines.append(f"ignored {len(self.ignored)} assets that are not sessions:")
            for reason, n in counts.most_common():
                example = next(a.path for a in self.ignored if a.reason == reason)
                lines.append(f"  {n} {SKIP_REASONS.get(reason, reason)}, e.g. {example}")
        return "\n".join(escape_controls(shorten(line)) for line in lines)  # asset paths and messages are untrusted


def derived_path(asset_path: str, out: Path) -> Path:
    """Output path of an asset in the DANDI layout: ``sub-X/sub-X_ses-Y.nwb`` -> ``sub-X/sub-X_ses-Y_desc-neurrator.nwb``.

    The asset path comes from the archive, untrusted: it is normalised and must stay inside ``out``
    (`neurrator.io.folders.path_inside`: no ``..``, no absolute path, no symbolic link leading out, no control
    character, no over-long name); otherwise `NeurratorError` naming the asset.

    Examples
    --------
    >>> str(derived_path("sub-1/sub-1_ses-2.nwb", Path("out")))
    'out/sub-1/sub-1_ses-2_desc-neurrator.nwb'
    >>> derived_path("../../home/me/sub-1_ses-2.nwb", Path("out"))
    Traceback (most recent call last):
    ...
    neurrator.errors.NeurratorError: ../../home/me/sub-1_ses-2.nwb: the path ../../home/me/sub-1_ses-2_desc-neurrator.nwb leads out of the output folder out (a '..' component); refusing it
    """
    p = PurePosixPath(asset_path)
    stem = p.name[: -len(".nwb")] if p.name.endswith(".nwb") else p.name
    return path_inside(out, str(p.with_name(stem + DERIVED_SUFFIX)), label=asset_path)


def dandiset_prefix(dandiset: str) -> str:
    """``dandi://000021@draft``, ``000021@0.210913.1639`` or ``000021`` -> ``dandi://ID[@VERSION]``."""
    text = dandiset[len("dandi://"):] if dandiset.startswith("dandi://") else dandiset
    text = text.strip("/")
    if not text or "/" in text:
        raise NeurratorError(dandiset, "expected a dandiset id such as 000021 or dandi://000021[@VERSION]")
    return f"dandi://{text}"


def _run_one(source: str, output: str, config: NarrateConfig) -> SessionOutcome:
    """Worker task: narrate one session; never raises (the failure is the outcome)."""
    start = time.perf_counter()
    try:
        narrate_session(source, out=Path(output), config=config)
    except Exception as err:  # noqa: BLE001 - one failing session must not stop the others
        return SessionOutcome(source, output, "failed", " ".join(str(err).split()) or type(err).__name__,
                              time.perf_counter() - start)
    return SessionOutcome(source, output, "done", "", time.perf_counter() - start)


def process_dandiset(
    dandiset: str,
    *,
    out: Path,
    config: NarrateConfig,
    scheduler: str | None = None,
    workers: int = 2,
    match: str | None = None,
) -> ProcessReport:
    """Narrate every NWB session file of a dandiset whose path contains ``match``.

    Assets that are not session files (per-probe LFP files, derived files, other modalities: see
    `classify_asset`) are ignored without being opened and listed in ``ProcessReport.ignored``.

    Parameters
    ----------
    dandiset
        ``000021``, ``000021@VERSION`` or ``dandi://000021[@VERSION]``.
    out
        Output folder; each session's file goes to its DANDI-layout path inside it.
    config
        The per-session configuration (the same for all sessions).
    scheduler
        Address of a running Dask scheduler; ``None`` starts a LocalCluster of ``workers`` processes.
    """
    prefix = dandiset_prefix(dandiset)
    out = Path(out)
    check_writable_dir(out)
    remove_stale_temporaries(out)
    report = ProcessReport(prefix)
    listed = list_assets(prefix, timeout=config.timeout)
    assets = []
    for a in listed:
        reason = classify_asset(a.path)
        if reason is None and match is not None and match not in a.path:
            reason = "match"
        if reason is None:
            assets.append(a)
        else:
            report.ignored.append(SkippedAsset(a.path, reason))
            log.debug("%s: ignored: %s", a.path, SKIP_REASONS[reason])
    if not assets:
        why = "; ".join(f"{n} {SKIP_REASONS[r]}" for r, n in Counter(a.reason for a in report.ignored).items())
        raise NeurratorError(prefix, "no NWB session files" + (f" matching {match!r}" if match else "")
                             + (f" (ignored: {why})" if why else ""))

    todo: list[tuple[str, str]] = []
    claimed: dict[Path, str] = {}
    for asset in assets:
        source = f"{prefix}/{asset.path}"
        try:  # an asset whose output would leave `out` fails alone; the others still run
            target = derived_path(asset.path, out)
            if target in claimed:
                raise NeurratorError(asset.path, f"gives the same output file as {claimed[target]} ({target})")
        except (NeurratorError, ValueError) as err:
            report.outcomes.append(SessionOutcome(source, "", "failed", str(err)))
            log.info("%s: not processed: %s", source, err)
            continue
        claimed[target] = asset.path
        if output_is_complete(target, source=source):
            report.outcomes.append(SessionOutcome(source, str(target), "skipped"))
        else:
            todo.append((source, str(target)))
    log.info("%s: %d assets, %d already complete, %d to process", prefix, len(assets), len(assets) - len(todo), len(todo))
    if todo:
        outcomes, report.interrupted = _run_all(todo, config=config, scheduler=scheduler, workers=workers)
        report.outcomes.extend(outcomes)
    return report


def _run_all(todo: list[tuple[str, str]], *, config: NarrateConfig, scheduler: str | None,
             workers: int) -> tuple[list[SessionOutcome], bool]:
    """Run ``todo`` on Dask; returns the outcomes (in ``todo`` order) and whether Ctrl-C stopped the run.

    On SIGINT (KeyboardInterrupt) nothing new is scheduled, every session not finished is cancelled
    (outcome ``cancelled``), and the client and the LocalCluster are closed (its worker processes, which
    ignore SIGINT so that only this process reacts, are stopped by their nannies). Dask cannot stop a
    task already running on the workers of an external ``scheduler``: it is cancelled there, but a
    session in progress may still finish in the background (its output is written whole or not at all).
    Distributed's logging (scheduler, nannies, workers) follows the root logger's level.
    """
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError as err:  # pragma: no cover - dask is a hard dependency
        raise ImportError("neurrator process needs dask.distributed: pip install 'dask[distributed]'") from err
    from tqdm.auto import tqdm


    level = logging.getLogger().getEffectiveLevel()  # the CLI's level for libraries (ERROR with --quiet)
    logging.getLogger("distributed").setLevel(level)
    # Each worker session runs single-threaded with its own progress bars off: the bar here counts sessions.
    worker_config = dataclasses.replace(config, progress=False)
    cluster = client = None
    worker_pids: list[int] = []  # this run's own worker processes (LocalCluster only)
    pending: dict = {}  # future -> index in todo, until its outcome is collected
    done: dict[int, SessionOutcome] = {}
    interrupted = False
    try:
        if scheduler:
            client = Client(scheduler)
        else:
            with _sigint_ignored():  # the worker processes inherit SIG_IGN: Ctrl-C is handled here only
                cluster = LocalCluster(n_workers=max(1, workers), threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=level)
            client = Client(cluster)
            worker_pids = list(client.run(os.getpid).values())
        for i, (source, target) in enumerate(todo):
            pending[client.submit(_run_one, source, target, worker_config, pure=False, key=f"neurrator-{i}")] = i
        with tqdm(total=len(pending), desc="sessions", unit="session", disable=not config.progress) as bar:
            for future in as_completed(list(pending)):
                i = pending.pop(future)
                done[i] = outcome = _collect(future, *todo[i])
                log.info("%s: %s %s", outcome.asset, outcome.status, outcome.message)
                bar.update()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        with _sigint_ignored():  # a second Ctrl-C does not cut the clean-up short (it is bounded by timeouts)
            if interrupted and client is not None:
                _cancel_pending(client, pending, todo, done)
                _kill(worker_pids)  # a session in progress stops now instead of finishing during the clean-up
            if client is not None:
                client.close()
            if cluster is not None:
                cluster.close()
            if interrupted and worker_pids:  # the killed workers' temporary files (none at an output path)
                for i, (_, target) in enumerate(todo):
                    if i not in done:
                        remove_dead_temporaries(Path(target), killed=worker_pids)
    outcomes = []
    for i, (source, target) in enumerate(todo):
        o = done.get(i)
        # no outcome (cancelled, or finished while its result was on the way), or its worker killed by the
        # same Ctrl-C: settled by what is on disk
        if o is None or (interrupted and o.message.startswith("worker error")):
            o = _after_interrupt(source, target)
        outcomes.append(o)
    return outcomes, interrupted


def _after_interrupt(source: str, target: str) -> SessionOutcome:
    """A session without a collected outcome after Ctrl-C: ``done`` if its output is complete (it finished
    while its result was on the way), else ``cancelled``."""
    status = "done" if output_is_complete(Path(target), source=source) else "cancelled"
    return SessionOutcome(source, target, status)


def _kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:  # already gone
            continue


def _collect(future, source: str, target: str) -> SessionOutcome:
    """The outcome of a finished future; a lost worker fails that session only."""
    try:
        return future.result()
    except Exception as err:  # noqa: BLE001 - a lost worker fails that session only
        return SessionOutcome(source, target, "failed", f"worker error: {err}")


def _cancel_pending(client, pending: dict, todo: list[tuple[str, str]], done: dict[int, SessionOutcome]) -> None:
    """After Ctrl-C: keep the outcomes that finished meanwhile, cancel the rest (they stay out of ``done``)."""
    unfinished = []
    for future, i in pending.items():
        if future.status == "finished":
            done[i] = _collect(future, *todo[i])
        else:
            unfinished.append(future)
    if unfinished:
        try:
            client.cancel(unfinished, force=True)
        except Exception as err:  # noqa: BLE001 - the cluster is closed next in any case
            log.debug("cancelling %d sessions: %s", len(unfinished), err)


@contextlib.contextmanager
def _sigint_ignored():
    """SIGINT ignored inside the block (main thread only; elsewhere signals cannot be set and are not received)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
