"""Group neurration: planted enrichment, null pools, narration separation and the text classifier."""

from __future__ import annotations

import numpy as np

from neurrator.analysis.groups import (classify_groups, decoded_enrichment, narration_separation,
                              null_pool_false_positive_rate, tuning_enrichment)
from neurrator.stats.resampling import scene_blocks

NAMES = ["car", "sunlit", "dark", "tree", "road"]


def _tuning(seed=0, N=120):
    rng = np.random.default_rng(seed)
    r = rng.normal(0, 0.1, size=(N, len(NAMES)))
    r[:20, 0] += 0.3  # PV units: planted "car"
    r[20:40, 1] += 0.3  # SST units: planted "sunlit"
    return r


def test_planted_enrichment_is_found_and_nothing_else():
    r = _tuning()
    groups = {"PV": np.arange(20), "SST": np.arange(20, 40), "VIP": np.arange(40, 60)}
    out = tuning_enrichment(r, groups, NAMES, group_kind="cell_type", n_null=500, n_boot=200, seed=0)
    assert len(out.group) == 15 and set(out.source) == {"tuning"} and (out.n_null_draws == 500).all()
    assert out.enriched("PV") == ["car"]
    assert out.enriched("SST") == ["sunlit"]
    assert out.enriched("VIP") == []
    row = (out.group == "PV") & (out.concept == "car")
    assert out.ci_lo[row][0] > 0.2 and out.ci_hi[row][0] < 0.45  # planted +0.3 (minus the pools' share)
    assert (out.n_units == 20).all()


def test_random_pools_are_rarely_significant():
    r = _tuning(1)
    fpr, n = null_pool_false_positive_rate(r, 20, n_draws=60, n_null=300, exclude=np.arange(40), seed=0)
    assert n == 60 and fpr <= 0.1


def test_decoded_enrichment_against_pools():
    rng = np.random.default_rng(0)
    W, N = 60, 40
    base = rng.random((W, 3))

    def decoded(idx):  # units 0-9 put "dark" into the decoded patches in proportion to their share
        share = np.isin(idx, np.arange(10)).mean()
        out = base + rng.normal(0, 0.02, size=base.shape)
        out[:, 2] += 0.5 * share
        return out

    out = decoded_enrichment({"VIP": np.arange(10), "X": np.arange(20, 30)}, decoded, ["car", "sunlit", "dark"],
                             n_units=N, blocks=scene_blocks(np.arange(W), block_frames=6), group_kind="cell_type",
                             n_pools=199, n_boot=200, tail="empirical", seed=0)
    assert set(out.source) == {"decoded"}
    assert out.enriched("VIP") == ["dark"]
    assert out.enriched("X") == []
    vip_dark = (out.group == "VIP") & (out.concept == "dark")
    assert out.p[vip_dark][0] == 0.005 and out.ci_lo[vip_dark][0] > 0.3
    # the default z-test against the pools needs far fewer pools for the same conclusion
    z = decoded_enrichment({"VIP": np.arange(10), "X": np.arange(20, 30)}, decoded, ["car", "sunlit", "dark"],
                           n_units=N, blocks=scene_blocks(np.arange(W), block_frames=6), group_kind="cell_type",
                           n_pools=30, n_boot=200, seed=0)
    assert z.enriched("VIP") == ["dark"] and z.enriched("X") == []
    assert z.p[(z.group == "VIP") & (z.concept == "dark")][0] < 1e-4


def _texts(C=3, per=30, d=16, sep=1.0, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(C, d))
    labels = np.repeat(np.array(["PV", "SST", "VIP"][:C]), per)
    emb = sep * centres[np.repeat(np.arange(C), per)] + rng.normal(size=(C * per, d))
    strata = np.tile(np.arange(per), C)  # window w narrated once from each group
    return emb, labels, strata


