"""Trained encoder + SAE concepts + narrator -> what single units, regions and cell types encode.

The analyses of one session, in three parts that share one cache of encoder predictions
(`PredictionCache`); each step is a function of `neurrator.analysis.single_units`,
`neurrator.analysis.contribution`, `neurrator.analysis.groups` or `neurrator.analysis.scaling`, and this
module only builds their inputs from the run's objects (`AnalysisInputs`) and collects their results:

1. `unit_analyses`: per unit, the reliability gate, the preferred stimulus narrated, top frames and
   concept tuning with hierarchical FDR (correlational); in the model, the leave-one-out loss of fidelity
   within the unit's region and the narration of the encoder driven by the unit alone (causal in the model
   only);
2. `group_analyses`: per group, concepts enriched in the units' tuning and in the decoded patches against
   random pools; narrations' similarity within vs between groups; a cross-validated classifier of the
   source group from narration text alone;
3. `scaling_analyses`: per region, fidelity and narration similarity vs population size over random draws
   per size, and the smallest size at which the region beats its shuffled baseline, with a CI.

`neurrate_session` runs the three in this order with the run's `AnalysisConfig`. Everything is evaluated
on an evenly spaced subset of the held-out test windows (``config.eval_windows``) to bound the cost: each
leave-one-out unit, null pool and scaling draw is one encoder pass.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from neurrator.io.progress import Progress, progress_iter
from neurrator.component_config import AnalysisConfig
from neurrator.analysis import contribution, groups, scaling, separation
from neurrator.analysis.concept_cards import ConceptCards, concept_cards
from neurrator.analysis.single_units import neurrate_units
from neurrator.data.responses import TrialResponses
from neurrator.decode.fidelity import patch_cosines
from neurrator.models.prediction import predict, predict_windows
from neurrator.sae.autoencoder import frame_latents
from neurrator.stats.resampling import block_permutation, scene_blocks

log = logging.getLogger(__name__)

__all__ = ["AnalysisInputs", "NeurrationResult", "PredictionCache", "UNNAMED_REASON", "concept_activations",
           "evaluation_windows", "group_analyses", "neurrate_session", "scaling_analyses", "unit_analyses"]

#: Why concept tuning and enrichment are skipped when the SAE names no concept (written to the file and report).
UNNAMED_REASON = ("the SAE named no concept (no caption vocabulary, or no term followed any latent): concept "
                  "tuning and concept enrichment need concept names; see the concept cards to name them")


@dataclass
class NeurrationResult:
    """Plain results of `neurrate_session`, one attribute per ndx-neurrator table."""

    units: dict[str, Any]  # UnitNeurrationTable columns (unit = row index into Session.units)
    tuning: dict[str, np.ndarray]  # ConceptTuningTable columns (unit = row index)
    comparisons: list = field(default_factory=list)  # groups.GroupComparison
    separations: list = field(default_factory=list)  # groups.GroupSeparation
    scaling: list = field(default_factory=list)  # scaling.ScalingCurve
    concept_names: list[str] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)  # choices and sizes, for the provenance
    cards: ConceptCards | None = None  # concept_cards.ConceptCards of the unnamed concepts
    skipped: dict[str, str] = field(default_factory=dict)  # analysis -> why it was not run


@dataclass(frozen=True)
class AnalysisInputs:
    """What the analyses read from a run (all computed before them; nothing here is opened or written).

    Attributes
    ----------
    responses
        Trial responses on the training repeats (`neurrator.data.responses.TrialResponses`).
    trained
        The trained encoder (`neurrator.models.training.TrainedEncoder`).
    binned, split
        The binned counts (`neurrator.data.binning.Binned`) and their train / validation / test split.
    targets
        ``(F, P, D)`` true patch tokens, one map per movie frame.
    sae, concepts
        The validating SAE and its concept names (named from training frames only).
    units
        `neurrator.data.units_table.Units`: region and cell type per column of ``binned.counts``.
    narrate, embed
        The narrator (patches -> texts) and the sentence embedder (texts -> unit-norm rows).
    subset_results
        `neurrator.decode.decoding.SubsetResult` s (their narrations feed the separation and classifier).
    references
        Movie frame -> reference text (narration similarity in the scaling curves).
    block_frames
        Scene-block length in frames for the bootstrap and permutation blocks, and the smallest circular
        shift of the tuning null (1 s of a movie; 1 for flashed images, which are independent items).
    train_mean
        ``(P, D)`` training mean map (centres the per-window cosine); None: the mean of ``targets``.
    shots
        ``(F,)`` shot id of each movie frame (`neurrator.data.shots.detect_shots`): the concept-tuning null
        rotates whole shots as well as shifting frames; None for flashed images (independent items).
    reliability
        The units' reliability computed by the run (`neurrator.data.responses.unit_reliability_for`), used
        as the gate; None: split-half over the training repeats of ``responses`` (needs 2 repeats).
    """

    responses: TrialResponses
    trained: Any
    binned: Any
    split: Any
    targets: np.ndarray
    sae: Any
    concepts: Any
    units: Any
    narrate: Callable[[np.ndarray], list[str]]
    embed: Callable[[Sequence[str]], np.ndarray]
    subset_results: Sequence
    references: dict[int, str]
    block_frames: int = 30
    train_mean: np.ndarray | None = None
    shots: np.ndarray | None = None
    reliability: Any = None


def evaluation_windows(test: np.ndarray, k: int) -> np.ndarray:
    """At most ``k`` presentations spread evenly over the test presentations (sorted).

    >>> evaluation_windows(np.arange(10, 20), 4).tolist()
    [10, 13, 16, 19]
    """
    test = np.asarray(test, dtype=np.int64)
    if len(test) <= k:
        return test
    return test[np.unique(np.linspace(0, len(test) - 1, num=k).round().astype(np.int64))]


def concept_activations(latents: np.ndarray, names: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """(F, n_latents) SAE frame activations -> (F, K) one column per distinct concept name (the mean of
    the latents sharing it), and the K names; unnamed latents are dropped.

    >>> acts, names = concept_activations(np.array([[1.0, 3.0, 5.0]]), ["car", "", "car"])
    >>> acts.tolist(), names
    ([[3.0]], ['car'])
    """
    distinct = sorted({n for n in names if n})
    cols = [latents[:, [i for i, n in enumerate(names) if n == c]].mean(axis=1) for c in distinct]
    acts = np.stack(cols, axis=1) if cols else np.zeros((latents.shape[0], 0), np.float32)
    return acts.astype(np.float32), distinct


class PredictionCache:
    """The encoder's predictions for (unit subset, windows), kept until cleared (at most ``limit`` entries).

    One encoder pass per leave-one-out unit, null pool and scaling draw; the cache lets the three parts of
    the analyses reuse a subset's prediction instead of recomputing it.
    """

    def __init__(self, trained, binned, *, device: str, limit: int = 64) -> None:
        self.trained, self.binned, self.device, self.limit = trained, binned, device, limit
        self._store: dict[tuple[bytes, bytes], np.ndarray] = {}

    def __call__(self, idx: np.ndarray, windows: np.ndarray) -> np.ndarray:
        """``(len(windows), P, D)`` predictions of the units ``idx`` (rows of ``binned.counts``)."""
        idx = np.asarray(idx, dtype=np.int64)
        windows = np.asarray(windows, dtype=np.int64)
        key = (idx.tobytes(), windows.tobytes())
        if key not in self._store:
            if len(self._store) >= self.limit:
                self._store.clear()
            self._store[key] = predict(self.trained, self.binned, windows, unit_idx=idx, device=self.device)
        return self._store[key]

    def clear(self) -> None:
        self._store.clear()


def _groups(units, kind: str, *, min_units: int) -> dict[str, np.ndarray]:
    values = units.region if kind == "region" else units.cell_type
    out = {}
    for name in sorted({str(v) for v in values if str(v) not in ("", "unknown", "nan", "None")}):
        idx = np.flatnonzero(values.astype(str) == name)
        if len(idx) >= min_units:
            out[name] = idx.astype(np.int64)
    return out


@dataclass
class _Windows:
    """The evaluation windows (scaling) and their probe subset (leave-one-out, decoded pools)."""

    win: np.ndarray
    blocks: np.ndarray
    truth: np.ndarray
    pwin: np.ndarray
    pblocks: np.ndarray
    ptruth: np.ndarray
    mean_map: np.ndarray

    @classmethod
    def of(cls, inputs: AnalysisInputs, config: AnalysisConfig) -> "_Windows":
        win = evaluation_windows(inputs.split.test, config.eval_windows)
        pwin = evaluation_windows(win, config.probe_windows)
        frames, pframes = inputs.binned.frame[win], inputs.binned.frame[pwin]
        mean_map = inputs.targets.mean(axis=0) if inputs.train_mean is None else inputs.train_mean
        return cls(win=win, blocks=scene_blocks(frames, block_frames=inputs.block_frames),
                   truth=inputs.targets[frames], pwin=pwin,
                   pblocks=scene_blocks(pframes, block_frames=inputs.block_frames), ptruth=inputs.targets[pframes],
                   mean_map=mean_map)


def unit_analyses(inputs: AnalysisInputs, *, config: AnalysisConfig, cache: PredictionCache, windows: _Windows,
                  regions: dict[str, np.ndarray], acts: np.ndarray, names: list[str], device: str,
                  seed: int) -> tuple[Any, dict[str, Any]]:
    """Per-unit neurration (`neurrate_units`) and, with ``config.contributions``, the leave-one-out and
    drive probes; returns the `UnitNeurration` and the UnitNeurrationTable columns."""
    units = inputs.units
    neur = neurrate_units(inputs.responses, inputs.targets, acts, names, narrate=inputs.narrate,
                          unit_ids=np.arange(len(units.ids)), n_perm=config.n_perm, min_shift=inputs.block_frames,
                          shots=inputs.shots, reliability=inputs.reliability, seed=seed)

    def fidelity(idx: np.ndarray) -> np.ndarray:
        return patch_cosines(cache(idx, windows.pwin), windows.ptruth, mean_map=windows.mean_map)

    loo = drive = None
    if config.contributions:
        loo = contribution.leave_one_out(regions, fidelity, blocks=windows.pblocks, n_boot=config.n_boot,
                                         n_perm=config.n_perm, seed=seed)
        cache.clear()
        trained, binned = inputs.trained, inputs.binned
        drive = contribution.drive_narrations(
            regions, inputs.responses.bin_mean, inputs.responses.bin_sd,
            predict_windows=lambda w, idx: predict_windows(trained, w, binned.unit_ids[idx], device=device),
            narrate=inputs.narrate, embed=inputs.embed, window_bins=trained.train_config.window_bins,
            n_null=config.drive_null, seed=seed)
    return neur, contribution.unit_table(neur, loo=loo, drive=drive)


def group_analyses(inputs: AnalysisInputs, result: NeurrationResult, *, config: AnalysisConfig,
                   cache: PredictionCache, windows: _Windows, regions: dict[str, np.ndarray], tuning_r: np.ndarray,
                   min_units: int, device: str, seed: int) -> None:
    """Tuning and decoded enrichment, narration separation and the text classifiers, per region and cell
    type; appended to ``result.comparisons`` and ``result.separations``.

    Every group is compared with random pools of units matched to it (its size; cell types: its regions)
    put through the same steps: the decoded-enrichment pools are re-decoded on the probe windows
    (``config.null_pools`` per group), the separation and classifier pools re-decoded and narrated on the
    narrated windows (``config.separation_pools`` draws), and the pools' statistics regressed on their
    fidelity (`neurrator.analysis.groups`, `neurrator.analysis.separation`)."""
    units, concepts, sae = inputs.units, inputs.concepts, inputs.sae
    names = result.concept_names
    named_idx = [i for i, n in enumerate(concepts.names) if n]
    named = [concepts.names[i] for i in named_idx]
    region_of = units.region.astype(str)

    def concepts_of(patches: np.ndarray) -> np.ndarray:
        return concept_activations(frame_latents(sae, patches, device=device)[:, named_idx], named)[0]

    def decode(idx: np.ndarray) -> tuple[np.ndarray, float]:
        pred = cache(idx, windows.pwin)
        return concepts_of(pred), float(np.mean(patch_cosines(pred, windows.ptruth, mean_map=windows.mean_map)))

    big_regions = {g: i for g, i in regions.items() if len(i) >= min_units}
    cell_types = _groups(units, "cell_type", min_units=min_units)
    if names:
        result.comparisons.append(groups.tuning_enrichment(tuning_r, big_regions, names, group_kind="region",
                                                           n_boot=config.n_boot, seed=seed))
        result.comparisons.append(groups.tuning_enrichment(tuning_r, cell_types, names, group_kind="cell_type",
                                                           strata=region_of, n_boot=config.n_boot, seed=seed))
        truth = concepts_of(windows.ptruth)
        step = float(np.median(np.diff(windows.pwin))) if len(windows.pwin) > 1 else 1.0  # frames per probe window
        shots = None if inputs.shots is None else inputs.shots[inputs.binned.frame[windows.pwin]]
        for kind, grp in (("region", big_regions), ("cell_type", cell_types)):
            if grp:
                result.comparisons.append(groups.decoded_enrichment(
                    grp, decode, names, truth=truth, n_units=len(units.ids), blocks=windows.pblocks, group_kind=kind,
                    strata=region_of if kind == "cell_type" else None, n_pools=config.null_pools,
                    min_shift=max(1, int(np.ceil(inputs.block_frames / max(step, 1.0)))), shots=shots,
                    n_boot=config.n_boot, seed=seed))
                cache.clear()
    result.separations.extend(_subset_separations(inputs, config=config, region_of=region_of, device=device,
                                                  seed=seed))
    result.separations.extend(_preferred_classifiers(inputs, result, {"region": big_regions, "cell_type": cell_types},
                                                     config=config, region_of=region_of, seed=seed))


def _subset_separations(inputs: AnalysisInputs, *, config: AnalysisConfig, region_of: np.ndarray, device: str,
                        seed: int) -> list:
    """Narration separation and the text classifier of the region and cell-type subsets' narrations, against
    ``config.separation_pools`` draws of matched pools re-decoded and narrated on the same windows."""
    out = []
    binned, embed, narrate, trained = inputs.binned, inputs.embed, inputs.narrate, inputs.trained
    rng = np.random.default_rng(seed + 104729)
    for kind in ("region", "cell_type"):
        rows = [r for r in inputs.subset_results if r.subset.kind == kind]
        if len(rows) < 2:
            continue
        narrated = rows[0].presentations
        k = len(narrated)
        labels = np.concatenate([[r.subset.group] * len(r.narrations) for r in rows])
        strata = np.concatenate([np.arange(len(r.narrations)) for r in rows])
        ref = np.asarray(embed([inputs.references[int(f)] for f in binned.frame[narrated]]), dtype=np.float64)
        emb = np.asarray(embed([t for r in rows for t in r.narrations]), dtype=np.float64)
        fid_items = np.sum(emb * ref[strata], axis=1)
        pools, pool_fid = [], []
        members = {r.subset.group: np.asarray(r.subset.unit_idx, np.int64) for r in rows}
        for _ in range(config.separation_pools):
            draw = separation.disjoint_pools(members, n_units=len(inputs.units.ids),
                                             strata=region_of if kind == "cell_type" else None, seed=rng)
            texts = [t for r in rows for t in narrate(predict(trained, binned, narrated, unit_idx=draw[r.subset.group],
                                                              device=device))[:k]]
            e = np.asarray(embed(texts), dtype=np.float64)
            pools.append(e)
            pool_fid.append(np.sum(e * ref[strata], axis=1))
        fidelity = {r.subset.group: (r.narration_metric().value, r.q.get("narration_similarity", np.nan))
                    for r in rows}
        ok = {r.subset.group: bool(r.beats_null.get("narration_similarity", False)) for r in rows}
        kw = dict(group_kind=kind, strata=strata, pools=pools, item_fidelity=fid_items,
                  pool_item_fidelity=np.asarray(pool_fid), interpretable=ok, seed=seed)
        out.append(separation.narration_separation(emb, labels, fidelity=fidelity, n_boot=config.n_boot, **kw))
        out.append(separation.classify_groups(emb, labels, **kw))
    return out


def _preferred_classifiers(inputs: AnalysisInputs, result: NeurrationResult, kinds: dict[str, dict[str, np.ndarray]],
                           *, config: AnalysisConfig, region_of: np.ndarray, seed: int) -> list:
    """The classifier on the units' own narrations (their preferred stimuli, one text per visually driven
    unit, each unit its own fold item), against ``config.n_perm`` draws of disjoint pools of driven units
    (cell types: from the same regions) standing for the groups: a relabelling of the units that keeps
    each group's size and regions."""
    out = []
    texts_u = [str(t) for t in result.units["preferred_text"]]
    has_text = np.array([bool(t) for t in texts_u])
    if not has_text.any():
        return out
    with_text = np.flatnonzero(has_text)
    emb = np.asarray(inputs.embed([texts_u[i] for i in with_text]), dtype=np.float64)
    E = np.zeros((len(texts_u), emb.shape[1]))  # one row per unit (zeros: no text, never drawn)
    E[with_text] = emb
    rng = np.random.default_rng(seed + 7)
    for kind, grp in kinds.items():
        members = {g: idx[has_text[idx]] for g, idx in grp.items()}
        members = {g: idx for g, idx in members.items() if len(idx)}
        if len(members) < 2:
            continue
        order = list(members)
        labels = np.concatenate([[g] * len(members[g]) for g in order])
        strata = region_of if kind == "cell_type" else None
        pools = []
        for _ in range(config.n_perm):
            draw = separation.disjoint_pools(members, n_units=len(texts_u), strata=strata, eligible=has_text, seed=rng)
            pools.append(np.concatenate([E[draw[g]] for g in order]))
        obs = np.concatenate([E[members[g]] for g in order])
        out.append(separation.classify_groups(obs, labels, group_kind=kind, pools=pools, seed=seed,
                                              analysis="text_classifier_accuracy:preferred_stimulus"))
    return out


