"""A session source -> an annotated NWB file: read, bin, targets, encoder, subsets, narration, SAE, write.

Only this module (with the CLI) opens and closes files; every stage it calls works on plain objects.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neurrator.config import NarrateConfig, resolve_device
from neurrator.errors import NeurratorError

log = logging.getLogger(__name__)

EVAL_METRICS = ("patch_cosine", "top1", "top5", "within_1s")


@dataclass
class SubsetResult:
    """What one unit subset gave: fidelity metrics and its narrations."""

    subset: Any  # neurrator.subsets.UnitSubset
    metrics: dict[str, tuple[float, float]]  # metric -> (value, chance)
    presentations: np.ndarray  # (k,) narrated presentation indices
    frames: np.ndarray  # (k,) their movie frames
    narrations: list[str]
    references: list[str]
    similarity: np.ndarray  # (k,) matched sentence similarity
    shuffled: np.ndarray  # (k,) similarity to a shuffled reference
    floor: np.ndarray  # (k,) similarity to word salad
    predicted: np.ndarray  # (k, n_patches, dim) float32 predicted patches of the narrated windows


@dataclass
class NarrateResult:
    """Summary of one `narrate_session` run."""

    output: Path
    session_label: str
    n_units: int
    subsets: list[SubsetResult]
    skipped: list[tuple[str, int, str]]
    baselines: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage

    def _subset(self, label: str) -> SubsetResult | None:
        return next((r for r in self.subsets if r.subset.label == label), None)

    def summary(self, examples: int = 3) -> str:
        """A few narrations beside their references, fidelity and scores against the baselines."""
        lines = [f"session {self.session_label}: {self.n_units} units, {len(self.subsets)} unit subsets "
                 f"({self.seconds:.0f} s)"]
        best = self._subset("all") or self.subsets[0]
        if examples:
            lines.append(f"\nnarrations from {best.subset.label} ({best.subset.n_units} units), held-out repeats:")
            for i in range(min(examples, len(best.narrations))):
                lines.append(f"  frame {int(best.frames[i]):4d}  narration: {best.narrations[i]}")
                lines.append(f"              reference: {best.references[i]}   (similarity {best.similarity[i]:.2f})")
        lines.append("\nsubset                           units  patch_cos   top1 (chance)  within_1s (chance)  "
                     "narration: matched / shuffled / floor")
        for r in self.subsets:
            m = r.metrics
            lines.append(
                f"  {r.subset.label:<30.30s} {r.subset.n_units:5d}  {m['patch_cosine'][0]:9.3f}  "
                f"{m['top1'][0]:5.3f} ({m['top1'][1]:.3f})  {m['within_1s'][0]:9.3f} ({m['within_1s'][1]:.3f})  "
                f"{r.similarity.mean():6.3f} / {r.shuffled.mean():6.3f} / {r.floor.mean():6.3f}")
        for name, metrics in self.baselines.items():
            lines.append(f"  baseline {name:<21.21s} {'':5s}  {metrics['patch_cosine'][0]:9.3f}  "
                         f"{metrics['top1'][0]:5.3f} ({metrics['top1'][1]:.3f})  "
                         f"{metrics['within_1s'][0]:9.3f} ({metrics['within_1s'][1]:.3f})")
        if self.skipped:
            shown = ", ".join(f"{lab} ({n})" for lab, n, _ in self.skipped[:8])
            more = f", and {len(self.skipped) - 8} more" if len(self.skipped) > 8 else ""
            lines.append(f"skipped {len(self.skipped)} groups with too few units: {shown}{more}")
        if self.timings:
            lines.append("time per stage: " + ", ".join(f"{k} {v:.0f} s" for k, v in self.timings.items()))
        lines.append(f"\nwrote {self.output}")
        return "\n".join(lines)


def _source_checksum(source: str) -> str:
    from neurrator.scoring import sha256_file

    path = Path(source)
    if "://" not in source and path.is_file():
        return "sha256:" + sha256_file(path)
    return "unavailable: streamed source (see the archive's asset digest)"


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
    from neurrator.nwb_out import check_writable_dir

    t0 = time.perf_counter()
    clock = _Clock()
    source = str(source)
    out = Path(out)
    device = resolve_device(config.device)
    check_writable_dir(out.parent if out.suffix == ".nwb" else out)

    # Everything that can fail without the data fails first: checkpoint, backbone and narrator weights.
    from neurrator.backbones import load_backbone
    from neurrator.narrators import load_narrator
    from neurrator.session import load_session

    trained = None
    if config.encoder:
        if not Path(config.encoder).exists():
            raise NeurratorError(config.encoder, "encoder checkpoint not found")
        trained = _load_encoder(Path(config.encoder), device=device)
    backbone = load_backbone(config.backbone, preprocessing=config.preprocessing, device=device, seed=config.seed)
    if trained is not None and trained.target_spec is not None and (
            trained.target_spec.backbone_id, trained.target_spec.preprocessing) != (
            backbone.spec.backbone_id, backbone.spec.preprocessing):
        raise NeurratorError(config.encoder, f"encoder was trained on {trained.target_spec.backbone_id} targets "
                             f"({trained.target_spec.preprocessing}), not {backbone.spec.backbone_id} "
                             f"({backbone.spec.preprocessing}); pass the matching --backbone/--preprocessing")
    generator = None
    if config.narrator != "retrieval":
        generator = load_narrator(config.narrator, device=device, seed=config.seed)
        if getattr(generator, "dim", backbone.spec.dim) != backbone.spec.dim:
            raise NeurratorError(config.narrator, f"its projector reads {generator.dim}-d patch tokens but backbone "
                                 f"{config.backbone} gives {backbone.spec.dim}-d ones: use the narrator's own vision "
                                 "tower as backbone (tiny with tiny, llava with llava)")

    clock.lap("models")
    log.info("reading %s", source)
    session = load_session(source, stimulus=config.stimulus, movie=config.movie, quality_filter=config.quality_filter,
                           cache_dir=config.cache_path)
    from neurrator.movies import require_frames

    require_frames(session)
    if len(session.units.ids) == 0:
        raise NeurratorError(session.path_label, "no units left to decode from (after the quality filter: "
                             "try --no-quality-filter)")
    output = resolve_output(out, session)
    if "://" not in source and output.resolve() == Path(source).resolve():
        raise NeurratorError(output, "the output path is the source file; choose another output")

    clock.lap("read")
    result = _run(session, config=config, device=device, output=output, backbone=backbone, trained=trained,
                  generator=generator, clock=clock)
    result.timings = clock.laps
    result.seconds = time.perf_counter() - t0
    return result


def _narrated_presentations(binned, split, k: int) -> np.ndarray:
    """``k`` presentations spread evenly over the first test repeat."""
    test = split.test
    first = binned.repeat[test[0]]
    in_repeat = test[binned.repeat[test] == first]
    pick = np.unique(np.linspace(0, len(in_repeat) - 1, num=min(k, len(in_repeat))).round().astype(int))
    return in_repeat[pick]


class _Clock:
    """Seconds spent per pipeline stage (``lap(name)`` closes the stage that ran since the last lap)."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = self.laps.get(name, 0.0) + now - self._last
        self._last = now