def test_narrations_separate_by_group_and_not_when_shuffled():
    emb, labels, strata = _texts(sep=1.0)
    out = narration_separation(emb, labels, group_kind="cell_type", strata=strata, n_perm=200, n_boot=100)
    assert out.group.tolist() == ["PV", "SST", "VIP", "all"]
    assert (out.value > 0).all() and (out.p < 0.01).all() and (out.ci_lo > 0).all()
    shuffled = np.random.default_rng(1).permutation(labels)
    null = narration_separation(emb, shuffled, group_kind="cell_type", n_perm=200, n_boot=100)
    assert null.p[-1] > 0.05 and null.ci_lo[-1] < 0 < null.ci_hi[-1]


def test_classifier_identifies_groups_and_is_at_chance_on_shuffled_labels():
    emb, labels, strata = _texts(sep=1.5)
    out = classify_groups(emb, labels, group_kind="cell_type", strata=strata, n_perm=100, seed=0)
    assert out.value[0] > 0.9 and out.p[0] < 0.02
    assert abs(out.chance_level[0] - 1 / 3) < 0.08
    shuffled = np.random.default_rng(2).permutation(labels)
    null = classify_groups(emb, shuffled, group_kind="cell_type", n_perm=100, seed=0)
    assert null.p[0] > 0.05 and abs(null.value[0] - 1 / 3) < 0.15
    assert null.ci_lo[0] < null.chance_level[0] < null.ci_hi[0]


def test_without_strata_the_null_permutes_all_labels():
    """strata=None (e.g. one narration per unit): the labels are permuted across all items, so a real
    separation is significant and its chance level is 1/C (before, every item was its own permutation
    stratum, the null equalled the observed value and p was always 1)."""
    emb, labels, _ = _texts(sep=1.5)
    out = classify_groups(emb, labels, group_kind="cell_type", n_perm=100, seed=0)
    assert out.value[0] > 0.9 and out.p[0] < 0.02 and abs(out.chance_level[0] - 1 / 3) < 0.08
    sep = narration_separation(emb, labels, group_kind="cell_type", n_perm=200, n_boot=100)
    assert (sep.p < 0.01).all()


def test_region_matched_pools_remove_a_region_confound():
    rng = np.random.default_rng(4)
    N = 200
    region = np.array(["VISp"] * 100 + ["CA1"] * 100)
    r = rng.normal(0, 0.1, size=(N, 3))
    r[:100, 0] += 0.3  # every VISp unit follows "car": a region effect, not a cell-type one
    groups = {"PV": np.arange(20)}  # PV units all sit in VISp and are otherwise ordinary
    flat = tuning_enrichment(r, groups, NAMES[:3], group_kind="cell_type", n_null=500, seed=0)
    matched = tuning_enrichment(r, groups, NAMES[:3], group_kind="cell_type", strata=region, n_null=500, seed=0)
    assert flat.enriched("PV") == ["car"]
    assert matched.enriched("PV") == []
    fpr, _ = null_pool_false_positive_rate(r, 20, n_draws=50, n_null=300, strata=region, exclude=np.arange(100, 200))
    assert fpr <= 0.1


def test_untuned_group_is_not_enriched_against_negatively_tuned_pools():
    """CA1-like units (r ~ 0) among units tuned AGAINST a concept are above the pools, but not tuned: the
    intersection-union test keeps them from being called enriched."""
    rng = np.random.default_rng(3)
    r = np.concatenate([rng.normal(-0.3, 0.05, size=(60, 1)), rng.normal(0.0, 0.05, size=(20, 1))])
    out = tuning_enrichment(r, {"CA1": np.arange(60, 80)}, ["bright"], group_kind="region", n_null=500, seed=0)
    assert out.effect[0] > 0.2  # above the pools ...
    assert out.enriched("CA1") == []  # ... yet not enriched
    tuned = np.concatenate([r[:60], rng.normal(0.2, 0.05, size=(20, 1))])
    assert tuning_enrichment(tuned, {"V": np.arange(60, 80)}, ["bright"], group_kind="region", n_null=500,
                             seed=0).enriched("V") == ["bright"]
