"""Trained encoder + SAE concepts + narrator -> what single units, regions and cell types encode.

The sequence of the issue-9 analyses over one session (each step is a function of
`neurrator.analysis.single_units`, `neurrator.analysis.contribution`, `neurrator.analysis.groups` or `neurrator.analysis.scaling`; this module
only builds their inputs from the run's objects and collects their results):

1. per unit (`neurration.neurrate_units`): reliability gate, preferred stimulus narrated, top frames,
   concept tuning with circular-shift p and hierarchical FDR (correlational);
2. per unit, in the model (`contribution`): leave-one-out loss of fidelity within its region and the
   narration of the encoder driven by the unit alone (causal in the model only);
3. per group (`groups`): concepts enriched in the units' tuning and in the decoded patches against
   size-matched random pools; narrations' similarity within vs between groups; a cross-validated
   classifier of the source group from narration text alone, with chance and a permutation p;
4. per region (`scaling`): fidelity and narration similarity vs population size, several random draws
   per size, and the smallest size at which the region beats its shuffled baseline, with a CI.

Everything is evaluated on an evenly spaced subset of the held-out test windows (``eval_windows``) to
bound the cost: each leave-one-out unit, null pool and scaling draw is one encoder pass.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["NeurrationResult", "concept_activations", "evaluation_windows", "neurrate_session", "unit_reliability_for"]


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


def evaluation_windows(test: np.ndarray, k: int) -> np.ndarray:
    """At most ``k`` presentations spread evenly over the test presentations (sorted)."""
    test = np.asarray(test, dtype=np.int64)
    if len(test) <= k:
        return test
    return test[np.unique(np.linspace(0, len(test) - 1, num=k).round().astype(np.int64))]


def concept_activations(latents: np.ndarray, names: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """(F, n_latents) SAE frame activations -> (F, K) one column per distinct concept name (the mean of
    the latents sharing it), and the K names; unnamed latents are dropped."""
    distinct = sorted({n for n in names if n})
    cols = [latents[:, [i for i, n in enumerate(names) if n == c]].mean(axis=1) for c in distinct]
    acts = np.stack(cols, axis=1) if cols else np.zeros((latents.shape[0], 0), np.float32)
    return acts.astype(np.float32), distinct


def unit_reliability_for(binned, split, *, offset_bins: int, seed: int, flashed: bool = False,
                         min_shift: int = 30):
    """Trial responses on the training repeats and each unit's reliability (for picking single units);
    ``(responses, None)`` with fewer than 2 training repeats, where split-half reliability is undefined.

    Movies: each frame's own bins, lagged by ``offset_bins`` (0: one frame, about the visual latency).
    Flashed images (``flashed``): the whole onset-aligned window of each presentation, which already
    starts at the latency (a lag would reach into the next presentation). ``min_shift``: the smallest
    circular shift of the reliability null (1 s of movie frames; 1 for independent images).
    """
    from neurrator.analysis.single_units import trial_responses, unit_reliability

    if flashed:
        tr = trial_responses(binned, split.train, window_bins=int(binned.bins_per_frame), offset_bins=0)
    else:
        tr = trial_responses(binned, split.train, offset_bins=offset_bins or None)
    if tr.values.shape[0] < 2:
        log.warning("one training repeat: split-half reliability is undefined, so single units are picked by "
                    "spike count and the single-unit, group and scaling analyses are skipped (train on >= 2 "
                    "repeats: lower --val-repeats / --test-repeats)")
        return tr, None
    return tr, unit_reliability(tr.values, seed=seed, min_shift=min_shift)


def _groups(units, kind: str, *, min_units: int) -> dict[str, np.ndarray]:
    values = units.region if kind == "region" else units.cell_type
    out = {}
    for name in sorted({str(v) for v in values if str(v) not in ("", "unknown", "nan", "None")}):
        idx = np.flatnonzero(values.astype(str) == name)
        if len(idx) >= min_units:
            out[name] = idx.astype(np.int64)
    return out


def neurrate_session(*, responses, trained, binned, split, targets: np.ndarray, sae, concepts, units,
                     narrate: Callable[[np.ndarray], list[str]], embed: Callable[[Sequence[str]], np.ndarray],
                     subset_results: Sequence, references: dict[int, str], device: str, seed: int,
                     eval_windows: int = 300, probe_windows: int = 120, n_pools: int = 40, n_boot: int = 200, n_perm: int = 1000,
                     scaling_sizes: Sequence[int] = (1, 3, 10, 30, 100, 300), scaling_draws: int = 3,
                     min_units: int = 10, block_frames: int = 30, train_mean: np.ndarray | None = None,
                     contributions: bool = True) -> NeurrationResult:
    """Run the per-unit, per-group and scaling analyses of one session.

    Parameters
    ----------
    responses
        `neurrator.analysis.single_units.TrialResponses` on the training repeats.
    trained, binned, split, targets
        The encoder, the binned counts and their split, ``(F, P, D)`` true patch tokens.
    sae, concepts
        The validating SAE and its concept names (named from training frames only).
    units
        `neurrator.data.units_table.Units` (region, cell type per row of ``binned.counts``).
    narrate, embed
        The narrator (patches -> texts) and the sentence embedder (texts -> unit-norm rows).
    subset_results
        `neurrator.decode.decoding.SubsetResult` s (their narrations feed the separation and classifier).
    references
        Movie frame -> reference text (narration similarity in the scaling curves).
    eval_windows, probe_windows, n_pools, n_boot, n_perm
        Test windows of the scaling curves; fewer windows (a subset of them) for the per-unit
        leave-one-out and the decoded-enrichment pools, which cost one encoder pass each; null pools per
        group; bootstrap resamples; permutations.
    scaling_sizes, scaling_draws
        Population sizes per region and random draws per size.
    min_units
        Groups smaller than this are not analysed as groups.
    block_frames
        Scene-block length in frames for the bootstrap and permutation blocks, and the smallest circular
        shift of the tuning null (1 s of a movie; 1 for flashed images, which are independent items).
    train_mean
        ``(P, D)`` training mean map (centres the per-window cosine); default: mean of ``targets``.
    contributions
        Run the leave-one-out and drive probes (one encoder pass per unit).
    """
    from neurrator.analysis import contribution
    from neurrator.analysis import groups
    from neurrator.analysis import scaling
    from neurrator.decode.fidelity import patch_cosines
    from neurrator.analysis.single_units import neurrate_units
    from neurrator.sae.autoencoder import frame_latents
    from neurrator.stats.resampling import block_permutation, scene_blocks
    from neurrator.models.training import predict, predict_windows

    rng_seed = int(seed)
    lat = frame_latents(sae, targets, device=device)
    acts, names = concept_activations(lat, concepts.names)
    log.info("neurration: %d units x %d concepts", len(units.ids), len(names))
    neur = neurrate_units(responses, targets, acts, names, narrate=narrate, unit_ids=np.arange(len(units.ids)),
                          n_perm=n_perm, min_shift=block_frames, seed=rng_seed)
    notes: dict[str, Any] = {"concepts": names, "eval_windows": 0, "n_pools": n_pools, "n_boot": n_boot,
                             "n_perm": n_perm, "scaling_draws": scaling_draws}
    if len(names) == 0:
        notes["skipped"] = "the SAE has no named concepts"

    win = evaluation_windows(split.test, eval_windows)
    frames = binned.frame[win]
    blocks = scene_blocks(frames, block_frames=block_frames)
    notes["eval_windows"] = int(len(win))
    mean_map = targets.mean(axis=0) if train_mean is None else train_mean
    truth = targets[frames]
    perm = block_permutation(len(win), blocks, seed=rng_seed)

    pwin = evaluation_windows(win, probe_windows)  # the probes' windows: a subset of the evaluation windows
    pframes = binned.frame[pwin]
    pblocks = scene_blocks(pframes, block_frames=block_frames)
    ptruth = targets[pframes]
    notes["probe_windows"] = int(len(pwin))
    cache: dict[tuple[bytes, int], np.ndarray] = {}

    def pred(idx: np.ndarray, windows: np.ndarray = win) -> np.ndarray:
        key = (np.asarray(idx, dtype=np.int64).tobytes(), len(windows))
        if key not in cache:
            if len(cache) > 64:
                cache.clear()
            cache[key] = predict(trained, binned, windows, unit_idx=np.asarray(idx, dtype=np.int64), device=device)
        return cache[key]

    def fidelity(idx: np.ndarray) -> np.ndarray:
        return patch_cosines(pred(idx, pwin), ptruth, mean_map=mean_map)

    regions = _groups(units, "region", min_units=2)
    loo = drive = None
    if contributions:
        loo = contribution.leave_one_out(regions, fidelity, blocks=pblocks, n_boot=n_boot, n_perm=n_perm,
                                         seed=rng_seed)
        cache.clear()
        drive = contribution.drive_narrations(
            regions, responses.bin_mean, responses.bin_sd,
            predict_windows=lambda w, idx: predict_windows(trained, w, binned.unit_ids[idx], device=device),
            narrate=narrate, embed=embed, window_bins=trained.train_config.window_bins, seed=rng_seed)
    result = NeurrationResult(units=contribution.unit_table(neur, loo=loo, drive=drive), tuning=neur.tuning_rows(),
                              concept_names=names, notes=notes)

    # groups: tuning and decoded enrichment, narration separation, text classifier
    named_idx = [i for i, n in enumerate(concepts.names) if n]

    def decoded_concepts(idx: np.ndarray) -> np.ndarray:
        a, _ = concept_activations(frame_latents(sae, pred(idx, pwin), device=device)[:, named_idx],
                                   [concepts.names[i] for i in named_idx])
        return a

    big_regions = {g: i for g, i in regions.items() if len(i) >= min_units}
    cell_types = _groups(units, "cell_type", min_units=min_units)
    if names:
        r = neur.tuning.r
        result.comparisons.append(groups.tuning_enrichment(r, big_regions, names, group_kind="region",
                                                           n_boot=n_boot, seed=rng_seed))
        result.comparisons.append(groups.tuning_enrichment(r, cell_types, names, group_kind="cell_type",
                                                           strata=units.region.astype(str), n_boot=n_boot,
                                                           seed=rng_seed))
        for kind, grp in (("region", big_regions), ("cell_type", cell_types)):
            if grp:
                result.comparisons.append(groups.decoded_enrichment(
                    grp, decoded_concepts, names, n_units=len(units.ids), blocks=pblocks, group_kind=kind,
                    n_pools=n_pools, n_boot=n_boot, seed=rng_seed))
                cache.clear()
    for kind in ("region", "cell_type"):
        rows = [r for r in subset_results if r.subset.kind == kind]
        if len(rows) < 2:
            continue
        texts = [t for r in rows for t in r.narrations]
        labels = np.concatenate([[r.subset.group] * len(r.narrations) for r in rows])
        strata = np.concatenate([np.arange(len(r.narrations)) for r in rows])
        emb = np.asarray(embed(texts), dtype=np.float64)
        result.separations.append(groups.narration_separation(emb, labels, group_kind=kind, strata=strata,
                                                              n_boot=n_boot, seed=rng_seed))
        result.separations.append(groups.classify_groups(emb, labels, group_kind=kind, strata=strata,
                                                         seed=rng_seed))

    # the same classifier on the units' own narrations (their preferred stimuli): one text per visually
    # driven unit of a group, each unit its own fold item
    texts_u = list(result.units["preferred_text"])
    for kind, grp in (("region", big_regions), ("cell_type", cell_types)):
        items = [(str(t), g) for g, idx in grp.items() for i in idx if (t := texts_u[int(i)])]
        if len({g for _, g in items}) < 2:
            continue
        emb = np.asarray(embed([t for t, _ in items]), dtype=np.float64)
        result.separations.append(groups.classify_groups(
            emb, np.array([g for _, g in items]), group_kind=kind, seed=rng_seed,
            analysis="text_classifier_accuracy:preferred_stimulus"))

    # scaling per region: centred cosine on the evaluation windows, narration similarity on the narrated ones
    narrated = subset_results[0].presentations if subset_results else win[:0]
    nar_frames = binned.frame[narrated]
    nar_blocks = scene_blocks(nar_frames, block_frames=block_frames)
    nar_perm = block_permutation(len(narrated), nar_blocks, seed=rng_seed)
    ref_emb = (np.asarray(embed([references[int(f)] for f in nar_frames]), dtype=np.float64) if len(narrated)
               else np.zeros((0, 1)))
    for region, idx in regions.items():
        sizes = [s for s in scaling_sizes if s <= len(idx)]
        if not sizes:
            continue
        draws = scaling.population_draws(idx, sizes, n_draws=scaling_draws, seed=rng_seed)
        sizes = sorted(draws)
        D = max(len(v) for v in draws.values())
        cos, cos_base = np.full((2, len(sizes), D, len(win)), np.nan)
        sim, sim_base = np.full((2, len(sizes), D, len(narrated)), np.nan)
        for i, size in enumerate(sizes):
            for j, d in enumerate(draws[size]):
                p = pred(d)
                cos[i, j] = patch_cosines(p, truth, mean_map=mean_map)
                cos_base[i, j] = patch_cosines(p, truth[perm], mean_map=mean_map)
                if len(narrated):
                    e = np.asarray(embed(narrate(predict(trained, binned, narrated, unit_idx=d, device=device))),
                                   dtype=np.float64)
                    sim[i, j] = np.sum(e * ref_emb, axis=1)
                    sim_base[i, j] = np.sum(e * ref_emb[nar_perm], axis=1)
            cache.clear()
        sz = np.asarray(sizes)
        result.scaling.append(scaling.scaling_curve(cos, cos_base, sizes=sz, blocks=blocks,
                                                    region=region, metric="centred_patch_cosine", n_boot=n_boot,
                                                    n_perm=n_perm, seed=rng_seed))
        if len(narrated) >= 2:
            result.scaling.append(scaling.scaling_curve(sim, sim_base, sizes=sz,
                                                        blocks=nar_blocks, region=region,
                                                        metric="narration_similarity", n_boot=n_boot,
                                                        n_perm=n_perm, seed=rng_seed))
    return result
