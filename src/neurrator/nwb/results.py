"""Run results (plain objects) -> ndx-neurrator containers added to an in-memory ``NWBFile``.

One ``add_<thing>_to_nwbfile(nwbfile, ...)`` per container, in the style of neuroconv: each takes the
``NWBFile`` (and the containers it references) and returns what it added. File-level pieces (the new
file, subject, units, provenance, atomic write) are in `neurrator.nwb.derived`; nothing here touches disk.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

import numpy as np

from neurrator.data.binning import disjoint_spans
from neurrator.decode.decoding import EVAL_METRICS, Metric, NULL_KINDS, NULL_TESTED
from neurrator.models.checkpoint import checkpoint_payload
from neurrator.nwb.compression import compress_windows, fit_pca_basis
from neurrator.nwb.derived import add_units_to_nwbfile, encoder_config_text, new_derived_nwbfile, stimulus_epochs
from neurrator.sae.autoencoder import sae_payload

__all__ = [
    "build_derived_nwbfile",
    "add_encoder_to_nwbfile",
    "add_fidelity_to_nwbfile",
    "add_frame_thumbnails_to_nwbfile",
    "add_neurration_to_nwbfile",
    "add_narrations_to_nwbfile",
    "add_patch_predictions_to_nwbfile",
    "add_sae_to_nwbfile",
    "add_sae_validation_to_nwbfile",
    "add_unit_subsets_to_nwbfile",
    "narration_rows",
    "thumbnail",
    "window_order",
]


def _module(nwbfile):
    import ndx_neurrator as ndx

    return ndx.get_neurrator_module(nwbfile)


def add_encoder_to_nwbfile(nwbfile, trained, *, units_table, unit_rows: np.ndarray, stimulus: str):
    """The trained encoder as an ``EncoderCheckpoint`` (safetensors weights, config, metrics, target space).

    Parameters
    ----------
    trained
        `neurrator.models.training.TrainedEncoder`.
    units_table
        The derived file's Units table; ``unit_rows`` (n,) are the rows the encoder's units map to.
    """
    import ndx_neurrator as ndx


    payload = checkpoint_payload(trained)
    spec = trained.target_spec
    last = trained.history[-1] if trained.history else {}
    best = min(trained.history, key=lambda h: h.get("val_loss", np.inf)) if trained.history else {}
    encoder = ndx.create_encoder_checkpoint(
        payload.weights, name="encoder", units_table=units_table, unit_rows=unit_rows,
        architecture=payload.architecture, config=encoder_config_text(payload), backbone_id=spec.backbone_id,
        backbone_layer=int(spec.layer), n_patches=int(spec.n_patches), dim=int(spec.dim),
        preprocessing=spec.preprocessing, stimulus=stimulus,
        training_metrics={k: v for k, v in last.items() if isinstance(v, (int, float))},
        validation_metrics={k: v for k, v in best.items() if isinstance(v, (int, float))},
        software_versions=json.loads(payload.metadata_json).get("versions", {}) if payload.metadata_json else None,
    )
    _module(nwbfile).add(encoder)
    return encoder


def add_unit_subsets_to_nwbfile(nwbfile, subsets: Sequence, *, units_table):
    """The unit subsets (label, kind, seed, ragged reference into Units) as a ``UnitSubsetsTable``."""
    import ndx_neurrator as ndx

    table = ndx.create_unit_subsets(list(subsets), units_table=units_table)
    _module(nwbfile).add(table)
    return table


def window_order(results: Sequence, start: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order of all narrated windows by (start time, subset row), and each window's subset row.

    Parameters
    ----------
    results
        `neurrator.decode.decoding.SubsetResult` s (their windows concatenated in result order).
    start
        ``(P,)`` presentation start times of the session.

    Returns
    -------
    order : (W,) int64
        Position in the concatenated windows of each sorted row.
    rows : (W,) int64
        Subset row (index into ``results``) of each concatenated window.
    """
    rows = np.concatenate([np.full(len(r.frames), i) for i, r in enumerate(results)]).astype(np.int64)
    pres = np.concatenate([r.presentations for r in results])
    return np.lexsort((rows, start[pres])).astype(np.int64), rows


