"""A session source -> an annotated NWB file: read, bin, targets, encoder, subsets, narration, SAE, write.

Only this module (with the CLI) opens and closes files; every stage it calls works on plain objects.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from neurrator.config import NarrateConfig, resolve_device
from neurrator.errors import NeurratorError

log = logging.getLogger(__name__)


@dataclass
class NarrateResult:
    """Summary of one `narrate_session` run."""

    output: Path
    session_label: str
    n_units: int
    subsets: list  # neurrator.decoding.SubsetResult per unit subset
    skipped: list[tuple[str, int, str]]
    baselines: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    validation: dict = field(default_factory=dict)  # subset row -> SAE validation score -> mean, chance, p, CI
    neurration: object = None  # neurrator.analyses.NeurrationResult, when the analyses ran
    report: Path | None = None  # the HTML report written next to the derived file

    def summary(self, examples: int = 3) -> str:
        """A few narrations beside their references, fidelity and scores against the baselines."""
        from neurrator.summary import format_summary

        return format_summary(self, examples=examples)


def resolve_output(out: Path, session) -> Path:
    """``out`` itself when it ends in .nwb, else the DANDI-layout file inside the folder ``out``."""
    from neurrator.nwb_out import derived_file_name

    out = Path(out)
    if out.suffix == ".nwb":
        return out
    return out / derived_file_name(session.subject.get("subject_id") or "unknown", session.session_id)


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
    from neurrator.movies import require_frames
    from neurrator.nwb_out import check_writable_dir
    from neurrator.preflight import CreatedDirs, check_split, load_models, outline_nwbfile
    from neurrator.session import read_session
    from neurrator.sources import open_source, source_label

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
        label = source_label(source)
        # Everything that can fail without the data fails first: the split, every model the run needs.
        with open_source(source, cache_dir=config.cache_path) as nwbfile:
            outline = outline_nwbfile(nwbfile, stimulus=config.stimulus, label=label)
            check_split(outline.n_repeats, n_val=config.n_val_repeats, n_test=config.n_test_repeats, source=label)
            models = load_models(config, device=device, needs_reference=not outline.has_captions)
            clock.lap("models")
            log.info("reading %s", source)
            session = read_session(nwbfile, source=source, path_label=label, stimulus=config.stimulus,
                                   movie=config.movie, quality_filter=config.quality_filter,
                                   movie_cache_dir=config.cache_path / "movies")
        require_frames(session)
        if len(session.units.ids) == 0:
            raise NeurratorError(session.path_label, "no units left to decode from (after the quality filter: "
                                 "try --no-quality-filter)")
        output = resolve_output(out, session)
        if "://" not in source and output.resolve() == Path(source).resolve():
            raise NeurratorError(output, "the output path is the source file; choose another output")
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


def _write_report(derived: Path) -> Path | None:
    """The HTML report next to the derived file; a failure leaves the (complete) derived file and warns."""
    from neurrator.html_report import write_report

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
        self._last = now


def _run(session, *, config: NarrateConfig, device: str, output: Path, models, units_resolution: float | None,
         clock: _Clock) -> NarrateResult:
    from neurrator import nwb_results as res
    from neurrator.analyses import neurrate_session, unit_reliability_for
    from neurrator.binning import bin_session, split_repeats
    from neurrator.decoding import decode_subsets, narrated_presentations, scoring_context
    from neurrator.nwb_out import add_units_to_nwbfile, new_derived_nwbfile, run_provenance, stimulus_epochs
    from neurrator.subsets import build_subsets
    from neurrator.targets import compute_targets
    from neurrator.validation import validation_columns, validation_summary

    label = session.path_label
    units = session.units
    backbone, trained, generator = models.backbone, models.trained, models.generator
    log.info("binning %d units x %d presentations", len(units.ids), len(session.presentations.frame))
    binned = bin_session(session, bins_per_frame=config.bins_per_frame)
    try:
        split = split_repeats(binned.repeat, n_val=config.n_val_repeats, n_test=config.n_test_repeats)
    except ValueError as err:
        raise NeurratorError(label, f"cannot split the presentations into train/validation/test repeats: {err}") from None
    clock.lap("bin")

    log.info("targets: %s on %d frames", backbone.spec.backbone_id, len(session.frames))
    targets = compute_targets(session.frames, backbone, device=device, cache_dir=config.cache_path / "targets",
                              progress=config.progress)
    clock.lap("targets")

    if trained is None:
        trained = _train(binned, targets, split, config=config, device=device, backbone=backbone,
                         stimulus=session.stimulus)
    clock.lap("train")

    responses, reliability = unit_reliability_for(binned, split, offset_bins=config.train.offset_bins,
                                                  seed=config.seed)
    subsets, skipped = build_subsets(units.region, units.cell_type, units.probe, units.depth, units.n_spikes(),
                                     unit_ids=units.ids, plan=config.subsets,
                                     reliability=np.where(reliability.driven, reliability.value, np.nan))
    fps = session.frame_rate if np.isfinite(session.frame_rate) and session.frame_rate > 0 else 30.0
    narrated = narrated_presentations(binned, split, config.narrations_per_subset)
    train_frames = np.unique(binned.frame[split.train])
    references = _references(session, targets, train_frames, binned.frame[narrated],
                             generator=models.generator or models.reference)
    narrator = generator
    if config.narrator == "retrieval":
        from neurrator.narrators import load_narrator

        narrator = load_narrator("retrieval", device=device, seed=config.seed,
                                 bank_patches=targets[references.bank_frames], bank_texts=references.bank_texts)
    embedder = models.embedder
    context = scoring_context(targets, train_frames, bank_texts=references.bank_texts, fps=fps,
                              holdout_frames=trained.holdout_frames)
    results, baselines = decode_subsets(
        subsets, trained=trained, binned=binned, split=split, targets=targets, narrated=narrated,
        narrate=narrator.narrate, references=references.by_frame, embedder=embedder, fps=fps, device=device,
        seed=config.seed, context=context, progress=lambda items: _progress(items, "subsets", config.progress))
    clock.lap("decode+narrate")

    sae, concepts, naming_split = _sae_and_concepts(session, targets, references,
                                                    narrated_frames=binned.frame[narrated], config=config,
                                                    device=device, fps=fps)
    clock.lap("sae")
    all_pred = np.concatenate([r.predicted for r in results])
    all_true = targets[np.concatenate([r.frames for r in results])]
    all_text = [t for r in results for t in r.narrations]
    rows, validation_stats = validation_summary(
        all_text, all_pred, all_true, sae=sae, concepts=concepts, device=device,
        frame_ids=np.concatenate([r.frames for r in results]), block_frames=context.block_frames,
        groups=np.repeat(np.arange(len(results)), [len(r.frames) for r in results]), seed=config.seed)
    validation = validation_columns(rows)
    clock.lap("validate")

    neurration = None
    if config.analyses.enabled and concepts.named():
        a = config.analyses
        neurration = neurrate_session(
            responses=responses, trained=trained, binned=binned, split=split, targets=targets, sae=sae,
            concepts=concepts, units=units, narrate=narrator.narrate, embed=embedder.encode, subset_results=results,
            references=references.by_frame, device=device, seed=config.seed, eval_windows=a.eval_windows,
            probe_windows=a.probe_windows, n_pools=a.null_pools, n_boot=a.n_boot, n_perm=a.n_perm, scaling_sizes=a.scaling_sizes,
            scaling_draws=a.scaling_draws, min_units=config.subsets.min_units, block_frames=context.block_frames,
            train_mean=context.train_mean, contributions=a.contributions)
    elif config.analyses.enabled:
        log.warning("the SAE named no concepts: the single-unit and group analyses were skipped")
    clock.lap("neurration")

    provenance = run_provenance(session, config_json=config.to_json(), extra={"references": references.kind})
    nwbfile = new_derived_nwbfile(session, provenance=provenance)
    units_table = add_units_to_nwbfile(nwbfile, session.units, epochs=stimulus_epochs(session.presentations),
                                       resolution=units_resolution)
    unit_rows = (trained.unit_rows(units.ids) if len(trained.unit_ids) == len(units.ids)
                 else np.arange(len(units.ids)))
    encoder = res.add_encoder_to_nwbfile(nwbfile, trained, units_table=units_table, unit_rows=unit_rows,
                                         stimulus=session.stimulus)
    subsets_table = res.add_unit_subsets_to_nwbfile(nwbfile, [r.subset for r in results], units_table=units_table)
    order, rows = res.window_order(results, session.presentations.start)
    res.add_patch_predictions_to_nwbfile(nwbfile, results, session.presentations, order=order, rows=rows,
                                         subsets_table=subsets_table, encoder=encoder)
    narrations = res.add_narrations_to_nwbfile(nwbfile, results, session.presentations, subsets_table=subsets_table,
                                               narrator_model=narrator.model_id,
                                               prompt=getattr(narrator, "prompt", "") or "")
    res.add_sae_to_nwbfile(nwbfile, sae, concepts, naming_split=naming_split)
    res.add_sae_validation_to_nwbfile(nwbfile, validation, narrations=narrations, rows=res.narration_rows(results))
    res.add_fidelity_to_nwbfile(nwbfile, results, baselines, subsets_table=subsets_table, units=units)
    if neurration is not None:
        res.add_neurration_to_nwbfile(nwbfile, neurration, units_table=units_table,
                                      unit_rows=np.arange(len(units.ids)))
    shown = [int(f) for r in results for f in r.frames]
    if neurration is not None:
        shown += [int(f) for frames in neurration.units["top_frames"] for f in frames]
    res.add_frame_thumbnails_to_nwbfile(nwbfile, session.frames, shown)

    from neurrator.nwb_out import write_nwbfile_atomic

    log.info("writing %s", output)
    write_nwbfile_atomic(nwbfile, output, source_path=Path(session.source) if "://" not in session.source else None)
    clock.lap("write")
    return NarrateResult(output, label, len(units.ids), results, [tuple(s) for s in skipped], baselines,
                         validation=validation_stats, neurration=neurration)


def _train(binned, targets, split, *, config: NarrateConfig, device: str, backbone, stimulus: str):
    from neurrator.training import train_encoder

    rank = min(config.model.linear_rank, len(np.unique(binned.frame)))
    arch = dataclasses.replace(config.model, linear_rank=rank).for_data(
        n_units=binned.n_units, n_patches=targets.shape[1], dim=targets.shape[2], window_bins=config.train.window_bins)
    log.info("training the encoder (%d training presentations)", len(split.train))
    return train_encoder(binned, targets, split, config=config.train, device=device, seed=config.seed,
                         progress=config.progress, encoder=arch, target_spec=backbone.spec, stimulus=stimulus)


def _references(session, targets, train_frames, narrated_frames, *, generator):
    """Captions of a simulated session, else the oracle narrations (by the generative narrator, or the
    reference narrator when narrating by retrieval) of the true frames."""
    from neurrator.references import caption_references, oracle_references

    if session.captions:
        return caption_references(session.captions, train_frames, getattr(session, "caption_variants", None))
    if generator is None:
        raise NeurratorError(session.path_label, "the session has no captions and no reference narrator was loaded")
    return oracle_references(generator, targets, train_frames, narrated_frames)


def _sae_and_concepts(session, targets, references, *, narrated_frames, config: NarrateConfig, device: str,
                      fps: float):
    """The SAE over the stimulus' patch tokens, its concepts named from training frames only: the texts of
    the narrated frames and their neighbours never name a concept (validation checks the narrations
    against them)."""
    from neurrator.concepts import name_concepts
    from neurrator.sae import frame_latents, train_sae

    n_frames, n_patches, dim = targets.shape
    log.info("training the SAE (%d tokens)", n_frames * n_patches)
    sae, _stats = train_sae(targets, config=config.sae.for_data(dim), epochs=config.sae_epochs, device=device, seed=config.seed)
    # the narrated frames and their neighbours (a sixth of a second each side: near-identical frames) never
    # name a concept; excluding whole 1-s blocks would leave nothing, as narrated windows span the movie
    guard = max(1, int(round(fps)) // 6)
    held_out = set((np.asarray(narrated_frames)[:, None] + np.arange(-guard, guard + 1)[None]).ravel().tolist())
    named = np.array([f for f in sorted(references.naming_texts) if f not in held_out], dtype=np.int64)
    latents = frame_latents(sae, targets[named], device=device)
    concepts = name_concepts(latents, [references.naming_texts[int(f)] for f in named],
                             vocabulary=_vocabulary(session))
    sae.concepts = concepts
    split = (f"train: {len(named)} training frames, none within {guard} frames of the {len(narrated_frames)} narrated "
             f"test frames; texts: {references.kind}")
    return sae, concepts, split


def _vocabulary(session) -> list[str] | None:
    """The simulator's caption vocabulary when the session is simulated (restricts concept names)."""
    if not session.captions:
        return None
    from neurrator.simulate import FEATURE_NAMES

    return list(FEATURE_NAMES)


def _progress(items, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, disable=not enabled, leave=False)


def run_demo(out: Path, *, seed: int = 0, progress: bool = True) -> NarrateResult:
    """The pipeline on the embedded simulated session with the offline tiny models and retrieval narrator."""
    from neurrator.simulate import write_simulated_session

    out = Path(out)
    from neurrator.nwb_out import check_writable_dir, derived_file_name

    check_writable_dir(out)
    source = out / "source" / Path(derived_file_name(f"sim{seed}", f"sim{seed}", desc=None)).name
    if not source.is_file():
        source.parent.mkdir(parents=True, exist_ok=True)
        log.info("simulating a session into %s", source)
        write_simulated_session(source, seed=seed)
    config = NarrateConfig.from_options(backbone="tiny", narrator="retrieval", device="cpu", seed=seed,
                                        progress=progress, cache_dir=str(out / "cache"), epochs=2)
    return narrate_session(source, out=out / "derived", config=config)


__all__ = ["NarrateResult", "narrate_session", "run_demo", "resolve_output"]
