"""A session source -> an annotated NWB file: read, bin, targets, encoder, subsets, narration, SAE, write.

Only this module (with the CLI) opens and closes files; every stage it calls works on plain objects.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from neurrator.analysis.run import AnalysisInputs, NeurrationResult, neurrate_session
from neurrator.component_config import MAX_LINEAR_BASIS_BYTES, linear_rank_for
from neurrator.config import NarrateConfig, resolve_device
from neurrator.data.binning import Binned, bin_session, window_spans
from neurrator.data.outline import outline_nwbfile
from neurrator.data.pseudomouse import member_view, pool_sessions
from neurrator.data.responses import unit_reliability_for
from neurrator.data.session import Session, file_ids, read_session
from neurrator.data.shots import detect_shots
from neurrator.data.splits import Split
from neurrator.data.stimuli import bin_intervals
from neurrator.decode.decoding import SubsetResult, decode_subsets, narrated_presentations, scoring_context
from neurrator.decode.references import session_references
from neurrator.decode.subsets import build_subsets
from neurrator.errors import NeurratorError
from neurrator.io.folders import CreatedDirs, path_inside
from neurrator.io.movies import require_frames
from neurrator.io.progress import format_seconds, progress_iter
from neurrator.io.sources import open_source, source_label
from neurrator.models.loading import Models, check_encoder_session, load_models
from neurrator.models.narrators import load_narrator
from neurrator.models.targets import compute_targets
from neurrator.models.training import TrainedEncoder, train_encoder
from neurrator.nwb import results as nwb_results
from neurrator.nwb.derived import (
    check_writable_dir,
    derived_file_name,
    remove_stale_temporaries,
    run_provenance,
    write_nwbfile_atomic,
)
from neurrator.report.html import write_report
from neurrator.report.summary import format_summary
from neurrator.sae.autoencoder import train_named_sae
from neurrator.sae.concepts import Concepts
from neurrator.sae.validation import validate_results
from neurrator.simulate import write_simulated_session

log = logging.getLogger(__name__)


@dataclass
class NarrateResult:
    """Summary of one `narrate_session` run."""

    output: Path
    session_label: str
    n_units: int
    subsets: list  # neurrator.decode.decoding.SubsetResult per unit subset
    skipped: list[tuple[str, int, str]]
    baselines: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    validation: dict = field(default_factory=dict)  # subset row -> SAE validation score -> mean, chance, p, CI
    neurration: object = None  # neurrator.analysis.run.NeurrationResult, when the analyses ran
    report: Path | None = None  # the HTML report written next to the derived file

    def summary(self, examples: int = 3) -> str:
        """A few narrations beside their references, fidelity and scores against the baselines."""

        return format_summary(self, examples=examples)


def resolve_output(out: Path, session) -> Path:
    """``out`` itself when it ends in .nwb, else the DANDI-layout file inside the folder ``out``.

    The name is built from the session's (untrusted) ids: `derived_file_name` keeps DANDI's characters and
    checks the length, `neurrator.io.folders.path_inside` keeps it inside ``out`` (no link leading out).
    """

    out = Path(out)
    if out.suffix == ".nwb":
        return out
    label = getattr(session, "path_label", "") or "derived file name"
    name = derived_file_name(session.subject.get("subject_id") or "unknown", session.session_id, label=label)
    return path_inside(out, name, label=label)


def narrate_session(source: str | Path, *, out: Path, config: NarrateConfig = NarrateConfig()) -> NarrateResult:
    """Run the whole pipeline on one session and write the annotated NWB file.

    Parameters
    ----------
    source
        Local path, ``dandi://DANDISET[@VERSION]/PATH`` or https URL of an NWB session.
    out
        Output file (ends in ``.nwb``) or a folder in which the DANDI-layout file is created.
    config
        `NarrateConfig`.

    Returns
    -------
    NarrateResult
    """

    t0 = time.perf_counter()
    clock = _Clock()
    source = str(source)
    out = Path(out)
    device = resolve_device(config.device)
    out_dir = out.parent if out.suffix == ".nwb" else out
    created = CreatedDirs()
    created.watch(out_dir)
    try:
        check_writable_dir(out_dir)
        remove_stale_temporaries(out_dir)
        session, outline, models = _read(source, config=config, device=device, clock=clock, out=out)
        config = config.with_kind(outline.kind)
        output = _output_for(out, session, source)
        clock.lap("read")
        result = _run(session, config=config, device=device, output=output, models=models,
                      units_resolution=outline.units_resolution, clock=clock)
    except BaseException:
        created.remove_empty()
        raise
    result.report = _write_report(result.output)
    clock.lap("report")
    result.timings = clock.laps
    result.seconds = time.perf_counter() - t0
    return result


def _read(source: str, *, config: NarrateConfig, device: str, clock: _Clock, models=None, out: Path | None = None):
    """(session, outline, models) of one source: everything that can fail without the data fails first
    (the output name the file's ids give under ``out``, the split, every model the run needs, loaded unless
    ``models`` is given), then the session is read."""

    label = source_label(source)
    with open_source(source, cache_dir=config.cache_path, timeout=config.timeout) as nwbfile:
        if out is not None:  # a name the file system refuses fails now, not after the whole run
            subject_id, session_id = file_ids(nwbfile)
            _output_for(out, SimpleNamespace(subject={"subject_id": subject_id}, session_id=session_id,
                                             path_label=label), source)
        outline = outline_nwbfile(nwbfile, stimulus=config.stimulus, label=label, kind=config.stimulus_kind)
        kind = config.with_kind(outline.kind).kind  # given, by name, or from the table's layout
        kind.check_split(outline.n_repeats, n_val_repeats=config.n_val_repeats, n_test_repeats=config.n_test_repeats,
                         label=label)
        kind.check_window(outline.onsets, latency_s=config.image_latency_s, window_s=config.image_window_s,
                          allow_overlap=config.allow_overlap, label=label)
        if models is None:
            models = load_models(config, device=device, needs_reference=not outline.has_captions)
            clock.lap("models")
        log.info("reading %s", source)
        session = read_session(nwbfile, source=source, path_label=label, stimulus=config.stimulus,
                               movie=config.movie, quality_filter=config.quality_filter,
                               movie_cache_dir=config.cache_path / "movies", timeout=config.timeout, kind=kind.name)
    require_frames(session)
    if len(session.units.ids) == 0:
        raise NeurratorError(session.path_label, "no units left to decode from (after the quality filter: "
                             "try --no-quality-filter)")
    if models.trained is not None:  # a reused encoder must know these units and frames
        check_encoder_session(models.trained, session.units.ids, len(session.frames), encoder=config.encoder)
    return session, outline, models


def _output_for(out: Path, session, source: str) -> Path:
    output = resolve_output(out, session)
    if "://" not in source and output.resolve() == Path(source).resolve():
        raise NeurratorError(output, "the output path is the source file; choose another output")
    return output


def narrate_sessions(sources: list[str | Path], *, out: Path, config: NarrateConfig = NarrateConfig()
                     ) -> list[NarrateResult]:
    """Several sessions of one stimulus as one pseudo-mouse (`neurrator.data.pseudomouse`): one encoder over
    all their units, subsets and analyses over the pooled units (cell types pool across sessions), and one
    DANDI-layout derived file per session in the folder ``out``, holding that session's units, the subsets
    and per-unit results of its units, and the pooled group, separation and scaling results, with the
    contributing sessions in its provenance. One source is `narrate_session`.
    """

    sources = [str(s) for s in sources]
    if len(sources) == 1:
        return [narrate_session(sources[0], out=out, config=config)]
    t0 = time.perf_counter()
    clock = _Clock()
    out = Path(out)
    if out.suffix == ".nwb":
        raise NeurratorError(out, "several sessions write one file each: give a folder for --out, not a .nwb file")
    device = resolve_device(config.device)
    created = CreatedDirs()
    created.watch(out)
    try:
        check_writable_dir(out)
        remove_stale_temporaries(out)
        sessions, outlines, outputs, models = [], [], [], None
        for source in sources:
            session, outline, models = _read(source, config=config, device=device, clock=clock, models=models,
                                             out=out)
            output = _output_for(out, session, source)
            if output in outputs:
                raise NeurratorError(source, f"gives the same derived file as {sources[outputs.index(output)]} "
                                     f"({output.name}): the same session twice?")
            sessions.append(session), outlines.append(outline), outputs.append(output)
        config = config.with_kind(outlines[0].kind)
        clock.lap("read")
        binned = [bin_session(s, bins_per_frame=config.bins_per_frame) for s in sessions]
        pooled_session, pooled = pool_sessions(sessions, binned)
        log.info("pseudo-mouse: %d sessions, %d units, %d common presentations", len(sessions),
                 pooled.binned.n_units, pooled.binned.n_presentations)
        clock.lap("bin")
        a = analyse(pooled_session, pooled.binned, config=config, device=device, models=models, clock=clock,
                    unit_session=pooled.unit_session)
        members = [{"source": s.source, "session_id": s.session_id, "n_units": len(s.units)} for s in sessions]
        results = []
        for i, (session, outline, output) in enumerate(zip(sessions, outlines, outputs, strict=True)):
            view_session, view = member_view(a, pooled, i, session)
            extra = {"pseudo_mouse": {"sessions": members, "this_session": i,
                                      "pooled_units": int(pooled.binned.n_units),
                                      "pooled_presentations": int(pooled.binned.n_presentations)}}
            _write(view_session, view, config=config, output=output, units_resolution=outline.units_resolution,
                   extra_provenance=extra)
            results.append(NarrateResult(output, session.path_label, len(session.units), view.results,
                                         [tuple(x) for x in a.skipped], a.baselines,
                                         validation=a.validation_stats, neurration=view.neurration))
        clock.lap("write")
    except BaseException:
        created.remove_empty()
        raise
    for r in results:
        r.report = _write_report(r.output)
    clock.lap("report")
    for r in results:
        r.timings, r.seconds = clock.laps, time.perf_counter() - t0
    return results


def _write_report(derived: Path) -> Path | None:
    """The HTML report next to the derived file; a failure leaves the (complete) derived file and warns."""

    try:
        return write_report(derived)
    except NeurratorError as err:
        log.warning("the derived file is complete but its report could not be written: %s", err)
        return None


class _Clock:
    """Seconds spent per pipeline stage (``lap(name)`` closes the stage that ran since the last lap)."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = self.laps.get(name, 0.0) + now - self._last
        log.info("stage %s done in %s (%s since the start)", name, format_seconds(now - self._last),
                 format_seconds(sum(self.laps.values())))
        self._last = now