#: ``predictions="auto"`` stores compact predictions above this many bytes of float32 patches
AUTO_COMPACT_BYTES = 256 * 2**20
#: compact storage also keeps, in full, the windows whose relative reconstruction error exceeds this ...
FULL_ABOVE_RELATIVE_MSE = 0.05
#: ... at most this fraction of the windows (the worst first) ...
MAX_FULL_FRACTION = 0.1
#: ... and at most this many bytes of them (27 windows of 576 x 1024 float32)
MAX_FULL_BYTES = 64 * 2**20


def add_patch_predictions_to_nwbfile(nwbfile, results: Sequence, presentations, *, order: np.ndarray,
                                     rows: np.ndarray, subsets_table, encoder, storage: str = "full",
                                     rank: int = 64):
    """Predicted patches of every narrated window of every subset, sorted by time, as ``PatchPredictions``.

    ``storage``: ``full`` float32; ``compact``: coefficients in the encoder's own linear readout (stored
    once, in its weights: nothing is added but the coefficients) or, for an encoder without a linear path
    and for ``compact-pca``, in a PCA basis of the windows (``rank``, at most n_windows - 1;
    ``PatchBasis`` ``patch_basis``). Each window's relative MSE and cosine are measured and stored, and the windows above
    `FULL_ABOVE_RELATIVE_MSE` are kept in full beside (worst first, at most `MAX_FULL_FRACTION` of the
    windows and `MAX_FULL_BYTES`); ``auto``: compact above `AUTO_COMPACT_BYTES`.
    """
    import ndx_neurrator as ndx

    pres = np.concatenate([r.presentations for r in results])[order]
    start, stop = presentations.start[pres], presentations.stop[pres]
    predicted = np.concatenate([r.predicted for r in results])[order].astype(np.float32, copy=False)
    common = dict(name="patch_predictions", timestamps=(start + stop) / 2,
                  frame=np.concatenate([r.frames for r in results])[order], unit_subsets=subsets_table,
                  unit_subset_rows=rows[order], encoder=encoder)
    if storage == "auto":
        storage = "compact" if predicted.nbytes > AUTO_COMPACT_BYTES else "full"
    if storage in ("compact", "compact-pca") and len(predicted) >= 2:
        linear = int(encoder.get_config().get("encoder", {}).get("linear_rank") or 0) > 0
        if storage == "compact" and linear:
            components, mean = encoder.readout_basis()
            space, basis = "encoder_readout", None
        else:  # asked for, or no linear path: a PCA basis of the windows themselves
            components, mean = fit_pca_basis(predicted, rank=min(int(rank), len(predicted) - 1))
            space = "patch_basis"
            basis = ndx.create_patch_basis(components, mean=mean, name="patch_basis", kind="pca",
                                           description="PCA basis of the predicted patches of the narrated windows")
            _module(nwbfile).add(basis)
        packed = compress_windows(predicted, components=components, mean=mean)
        full = _full_windows(packed.relative_mse, window_bytes=predicted[0].nbytes)
        container = ndx.create_patch_predictions(
            None, coefficients=packed.coefficients, basis=basis, coefficient_space=space,
            relative_mse=packed.relative_mse, cosine=packed.cosine, full_windows=full, full_data=predicted[full],
            **common)
    else:
        container = ndx.create_patch_predictions(predicted, **common)
    _module(nwbfile).add(container)
    return container


