"""A dandiset -> one annotated NWB file per session, in parallel on Dask distributed.

A LocalCluster by default, or an existing scheduler (which is how it runs on SLURM or Kubernetes
through dask-jobqueue / dask-kubernetes). Resumable: a session whose output exists and validates is
skipped. One failing session does not stop the others; every failure is listed at the end.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from neurrator.config import NarrateConfig
from neurrator.errors import NeurratorError

log = logging.getLogger(__name__)

DERIVED_SUFFIX = "_desc-neurrator.nwb"


@dataclass(frozen=True)
class SessionOutcome:
    """What happened to one asset: ``done``, ``skipped`` (already complete) or ``failed``."""

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

    @property
    def failed(self) -> list[SessionOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    def summary(self) -> str:
        lines = [f"{self.dandiset}: {len(self.outcomes)} sessions: {self.count('done')} done, "
                 f"{self.count('skipped')} skipped (already complete), {self.count('failed')} failed"]
        lines += [f"  FAILED {o.asset}: {o.message}" for o in self.failed]
        return "\n".join(lines)


def derived_path(asset_path: str, out: Path) -> Path:
    """Output path of an asset in the DANDI layout: ``sub-X/sub-X_ses-Y.nwb`` -> ``sub-X/sub-X_ses-Y_desc-neurrator.nwb``.

    Examples
    --------
    >>> str(derived_path("sub-1/sub-1_ses-2.nwb", Path("out")))
    'out/sub-1/sub-1_ses-2_desc-neurrator.nwb'
    """
    p = PurePosixPath(asset_path)
    stem = p.name[: -len(".nwb")] if p.name.endswith(".nwb") else p.name
    return out.joinpath(*p.parent.parts, stem + DERIVED_SUFFIX)


def dandiset_prefix(dandiset: str) -> str:
    """``dandi://000021@draft``, ``000021@0.210913.1639`` or ``000021`` -> ``dandi://ID[@VERSION]``."""
    text = dandiset[len("dandi://"):] if dandiset.startswith("dandi://") else dandiset
    text = text.strip("/")
    if not text or "/" in text:
        raise NeurratorError(dandiset, "expected a dandiset id such as 000021 or dandi://000021[@VERSION]")
    return f"dandi://{text}"


def _run_one(source: str, output: str, config: NarrateConfig) -> SessionOutcome:
    """Worker task: narrate one session; never raises (the failure is the outcome)."""
    from neurrator.pipeline import narrate_session

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
    """Narrate every NWB session of a dandiset whose path contains ``match``.

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
    from neurrator.nwb_out import check_writable_dir, output_is_complete
    from neurrator.sources import list_assets

    prefix = dandiset_prefix(dandiset)
    out = Path(out)
    check_writable_dir(out)
    assets = [a for a in list_assets(prefix) if a.path.endswith(".nwb") and not a.path.endswith(DERIVED_SUFFIX)
              and (match is None or match in a.path)]
    report = ProcessReport(prefix)
    if not assets:
        raise NeurratorError(prefix, "no NWB assets" + (f" matching {match!r}" if match else ""))

    todo: list[tuple[str, str]] = []
    for asset in assets:
        target = derived_path(asset.path, out)
        source = f"{prefix}/{asset.path}"
        if output_is_complete(target, source=source):
            report.outcomes.append(SessionOutcome(source, str(target), "skipped"))
        else:
            todo.append((source, str(target)))
    log.info("%s: %d assets, %d already complete, %d to process", prefix, len(assets), len(assets) - len(todo), len(todo))
    if todo:
        report.outcomes.extend(_run_all(todo, config=config, scheduler=scheduler, workers=workers))
    return report


def _run_all(todo: list[tuple[str, str]], *, config: NarrateConfig, scheduler: str | None,
             workers: int) -> list[SessionOutcome]:
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError as err:  # pragma: no cover - dask is a hard dependency
        raise ImportError("neurrator process needs dask.distributed: pip install 'dask[distributed]'") from err
    from tqdm.auto import tqdm

    # Each worker session runs single-threaded with its own progress bars off: the bar here counts sessions.
    worker_config = dataclasses.replace(config, progress=False)
    if scheduler:
        cluster, client = None, Client(scheduler)
    else:
        cluster = LocalCluster(n_workers=max(1, workers), threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
    outcomes: list[SessionOutcome] = []
    try:
        futures = [client.submit(_run_one, source, target, worker_config, pure=False, key=f"neurrator-{i}")
                   for i, (source, target) in enumerate(todo)]
        with tqdm(total=len(futures), desc="sessions", unit="session", disable=not config.progress) as bar:
            for future in as_completed(futures):
                try:
                    outcome = future.result()
                except Exception as err:  # noqa: BLE001 - a lost worker fails that session only
                    outcome = SessionOutcome("?", "?", "failed", f"worker error: {err}")
                outcomes.append(outcome)
                log.info("%s: %s %s", outcome.asset, outcome.status, outcome.message)
                bar.update()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    order = {source: i for i, (source, _) in enumerate(todo)}
    return sorted(outcomes, key=lambda o: order.get(o.asset, len(order)))