def scaling_analyses(inputs: AnalysisInputs, *, config: AnalysisConfig, cache: PredictionCache, windows: _Windows,
                     regions: dict[str, np.ndarray], device: str, seed: int) -> list:
    """Per region: centred cosine on the evaluation windows and narration similarity on the narrated ones,
    over random draws per population size (`neurrator.analysis.scaling.ScalingCurve` s)."""
    binned, trained, embed, narrate = inputs.binned, inputs.trained, inputs.embed, inputs.narrate
    win, truth, mean_map = windows.win, windows.truth, windows.mean_map
    perm = block_permutation(len(win), windows.blocks, seed=seed)
    narrated = inputs.subset_results[0].presentations if inputs.subset_results else win[:0]
    nar_frames = binned.frame[narrated]
    nar_blocks = scene_blocks(nar_frames, block_frames=inputs.block_frames)
    nar_perm = block_permutation(len(narrated), nar_blocks, seed=seed)
    ref_emb = (np.asarray(embed([inputs.references[int(f)] for f in nar_frames]), dtype=np.float64)
               if len(narrated) else np.zeros((0, 1)))
    curves = []
    for region, idx in progress_iter(regions.items(), desc="scaling", bars=False, unit="regions"):
        sizes = [s for s in config.scaling_sizes if s <= len(idx)]
        if not sizes:
            continue
        draws = scaling.population_draws(idx, sizes, n_draws=config.scaling_draws, seed=seed)
        sizes = sorted(draws)
        D = max(len(v) for v in draws.values())
        cos, cos_base = np.full((2, len(sizes), D, len(win)), np.nan)
        sim, sim_base = np.full((2, len(sizes), D, len(narrated)), np.nan)
        for i, size in enumerate(sizes):
            for j, d in enumerate(draws[size]):
                p = cache(d, win)
                cos[i, j] = patch_cosines(p, truth, mean_map=mean_map)
                cos_base[i, j] = patch_cosines(p, truth[perm], mean_map=mean_map)
                if len(narrated):
                    e = np.asarray(embed(narrate(predict(trained, binned, narrated, unit_idx=d, device=device))),
                                   dtype=np.float64)
                    sim[i, j] = np.sum(e * ref_emb, axis=1)
                    sim_base[i, j] = np.sum(e * ref_emb[nar_perm], axis=1)
            cache.clear()
        sz = np.asarray(sizes)
        curves.append(scaling.scaling_curve(cos, cos_base, sizes=sz, blocks=windows.blocks, region=region,
                                            metric="centred_patch_cosine", n_boot=config.n_boot,
                                            n_perm=config.n_perm, seed=seed))
        if len(narrated) >= 2:
            curves.append(scaling.scaling_curve(sim, sim_base, sizes=sz, blocks=nar_blocks, region=region,
                                                metric="narration_similarity", n_boot=config.n_boot,
                                                n_perm=config.n_perm, seed=seed))
    return curves