def _run(session, *, config: NarrateConfig, device: str, output: Path, backbone, trained, generator,
         clock: _Clock) -> NarrateResult:
    from neurrator import evaluation
    from neurrator.binning import bin_session, split_repeats
    from neurrator.sae import SAEConfig, frame_latents, name_concepts, train_sae
    from neurrator.scoring import load_sentence_embedder, score_narrations
    from neurrator.subsets import SubsetPlan, build_subsets
    from neurrator.targets import compute_targets
    from neurrator.encoder import EncoderConfig
    from neurrator.training import TrainConfig, predict, train_encoder
    from neurrator.validation import validate_narrations, validation_columns

    label = session.path_label
    units = session.units
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
        train_cfg = TrainConfig(window_bins=config.window_bins, offset_bins=config.offset_bins,
                                max_epochs=config.epochs)
        arch = EncoderConfig(n_units=binned.n_units, n_patches=targets.shape[1], dim=targets.shape[2],
                             window_bins=config.window_bins, d_model=config.d_model, n_latents=config.n_latents,
                             depth=config.depth, linear_rank=min(config.linear_rank, len(np.unique(binned.frame))))
        log.info("training the encoder (%d training presentations)", len(split.train))
        trained = train_encoder(binned, targets, split, config=train_cfg, device=device, seed=config.seed,
                                progress=config.progress, encoder=arch, target_spec=backbone.spec,
                                stimulus=session.stimulus)

    clock.lap("train")
    plan = SubsetPlan(min_units=config.min_units, population_sizes=config.population_sizes,
                      draws_per_size=config.draws_per_size, single_units=config.single_units)
    subsets, skipped = build_subsets(units.region, units.cell_type, units.probe, units.depth, units.n_spikes(),
                                     unit_ids=units.ids, plan=plan)
    for lab, n, why in skipped:
        log.info("skipping %s: %d units, %s", lab, n, why)

    fps = session.frame_rate if np.isfinite(session.frame_rate) and session.frame_rate > 0 else 30.0
    narrated = _narrated_presentations(binned, split, config.narrations_per_subset)
    narrated_frames = binned.frame[narrated]

    # references (captions of a simulated session, else the narrator's oracle narration of the true frame)
    narrator, references_by_frame, reference_kind = _narrator_and_references(
        session, targets, binned, split, config=config, device=device, frames_needed=np.unique(narrated_frames),
        generator=generator)
    embedder = load_sentence_embedder(device=device)

    results: list[SubsetResult] = []
    baselines: dict[str, dict[str, tuple[float, float]]] = {}
    test_frames = binned.frame[split.test]
    for subset in _progress(subsets, "subsets", config.progress):
        pred = predict(trained, binned, split.test, unit_idx=subset.unit_idx, device=device)
        metrics = _metrics(evaluation.score_predictions(pred, test_frames, targets, fps=fps, device=device))
        if subset.kind == "all":
            baselines = _baselines(binned, targets, split, trained, pred, fps=fps, device=device)
        pos = np.searchsorted(split.test, narrated)
        texts = narrator.narrate(pred[pos])
        refs = [references_by_frame[int(f)] for f in narrated_frames]
        scores = score_narrations(texts, refs, embedder=embedder, seed=config.seed, frame_ids=narrated_frames)
        results.append(SubsetResult(subset, metrics, narrated, narrated_frames, list(texts), refs,
                                    scores.matched, scores.shuffled, scores.floor, pred[pos].copy()))
        del pred

    clock.lap("decode+narrate")
    # SAE over the patch space of the stimulus frames, named from the references
    n_frames, n_patches, dim = targets.shape
    sae_cfg = SAEConfig(d_in=dim, n_latents=config.sae_latents, k=config.sae_k)
    log.info("training the SAE (%d tokens)", n_frames * n_patches)
    sae, _stats = train_sae(targets, config=sae_cfg, epochs=config.sae_epochs, device=device, seed=config.seed)
    named = np.array(sorted(references_by_frame))
    latents = frame_latents(sae, targets[named], device=device)
    concepts = name_concepts(latents, [references_by_frame[int(f)] for f in named],
                             vocabulary=_vocabulary(session))
    sae.concepts = concepts
    clock.lap("sae")
    all_pred = np.concatenate([r.predicted for r in results])
    all_true = targets[np.concatenate([r.frames for r in results])]
    all_text = [t for r in results for t in r.narrations]
    validation = validation_columns(validate_narrations(all_text, all_pred, all_true, sae=sae, concepts=concepts,
                                                        device=device))

    nwbfile = _build_file(session, config=config, trained=trained, results=results, baselines=baselines,
                          sae=sae, sae_cfg=sae_cfg, concepts=concepts, validation=validation, fps=fps,
                          narrator=narrator, reference_kind=reference_kind, binned=binned)
    from neurrator.nwb_out import write_nwbfile_atomic

    clock.lap("validate")
    log.info("writing %s", output)
    write_nwbfile_atomic(nwbfile, output, source_path=Path(session.source) if "://" not in session.source else None)
    clock.lap("write")
    return NarrateResult(output, label, len(units.ids), results, [tuple(s) for s in skipped], baselines)