@dataclass
class SessionAnalysis:
    """Everything `analyse` computes for one (possibly pooled) population; `_write` turns it into a file."""

    trained: TrainedEncoder
    split: Split
    results: list[SubsetResult]
    baselines: dict[str, dict[str, tuple[float, float]]]
    skipped: list
    sae: Any  # neurrator.sae.autoencoder.TopKSAE
    concepts: Concepts
    naming_split: str
    validation: dict
    validation_stats: dict
    neurration: NeurrationResult | None
    narrator: Any  # neurrator.models.narrators.Narrator
    references_kind: str = ""


def _run(session: Session, *, config: NarrateConfig, device: str, output: Path, models: Models,
         units_resolution: float | None, clock: _Clock) -> NarrateResult:
    log.info("binning %d units x %d presentations", len(session.units.ids), len(session.presentations.frame))
    kind = config.kind
    binned = bin_session(session, kind=kind.name, bins_per_frame=config.bins_per_frame,
                         window_bins=config.train.window_bins, window_s=config.image_window_s,
                         latency_s=config.image_latency_s)
    offset = kind.offset_bins(config.train.offset_bins, latency_s=config.image_latency_s)
    if offset != config.train.offset_bins or not kind.continuous:
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, offset_bins=offset))
    clock.lap("bin")
    a = analyse(session, binned, config=config, device=device, models=models, clock=clock)
    _write(session, a, config=config, output=output, units_resolution=units_resolution)
    clock.lap("write")
    return NarrateResult(output, session.path_label, len(session.units.ids), a.results, [tuple(x) for x in a.skipped],
                         a.baselines, validation=a.validation_stats, neurration=a.neurration)