def neurrate_session(inputs: AnalysisInputs, *, config: AnalysisConfig, min_units: int, device: str,
                     seed: int) -> NeurrationResult:
    """Run the per-unit, per-group and scaling analyses of one session.

    Parameters
    ----------
    inputs
        The run's objects (`AnalysisInputs`).
    config
        The run's `AnalysisConfig`, whole: windows, null pools, resamples, scaling sizes and draws, and
        whether to run the contribution probes.
    min_units
        Groups (regions, cell types) smaller than this are not analysed as groups (the subsets' own
        ``SubsetPlan.min_units``).
    device, seed
        Where the encoder runs; the seed of every resampling.
    """
    seed = int(seed)
    lat = frame_latents(inputs.sae, inputs.targets, device=device)
    acts, names = concept_activations(lat, inputs.concepts.names)
    log.info("neurration: %d units x %d concepts", len(inputs.units.ids), len(names))
    windows = _Windows.of(inputs, config)
    cache = PredictionCache(inputs.trained, inputs.binned, device=device)
    regions = _groups(inputs.units, "region", min_units=2)
    notes: dict[str, Any] = {"concepts": names, "eval_windows": int(len(windows.win)), "n_pools": config.null_pools,
                             "n_boot": config.n_boot, "n_perm": config.n_perm, "scaling_draws": config.scaling_draws,
                             "probe_windows": int(len(windows.pwin)), "separation_pools": config.separation_pools,
                             "shots": None if inputs.shots is None else int(len(np.unique(inputs.shots)))}
    skipped = {}
    if len(names) == 0:
        skipped = {"concept_tuning": UNNAMED_REASON, "concept_enrichment": UNNAMED_REASON}
        log.warning("%s; the other analyses run", UNNAMED_REASON)
    beat = Progress(3, desc="neurration", bars=False, unit="parts (units, groups, scaling)")  # log lines, time left
    neur, unit_table = unit_analyses(inputs, config=config, cache=cache, windows=windows, regions=regions, acts=acts,
                                     names=names, device=device, seed=seed)
    beat.update()
    cards = concept_cards(lat, inputs.concepts.names, inputs.concepts.methods, mean_response=inputs.responses.mean,
                          frames=inputs.responses.frames, min_separation=inputs.block_frames)
    result = NeurrationResult(units=unit_table, tuning=neur.tuning_rows(), concept_names=names, notes=notes,
                              cards=cards, skipped=skipped)
    group_analyses(inputs, result, config=config, cache=cache, windows=windows, regions=regions,
                   tuning_r=neur.tuning.r, min_units=min_units, device=device, seed=seed)
    beat.update()
    result.scaling.extend(scaling_analyses(inputs, config=config, cache=cache, windows=windows, regions=regions,
                                           device=device, seed=seed))
    beat.update()
    beat.close()
    return result