def _full_windows(relative_mse: np.ndarray, *, window_bytes: int) -> np.ndarray:
    """Sorted indices of the windows kept exactly: above `FULL_ABOVE_RELATIVE_MSE`, worst first, within
    `MAX_FULL_FRACTION` of the windows and `MAX_FULL_BYTES`."""
    err = np.nan_to_num(np.asarray(relative_mse, dtype=np.float64), nan=0.0)
    cap = min(int(MAX_FULL_FRACTION * len(err)), MAX_FULL_BYTES // max(int(window_bytes), 1))
    worst = np.argsort(-err, kind="stable")[:cap]
    return np.sort(worst[err[worst] > FULL_ABOVE_RELATIVE_MSE])


def add_narrations_to_nwbfile(nwbfile, results: Sequence, presentations, *, subsets_table, narrator_model: str,
                              prompt: str, windows: tuple[np.ndarray, np.ndarray] | None = None):
    """The narrations as a ``NarrationsCollection``: one ``NarrationsTable`` per unit subset, with the frame,
    text, reference and similarity per window; ``ndx_neurrator.narrations_dataframe`` gives the tidy view.

    Each narration's interval is the decoding window it was narrated from (``windows``: (start, stop) per
    presentation, `neurrator.data.binning.window_spans`; without them the presentation itself), in time
    order and never overlapping, so pynapple reads each table as an IntervalSet: where two windows would
    overlap (narrations closer than a window), both end at the middle of the overlap (`disjoint_spans`).
    """
    import ndx_neurrator as ndx

    tables = {}
    for i, r in enumerate(results):
        start, stop = _narration_intervals(presentations, np.asarray(r.presentations), windows)
        tables[i] = dict(start_time=start, stop_time=stop,
                         text=list(r.narrations), frame=np.asarray(r.frames), narrator_model=narrator_model,
                         prompt=prompt, reference_text=list(r.references), similarity=np.asarray(r.similarity))
    collection = ndx.create_narrations_collection(tables, unit_subsets=subsets_table)
    _module(nwbfile).add(collection)
    return collection


def _narration_intervals(presentations, idx: np.ndarray, windows) -> tuple[np.ndarray, np.ndarray]:
    """(start, stop) of the narrated presentations ``idx`` (in time order): their windows, made disjoint."""
    if windows is None:
        return presentations.start[idx], presentations.stop[idx]
    return disjoint_spans(np.asarray(windows[0])[idx], np.asarray(windows[1])[idx])


def narration_rows(results: Sequence) -> list[tuple[str, int]]:
    """(table name, row) of every narration in result order (the SAE validation rows)."""
    import ndx_neurrator as ndx

    return [(ndx.table_name_for(r.subset.label), j) for r in results for j in range(len(r.narrations))]


def add_sae_to_nwbfile(nwbfile, sae, concepts, *, naming_split: str):
    """The validating TopK SAE (weights, config, a concept name per latent, how and on which frames it
    was named)."""
    import ndx_neurrator as ndx


    config_json, weights, _sha = sae_payload(sae)
    container = ndx.create_sparse_autoencoder(
        weights, name="sparse_autoencoder", architecture="TopKSAE", config=config_json,
        concept_labels=concepts.names, concept_label_sources=concepts.methods, naming_split=naming_split)
    _module(nwbfile).add(container)
    return container


def add_sae_validation_to_nwbfile(nwbfile, validation: dict[str, list], *, narrations, rows: list[tuple[str, int]]):
    """SAE validation scores per narration; ``rows`` are (table name, row) in the collection, in the
    order of the ``validation`` rows (`narration_rows`)."""
    import ndx_neurrator as ndx

    columns = dict(validation)
    supporting = columns.pop("supporting_concepts")
    table = ndx.create_sae_validation(narrations=narrations, narration_rows=rows, scores=columns,
                                      supporting_concepts=supporting)
    _module(nwbfile).add(table)
    return table


def add_fidelity_to_nwbfile(nwbfile, results: Sequence, baselines: dict[str, dict[str, Any]], *,
                            subsets_table, units):
    """One row per (subset, metric): value, chance, 95% CI, permutation p, FDR q, beats-the-null flag, the
    kind of null and its mean (beside the analytic chance); narration rows add the block-shuffled,
    constant-narration and word-salad controls; the baselines (ridge, kNN, shuffled frames) ride on the
    ``all`` subset's rows. Controls (the shuffled frames among them) are never flagged as beating a null."""
    import ndx_neurrator as ndx


    nan = float("nan")
    names = ("row", "n", "region", "cell_type", "seed", "metric", "value", "chance", "lo", "hi", "p", "q", "beats",
             "kind", "null_mean")
    cols: dict[str, list[Any]] = {k: [] for k in names}

    def add(i: int, r, name: str, m: Metric, *, q: float = nan, beats: bool = False, kind: str = "") -> None:
        idx = r.subset.unit_idx
        regions = sorted(set(units.region[idx].astype(str)))
        types = sorted(set(units.cell_type[idx].astype(str)))
        cols["row"].append(i), cols["n"].append(r.subset.n_units)
        cols["seed"].append(-1 if r.subset.seed is None else r.subset.seed)
        cols["region"].append(regions[0] if len(regions) == 1 else "mixed")
        cols["cell_type"].append(types[0] if len(types) == 1 else "mixed")
        for key, v in zip(("metric", "value", "chance", "lo", "hi", "p", "q", "beats", "kind", "null_mean"),
                          (name, m.value, m.chance, m.lo, m.hi, m.p, q, beats, kind, m.null_mean)):
            cols[key].append(v)

    for i, r in enumerate(results):
        for name in (n for n in EVAL_METRICS if n in r.metrics):  # flashed images: no within_1s
            add(i, r, name, r.metrics[name], q=r.q.get(name, nan), beats=r.beats_null.get(name, False),
                kind=getattr(r, "rank_null", NULL_KINDS["rank"]) if name in NULL_TESTED else
                NULL_KINDS["cosine"] if np.isfinite(r.metrics[name].p) else NULL_KINDS["ci"])
        add(i, r, "narration_similarity", r.narration_metric(), q=r.q.get("narration_similarity", nan),
            beats=r.beats_null.get("narration_similarity", False),
            kind=getattr(r.scores, "null_kind", NULL_KINDS["narration"]))
        iv = r.scores.intervals if r.scores is not None else {}
        for control, key in (("narration_shuffled", "shuffled"), ("narration_constant", "constant"),
                             ("narration_floor", "floor")):
            est = iv.get(key)
            values = getattr(r.scores, key) if r.scores is not None else None
            mean = float(np.mean(values)) if values is not None and len(values) else nan
            add(i, r, control, Metric(mean, nan, est.lo if est else nan, est.hi if est else nan),
                kind="control")
        if r.subset.kind == "all":
            for base, metrics in baselines.items():
                for name in (n for n in EVAL_METRICS if n in metrics):
                    m = metrics[name]
                    control = base == "shuffled"  # a control knows nothing by construction: never flagged
                    add(i, r, f"{base}:{name}", m, beats=not control and bool(np.isfinite(m.lo) and m.lo > m.chance),
                        kind="control" if control else NULL_KINDS["ci"])
    table = ndx.create_decoding_fidelity(
        unit_subsets=subsets_table, unit_subset_rows=cols["row"], n_units=cols["n"], region=cols["region"],
        cell_type=cols["cell_type"], seed=cols["seed"], split="test", metric=cols["metric"], value=cols["value"],
        chance_level=cols["chance"], ci_lo=cols["lo"], ci_hi=cols["hi"], p_value=cols["p"], q_value=cols["q"],
        beats_null=cols["beats"], null_kind=cols["kind"], null_mean=cols["null_mean"])
    _module(nwbfile).add(table)
    return table


def _concat(parts: Sequence, field_name: str) -> np.ndarray:
    return np.concatenate([np.asarray(getattr(p, field_name)) for p in parts]) if parts else np.zeros(0)


def add_neurration_to_nwbfile(nwbfile, neurration, *, units_table, unit_rows: np.ndarray) -> list:
    """The per-unit, group and scaling analyses (`neurrator.analysis.run.NeurrationResult`) as
    UnitNeurrationTable, ConceptTuningTable, GroupComparisonTable, GroupSeparationTable and ScalingTable.

    ``unit_rows`` maps the analyses' unit index (rows of the session's units) to rows of ``units_table``.
    """
    import ndx_neurrator as ndx

    added = []
    u = dict(neurration.units)
    rows = np.asarray(unit_rows)[np.asarray(u.pop("unit"), dtype=np.int64)]
    added.append(ndx.create_unit_neurration(units_table=units_table, unit_rows=rows, **u))
    t = neurration.tuning
    if len(t["unit"]):
        added.append(ndx.create_concept_tuning(
            units_table=units_table, unit_rows=np.asarray(unit_rows)[np.asarray(t["unit"], dtype=np.int64)],
            concept=list(t["concept"]), r=t["r"], p=t["p"], q=t["q"], significant=t["significant"]))
    comparisons = [c for c in neurration.comparisons if len(c.group)]
    if comparisons:
        cols = {f: _concat(comparisons, f) for f in comparisons[0]._fields}
        added.append(ndx.create_group_comparison(**{k: (list(v.astype(str)) if v.dtype.kind in "OUS" else v)
                                                    for k, v in cols.items()}))
    separations = [s for s in neurration.separations if len(s.analysis)]
    if separations:
        blank = {"fidelity": np.nan, "fidelity_q": np.nan, "status": "", "null_kind": ""}  # optional columns
        separations = [s._replace(**{f: np.full(len(s.analysis), v) for f, v in blank.items() if getattr(s, f) is None})
                       for s in separations]
        cols = {f: _concat(separations, f) for f in separations[0]._fields}
        added.append(ndx.create_group_separation(**{k: (list(v.astype(str)) if v.dtype.kind in "OUS" else v)
                                                    for k, v in cols.items()}))
    if neurration.scaling:
        fields = ("region", "n_units", "metric", "value", "ci_lo", "ci_hi", "n_draws", "baseline", "crossing_n",
                  "crossing_lo", "crossing_hi", "crossing_note")
        cols = {f: _concat(neurration.scaling, f) for f in fields}
        added.append(ndx.create_scaling(**{k: (list(v.astype(str)) if v.dtype.kind in "OUS" else v)
                                           for k, v in cols.items()}))
    if neurration.cards is not None and neurration.cards.n:
        added.append(concept_cards_table(neurration.cards, units_table=units_table, unit_rows=np.asarray(unit_rows)))
    if neurration.skipped:
        added.append(_skipped_table(neurration.skipped))
    module = _module(nwbfile)
    for container in added:
        module.add(container)
    return added


def _ragged(name: str, description: str, items: Sequence[np.ndarray], *, dtype, table=None) -> list:
    """(VectorIndex, data) of a ragged column; [] when every item is empty (hdmf and nwbinspector trip on an
    empty data column)."""
    from hdmf.common import DynamicTableRegion, VectorData, VectorIndex

    flat = np.concatenate([np.asarray(x, dtype=dtype) for x in items]) if len(items) else np.zeros(0, dtype)
    if flat.size == 0:
        return []
    target = (VectorData(name=name, description=description, data=flat) if table is None else
              DynamicTableRegion(name=name, description=description, data=flat, table=table))
    ends = np.cumsum([len(x) for x in items]).astype(np.int64)
    return [VectorIndex(name=f"{name}_index", data=ends, target=target), target]


def concept_cards_table(cards, *, units_table, unit_rows: np.ndarray):
    """The concept cards of the unnamed SAE latents (`neurrator.analysis.concept_cards.ConceptCards`) as a
    DynamicTable ``concept_cards``: latent, why it is unnamed, frames active, top frames and the units whose
    response follows it most (rows of the Units table) with their descriptive r."""
    from hdmf.common import DynamicTable, VectorData

    columns = [VectorData(name="latent", description="SAE latent index", data=np.asarray(cards.latent, np.int64)),
               VectorData(name="why_unnamed", description="why the SAE gave the latent no name",
                          data=[str(w) for w in cards.why_unnamed]),
               VectorData(name="frames_active", description="stimulus frames where the latent is active (true patches)",
                          data=np.asarray(cards.frames_active, np.int64))]
    columns += _ragged("top_frames", "stimulus frames where the latent is most active, strongest first",
                       cards.top_frames, dtype=np.int64)
    columns += _ragged("top_units", "units whose trial-averaged response follows the latent most (rows of Units)",
                       [np.asarray(unit_rows)[np.asarray(u, np.int64)] for u in cards.top_units], dtype=np.int64,
                       table=units_table)
    columns += _ragged("top_unit_r", "Pearson r of each top unit's response with the latent over training frames "
                       "(descriptive, no test)", cards.top_unit_r, dtype=np.float64)
    return DynamicTable(name="concept_cards", columns=columns, id=np.arange(cards.n),
                        description="concept cards of SAE latents without a name: what each looks like (top "
                                    "frames) and which units follow it, so that a person can name it")


def _skipped_table(skipped: dict[str, str]):
    """The analyses a run did not do and why (a DynamicTable ``skipped_analyses``)."""
    from hdmf.common import DynamicTable, VectorData

    return DynamicTable(name="skipped_analyses", id=np.arange(len(skipped)),
                        description="analyses this run skipped, and why",
                        columns=[VectorData(name="analysis", description="the analysis", data=list(skipped)),
                                 VectorData(name="reason", description="why it was skipped",
                                            data=list(skipped.values()))])


def thumbnail(frame: np.ndarray, *, height: int = 64) -> np.ndarray:
    """A (H, W) or (H, W, 3) uint8 frame shrunk by an integer factor to about ``height`` rows (block means,
    aspect and colour kept).

    Examples
    --------
    >>> thumbnail(np.arange(16, dtype=np.uint8).reshape(4, 4), height=2).tolist()
    [[2, 4], [10, 12]]
    """
    f = np.asarray(frame, dtype=np.float64)
    step = max(1, f.shape[0] // height)
    h, w = (f.shape[0] // step) * step, (f.shape[1] // step) * step
    small = f[:h, :w].reshape(h // step, step, w // step, step, *f.shape[2:]).mean(axis=(1, 3))
    return np.clip(np.round(small), 0, 255).astype(np.uint8)


def add_frame_thumbnails_to_nwbfile(nwbfile, frames: np.ndarray, frame_ids: Sequence[int], *, height: int = 64):
    """Small grayscale copies of the stimulus frames the results refer to (narrated windows, units' top
    frames) as ``processing/neurrator/frame_thumbnails`` (an ``Images`` of ``frame_<index>``), so the
    report can show them from the derived file alone."""
    from pynwb.base import Images
    from pynwb.image import GrayscaleImage, RGBImage

    ids = sorted({int(f) for f in frame_ids if 0 <= int(f) < len(frames)})
    kind = RGBImage if np.ndim(frames[0]) == 3 else GrayscaleImage  # colour frames keep their colour
    images = [kind(name=f"frame_{f}", data=thumbnail(frames[f], height=height),
                   description=f"stimulus frame {f}, shrunk by block means")
              for f in ids]
    container = Images(name="frame_thumbnails", images=images,
                       description="stimulus frames referred to by the results, shrunk for the report")
    _module(nwbfile).add(container)
    return container


def build_derived_nwbfile(session, *, provenance: str, trained, results: Sequence, baselines: dict, sae, concepts,
                          naming_split: str, validation: dict[str, list], neurration, narrator,
                          units_resolution: float | None, predictions: str = "full", predictions_rank: int = 64,
                          windows: tuple[np.ndarray, np.ndarray] | None = None):
    """The whole derived ``NWBFile`` of a run: subject, session and units of the source, provenance, and every
    ndx-neurrator container (`add_<thing>_to_nwbfile` each), in memory. ``windows``: (start, stop) seconds
    of each presentation's decoding window (`neurrator.data.binning.window_spans`), the narrations' intervals."""
    units = session.units
    nwbfile = new_derived_nwbfile(session, provenance=provenance)
    units_table = add_units_to_nwbfile(nwbfile, units, epochs=stimulus_epochs(session.presentations),
                                       resolution=units_resolution)
    unit_rows = (trained.unit_rows(units.ids) if len(trained.unit_ids) == len(units.ids)
                 else np.arange(len(units.ids)))
    encoder = add_encoder_to_nwbfile(nwbfile, trained, units_table=units_table, unit_rows=unit_rows,
                                     stimulus=session.stimulus)
    subsets_table = add_unit_subsets_to_nwbfile(nwbfile, [r.subset for r in results], units_table=units_table)
    order, rows = window_order(results, session.presentations.start)
    add_patch_predictions_to_nwbfile(nwbfile, results, session.presentations, order=order, rows=rows,
                                     subsets_table=subsets_table, encoder=encoder, storage=predictions,
                                     rank=predictions_rank)
    narrations = add_narrations_to_nwbfile(nwbfile, results, session.presentations, subsets_table=subsets_table,
                                           narrator_model=narrator.model_id, windows=windows,
                                           prompt=getattr(narrator, "prompt", "") or "")
    add_sae_to_nwbfile(nwbfile, sae, concepts, naming_split=naming_split)
    add_sae_validation_to_nwbfile(nwbfile, validation, narrations=narrations, rows=narration_rows(results))
    add_fidelity_to_nwbfile(nwbfile, results, baselines, subsets_table=subsets_table, units=units)
    shown = [int(f) for r in results for f in r.frames]
    if neurration is not None:
        add_neurration_to_nwbfile(nwbfile, neurration, units_table=units_table, unit_rows=np.arange(len(units.ids)))
        shown += [int(f) for frames in neurration.units["top_frames"] for f in frames]
        if neurration.cards is not None:
            shown += [int(f) for frames in neurration.cards.top_frames for f in frames]
    add_frame_thumbnails_to_nwbfile(nwbfile, session.frames, shown)
    return nwbfile