def analyse(session: Session, binned: Binned, *, config: NarrateConfig, device: str, models: Models,
            clock: _Clock | None = None, unit_session: np.ndarray | None = None) -> SessionAnalysis:
    """Targets, encoder, subsets, narration, SAE, validation and the analyses of one population.

    ``session`` gives the units' annotations (``session.units``, one per column of ``binned.counts``), the
    frames and captions; ``binned`` the counts. For a pseudo-mouse (`neurrator.data.pseudomouse`) both are
    pooled and ``unit_session`` tags each unit's session for the encoder. What depends on the stimulus
    kind (the split, the items per second) comes from the stimulus registry (`NarrateConfig.kind`).
    """
    clock = clock or _Clock()
    units = session.units
    kind = config.kind
    backbone, trained, generator = models.backbone, models.trained, models.generator
    split = kind.split(binned.frame, binned.repeat, n_val_repeats=config.n_val_repeats,
                       n_test_repeats=config.n_test_repeats, n_val_images=config.n_val_images,
                       n_test_images=config.n_test_images, seed=config.seed, label=session.path_label)

    log.info("targets: %s on %d frames", backbone.spec.backbone_id, len(session.frames))
    targets = compute_targets(session.frames, backbone, device=device, cache_dir=config.cache_path / "targets",
                              progress=config.progress)
    clock.lap("targets")

    if trained is None:
        trained = _train(binned, targets, split, config=config, device=device, backbone=backbone,
                         stimulus=session.stimulus, unit_session=unit_session)
    clock.lap("train")
    fps = kind.fps(session.frame_rate)
    responses, reliability = unit_reliability_for(binned, split, offset_bins=config.train.offset_bins,
                                                  seed=config.seed, flashed=not kind.continuous,
                                                  min_shift=max(1, round(fps)), features=targets.mean(axis=1))
    subsets, skipped = build_subsets(units.region, units.cell_type, units.probe, units.depth, units.n_spikes(),
                                     unit_ids=units.ids, plan=config.subsets,
                                     reliability=None if reliability is None else
                                     np.where(reliability.driven, reliability.value, np.nan))
    narrated = narrated_presentations(binned, split, config.narrations_per_subset, spread=kind.continuous)
    train_frames = np.unique(binned.frame[split.train])
    references = session_references(session, targets, train_frames, binned.frame[narrated],
                                    generator=models.generator or models.reference)
    narrator = generator
    if config.narrator == "retrieval":
        narrator = load_narrator("retrieval", device=device, seed=config.seed,
                                 bank_patches=targets[references.bank_frames], bank_texts=references.bank_texts)
    embedder = models.embedder
    context = scoring_context(targets, train_frames, bank_texts=references.bank_texts, fps=fps,
                              holdout_frames=trained.holdout_frames, continuous=kind.continuous)
    results, baselines = decode_subsets(
        subsets, trained=trained, binned=binned, split=split, targets=targets, narrated=narrated,
        narrate=narrator.narrate, references=references.by_frame, embedder=embedder, fps=fps, device=device,
        seed=config.seed, context=context, progress=lambda items: _progress(items, "subsets", config.progress))
    clock.lap("decode+narrate")

    log.info("training the SAE (%d tokens)", targets.shape[0] * targets.shape[1])
    sae, concepts, naming_split = train_named_sae(
        targets, references.naming_texts, naming_kind=references.kind, exclude_frames=binned.frame[narrated],
        config=config.sae, epochs=config.sae_epochs, vocabulary=session.caption_vocabulary, fps=fps, device=device,
        seed=config.seed)
    clock.lap("sae")
    validation, validation_stats = validate_results(results, targets, sae=sae, concepts=concepts, device=device,
                                                    block_frames=context.block_frames, seed=config.seed,
                                                    rotate=binned.repeat[narrated] if kind.continuous else None)
    clock.lap("validate")

    neurration = None
    if config.analyses.enabled:  # without concept names only concept tuning and enrichment are skipped
        inputs = AnalysisInputs(
            responses=responses, trained=trained, binned=binned, split=split, targets=targets, sae=sae,
            concepts=concepts, units=units, narrate=narrator.narrate, embed=embedder.encode, subset_results=results,
            references=references.by_frame, block_frames=context.block_frames, train_mean=context.train_mean,
            shots=detect_shots(session.frames) if kind.continuous and session.frames is not None else None,
            reliability=reliability)
        neurration = neurrate_session(inputs, config=config.analyses, min_units=config.subsets.min_units,
                                      device=device, seed=config.seed)
    clock.lap("neurration")

    return SessionAnalysis(trained=trained, split=split, results=results, baselines=baselines, skipped=skipped,
                           sae=sae, concepts=concepts, naming_split=naming_split, validation=validation,
                           validation_stats=validation_stats, neurration=neurration, narrator=narrator,
                           references_kind=references.kind)