def _jsonable(value: Any) -> Any:
    """numpy values and arrays inside dicts/lists -> plain JSON types."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _metrics(scores: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """(value, chance) per fidelity metric from an `evaluation.score_predictions` dict."""
    return {m: (float(scores[m]), float(scores[f"chance_{m}"])) for m in EVAL_METRICS}


def _baselines(binned, targets, split, trained, pred_all, *, fps: float, device: str):
    """Ridge, kNN and the shuffled-frame control on the same test repeats as the encoder (all units)."""
    from neurrator.evaluation import knn_baseline, ridge_baseline, score_predictions, shuffled_control

    tc = trained.train_config
    kw = dict(window_bins=tc.window_bins, offset_bins=tc.offset_bins, holdout_frames=trained.holdout_frames,
              device=device)
    frames = binned.frame[split.test]
    out = {}
    # ridge on bins summed per frame is the stronger ridge (it beat the unpooled one in the benchmark)
    pool = binned.bins_per_frame if tc.window_bins % binned.bins_per_frame == 0 else 1
    fits = (("ridge", ridge_baseline, {"temporal_pool": pool}), ("knn", knn_baseline, {}))
    for name, fit, extra in fits:
        pred, _info = fit(binned, targets, split, **kw, **extra)
        out[name] = _metrics(score_predictions(pred, frames, targets, fps=fps, device=device))
    out["shuffled"] = _metrics(shuffled_control(pred_all, frames, targets, fps=fps, device=device))
    return out


def _vocabulary(session) -> list[str] | None:
    """The simulator's caption vocabulary when the session is simulated (restricts concept names)."""
    if not session.captions:
        return None
    from neurrator.simulate import FEATURE_NAMES

    return list(FEATURE_NAMES)