def _write(session: Session, a: SessionAnalysis, *, config: NarrateConfig, output: Path,
           units_resolution: float | None, extra_provenance: dict | None = None) -> None:
    provenance = run_provenance(session, config_json=config.to_json(),
                                extra={"references": a.references_kind, **(extra_provenance or {})})
    nwbfile = nwb_results.build_derived_nwbfile(
        session, provenance=provenance, trained=a.trained, results=a.results, baselines=a.baselines, sae=a.sae,
        concepts=a.concepts, naming_split=a.naming_split, validation=a.validation, neurration=a.neurration,
        narrator=a.narrator, units_resolution=units_resolution, predictions=config.predictions,
        predictions_rank=config.predictions_rank, windows=_decoding_windows(session, config))
    log.info("writing %s", output)
    write_nwbfile_atomic(nwbfile, output, source_path=Path(session.source) if "://" not in session.source else None)


def _decoding_windows(session: Session, config: NarrateConfig) -> tuple[np.ndarray, np.ndarray]:
    """(start, stop) seconds of every presentation's decoding window, as binned and windowed for the encoder."""
    pres = session.presentations
    starts, stops, b = bin_intervals(pres.start, pres.stop, kind=config.kind, bins_per_frame=config.bins_per_frame,
                                     window_bins=config.train.window_bins, window_s=config.image_window_s,
                                     latency_s=config.image_latency_s)
    return window_spans(starts, stops, pres.repeat, bins_per_frame=b, window_bins=config.train.window_bins,
                        offset_bins=config.train.offset_bins)


def _train(binned, targets, split, *, config: NarrateConfig, device: str, backbone, stimulus: str,
           unit_session: np.ndarray | None = None):

    rank = linear_rank_for(config.model.linear_rank, n_patches=targets.shape[1], dim=targets.shape[2],
                           n_frames=len(np.unique(binned.frame)))
    if rank < min(config.model.linear_rank, len(np.unique(binned.frame))):
        log.warning("the encoder's linear rank is %d, not %d: its basis (stored in the derived file) is kept "
                    "under %d MB at %d x %d targets", rank, config.model.linear_rank,
                    MAX_LINEAR_BASIS_BYTES // 10**6, targets.shape[1], targets.shape[2])
    n_sessions = 1 if unit_session is None else int(np.max(unit_session)) + 1
    arch = dataclasses.replace(config.model, linear_rank=rank, n_sessions=n_sessions).for_data(
        n_units=binned.n_units, n_patches=targets.shape[1], dim=targets.shape[2], window_bins=config.train.window_bins)
    log.info("training the encoder (%d training presentations)", len(split.train))
    return train_encoder(binned, targets, split, config=config.train, device=device, seed=config.seed,
                         progress=config.progress, encoder=arch, target_spec=backbone.spec, stimulus=stimulus,
                         unit_session=unit_session)


def _progress(items, desc: str, enabled: bool):
    return progress_iter(items, desc=desc, bars=enabled, unit=desc)


def run_demo(out: Path, *, seed: int = 0, progress: bool = True) -> NarrateResult:
    """The pipeline on the embedded simulated session with the offline tiny models and retrieval narrator."""

    out = Path(out)

    check_writable_dir(out)
    source = out / "source" / Path(derived_file_name(f"sim{seed}", f"sim{seed}", desc=None)).name
    if not source.is_file():
        source.parent.mkdir(parents=True, exist_ok=True)
        log.info("simulating a session into %s", source)
        write_simulated_session(source, seed=seed)
    config = NarrateConfig.from_options(backbone="tiny", narrator="retrieval", device="cpu", seed=seed,
                                        progress=progress, cache_dir=str(out / "cache"), epochs=2)
    return narrate_session(source, out=out / "derived", config=config)


__all__ = ["NarrateResult", "SessionAnalysis", "analyse", "narrate_session", "narrate_sessions", "run_demo", "resolve_output"]