def _progress(items, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, disable=not enabled, leave=False)


def _load_encoder(path: Path, *, device: str):
    """An encoder from a checkpoint folder, or from the EncoderCheckpoint of a neurrator NWB file."""
    from neurrator.checkpoint import load_checkpoint

    if path.is_dir():
        return load_checkpoint(path, device=device)
    from neurrator.nwb_out import encoder_from_nwb

    return encoder_from_nwb(path, device=device)


def _narrator_and_references(session, targets, binned, split, *, config: NarrateConfig, device: str,
                             frames_needed: np.ndarray, generator):
    """The narrator, a frame -> reference text map, and how references were made."""
    from neurrator.narrators import load_narrator

    train_frames = np.unique(binned.frame[split.train])
    if session.captions:
        captions = {int(f): session.captions[int(f)] for f in range(len(session.captions))}
        kind = "simulator captions"
        if config.narrator == "retrieval":
            narrator = load_narrator("retrieval", device=device, seed=config.seed, bank_patches=targets[train_frames],
                                     bank_texts=[captions[int(f)] for f in train_frames])
        else:
            narrator = generator
        return narrator, captions, kind

    # No captions: the oracle (a generative narrator on the true patches) writes the references.
    if generator is None:  # retrieval without captions: the reference narrator writes the bank's texts
        generator = load_narrator(config.reference_narrator, device=device, seed=config.seed)
    needed = np.unique(np.concatenate([frames_needed, train_frames[:: max(1, len(train_frames) // 200)]]))
    texts = generator.narrate(targets[needed])
    refs = {int(f): t for f, t in zip(needed, texts)}
    kind = f"oracle narrations by {generator.model_id} on the true patches"
    if config.narrator == "retrieval":
        bank = np.intersect1d(needed, train_frames)
        narrator = load_narrator("retrieval", device=device, seed=config.seed, bank_patches=targets[bank],
                                 bank_texts=[refs[int(f)] for f in bank])
        return narrator, refs, kind
    return generator, refs, kind


def _build_file(session, *, config, trained, results, baselines, sae, sae_cfg, concepts, validation, fps,
                narrator, reference_kind, binned):
    """The derived NWBFile with every ndx-neurrator container."""
    import ndx_neurrator as ndx

    from neurrator.checkpoint import checkpoint_payload
    from neurrator.nwb_out import (add_units_to_nwbfile, encoder_config_text, new_derived_nwbfile, provenance_record,
                                   stimulus_epochs)
    from neurrator.sae import sae_payload

    provenance = provenance_record(
        source=session.source, source_checksum=_source_checksum(session.source),
        config=json.loads(config.to_json()),
        extra={"source_identifier": session.identifier, "references": reference_kind,
               "frames_source": session.frames_source, "presentation_table": session.presentation_table,
               "dropped_units": {why: [int(u) for u in ids] for why, ids in session.dropped_units.items()},
               "opto_tagging": _jsonable(session.opto)})
    nwbfile = new_derived_nwbfile(session, provenance=provenance)
    units_table = add_units_to_nwbfile(nwbfile, session.units, epochs=stimulus_epochs(session.presentations))
    module = ndx.get_neurrator_module(nwbfile)

    payload = checkpoint_payload(trained)
    spec = trained.target_spec
    last = trained.history[-1] if trained.history else {}
    best = min(trained.history, key=lambda h: h.get("val_loss", np.inf)) if trained.history else {}
    encoder = ndx.create_encoder_checkpoint(
        payload.weights, name="encoder", units_table=units_table, unit_rows=trained.unit_rows(session.units.ids)
        if len(trained.unit_ids) == len(session.units.ids) else np.arange(len(session.units.ids)),
        architecture=payload.architecture, config=encoder_config_text(payload), backbone_id=spec.backbone_id,
        backbone_layer=int(spec.layer), n_patches=int(spec.n_patches), dim=int(spec.dim),
        preprocessing=spec.preprocessing, stimulus=session.stimulus,
        training_metrics={k: v for k, v in last.items() if isinstance(v, (int, float))},
        validation_metrics={k: v for k, v in best.items() if isinstance(v, (int, float))},
        software_versions=json.loads(payload.metadata_json).get("versions", {}) if payload.metadata_json else None,
    )
    module.add(encoder)

    subsets_table = ndx.create_unit_subsets([r.subset for r in results], units_table=units_table)
    module.add(subsets_table)

    rows = np.concatenate([np.full(len(r.frames), i) for i, r in enumerate(results)])
    pres = np.concatenate([r.presentations for r in results])
    order = np.lexsort((rows, session.presentations.start[pres]))
    start = session.presentations.start[pres][order]
    stop = session.presentations.stop[pres][order]
    predicted = np.concatenate([r.predicted for r in results])[order]
    frames = np.concatenate([r.frames for r in results])[order]
    predictions = ndx.create_patch_predictions(
        predicted.astype(np.float32), name="patch_predictions", timestamps=(start + stop) / 2, frame=frames,
        unit_subsets=subsets_table, unit_subset_rows=rows[order], encoder=encoder)
    module.add(predictions)

    texts = [t for r in results for t in r.narrations]
    refs = [t for r in results for t in r.references]
    sims = np.concatenate([r.similarity for r in results])
    narrations = ndx.create_narrations(
        start_time=start, stop_time=stop, text=[texts[i] for i in order], frame=frames,
        unit_subsets=subsets_table, unit_subset_rows=rows[order], narrator_model=narrator.model_id,
        prompt=getattr(narrator, "prompt", "") or "", reference_text=[refs[i] for i in order],
        similarity=sims[order])
    module.add(narrations)

    config_json, weights, _sha = sae_payload(sae)
    module.add(ndx.create_sparse_autoencoder(
        weights, name="sparse_autoencoder", architecture="TopKSAE", config=config_json,
        concept_labels=concepts.names, concept_label_sources=concepts.methods))
    inverse = np.argsort(order)  # validation rows are in result order; narration rows are sorted
    concepts_col = validation.pop("supporting_concepts")
    module.add(ndx.create_sae_validation(
        narrations=narrations, narration_rows=inverse, scores=validation, supporting_concepts=concepts_col))

    module.add(_fidelity_table(results, baselines, subsets_table, session.units))
    return nwbfile


def _fidelity_table(results, baselines, subsets_table, units):
    import ndx_neurrator as ndx

    rows, n_units, region, cell_type, seed, metric, value, chance = [], [], [], [], [], [], [], []

    def add(i: int, r: SubsetResult, name: str, v: float, c: float) -> None:
        idx = r.subset.unit_idx
        regions = sorted(set(units.region[idx].astype(str)))
        types = sorted(set(units.cell_type[idx].astype(str)))
        rows.append(i), n_units.append(len(idx)), seed.append(-1 if r.subset.seed is None else r.subset.seed)
        region.append(regions[0] if len(regions) == 1 else "mixed")
        cell_type.append(types[0] if len(types) == 1 else "mixed")
        metric.append(name), value.append(float(v)), chance.append(float(c))

    for i, r in enumerate(results):
        for name in EVAL_METRICS:
            v, c = r.metrics[name]
            add(i, r, name, v, c)
        add(i, r, "narration_similarity", r.similarity.mean(), r.shuffled.mean())
        add(i, r, "narration_floor", r.floor.mean(), np.nan)
        if r.subset.kind == "all":
            for base, metrics in baselines.items():
                for name in EVAL_METRICS:
                    v, c = metrics[name]
                    add(i, r, f"{base}:{name}", v, c)
    return ndx.create_decoding_fidelity(
        unit_subsets=subsets_table, unit_subset_rows=rows, n_units=n_units, region=region, cell_type=cell_type,
        seed=seed, split="test", metric=metric, value=value, chance_level=chance)


def run_demo(out: Path, *, seed: int = 0, progress: bool = True) -> NarrateResult:
    """The pipeline on the embedded simulated session with the offline tiny models and retrieval narrator."""
    from neurrator.simulate import write_simulated_session

    out = Path(out)
    from neurrator.nwb_out import check_writable_dir

    check_writable_dir(out)
    source = out / "source" / f"sub-sim{seed}_ses-demo.nwb"
    if not source.is_file():
        source.parent.mkdir(parents=True, exist_ok=True)
        log.info("simulating a session into %s", source)
        write_simulated_session(source, seed=seed)
    config = NarrateConfig(backbone="tiny", narrator="retrieval", device="cpu", seed=seed, progress=progress,
                           cache_dir=str(out / "cache"), epochs=2)
    return narrate_session(source, out=out / "derived", config=config)


__all__ = ["NarrateResult", "SubsetResult", "narrate_session", "run_demo", "resolve_output"]
