"""Group neurration: planted enrichment, null pools, narration separation and the text classifier.

The group nulls compare a group with random pools of units matched to it (size; cell types: regions) put
through the same steps, not with label permutations; the decoded and narration pools are tested at the
group's own decoding fidelity. Each calibration test below runs such a null on data without the effect.
"""

from __future__ import annotations

import numpy as np

from neurrator.analysis.groups import decoded_enrichment, null_pool_false_positive_rate, tuning_enrichment
from neurrator.analysis.separation import classify_groups, narration_separation
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


def _decoded_world(seed=0, W=90, N=40, K=3):
    """Concepts present or absent per 6-window scene; ``decode`` returns activations that carry each
    concept in proportion to how the pool is made up, and a fidelity."""
    rng = np.random.default_rng(seed)
    truth = np.repeat((rng.random((W // 6, K)) < 0.4).astype(float), 6, axis=0)
    return rng, truth, scene_blocks(np.arange(W), block_frames=6)


def test_decoded_enrichment_finds_the_concept_a_group_carries():
    """Power: VIP's decoded patches follow "dark" far more than pools of other units of its size do (null:
    25 re-decoded pools regressed on their fidelity, t on 23 df, and the group's own shift null)."""
    rng, truth, blocks = _decoded_world(1)

    def decode(idx):  # every unit carries a little of everything; units 0-9 carry "dark" strongly
        share = np.isin(idx, np.arange(10)).mean()
        acts = 0.3 * truth + rng.normal(0, 0.7, size=truth.shape)
        acts[:, 2] += 2.0 * share * truth[:, 2]
        return acts, 0.2 + rng.normal(0, 0.01)

    out = decoded_enrichment({"VIP": np.arange(10), "X": np.arange(20, 30)}, decode, ["car", "sunlit", "dark"],
                             truth=truth, n_units=100, blocks=blocks, group_kind="cell_type", n_pools=25, seed=0)
    assert set(out.source) == {"decoded"} and (out.n_null_draws == 25).all()
    assert out.enriched("VIP") == ["dark"]
    assert out.enriched("X") == []
    vip_dark = (out.group == "VIP") & (out.concept == "dark")
    assert out.p[vip_dark][0] < 1e-3 and out.ci_lo[vip_dark][0] > 0.2


def test_decoded_enrichment_is_not_fooled_by_a_group_that_decodes_better():
    """Units 30-39 decode everything better (higher fidelity, every concept more visible). Against pools
    of lower fidelity they "carry" every concept; at their own fidelity they carry nothing special."""
    rng, truth, blocks = _decoded_world(1)

    def decode(idx, fidelity_known=True):
        q = np.isin(idx, np.arange(30, 40)).mean()
        acts = (0.2 + q) * truth + rng.normal(0, 0.5, size=truth.shape)
        return acts, (0.1 + 0.3 * q + rng.normal(0, 0.005)) if fidelity_known else 0.0

    grp = {"good": np.arange(30, 40)}
    adjusted = decoded_enrichment(grp, decode, ["a", "b", "c"], truth=truth, n_units=40, blocks=blocks,
                                  group_kind="region", n_pools=30, seed=0)
    assert adjusted.enriched("good") == []
    blind = decoded_enrichment(grp, lambda i: decode(i, False), ["a", "b", "c"], truth=truth, n_units=40,
                               blocks=blocks, group_kind="region", n_pools=30, seed=0)
    assert sorted(blind.enriched("good")) == ["a", "b", "c"]  # what comparing with the pools alone says


def test_decoded_enrichment_pools_come_from_the_group_s_regions():
    """Every VISp unit (0-19) carries "car"; CA1 units (20-39) carry nothing. PV = 10 ordinary VISp units:
    against pools from all units (half CA1) it looks enriched, against VISp-only pools it is not."""
    rng, truth, blocks = _decoded_world(2)
    region = np.array(["VISp"] * 20 + ["CA1"] * 20)

    common = rng.normal(0, 0.5, size=truth.shape)  # the confusions every decoder of this movie shares

    def decode(idx):
        acts = common + rng.normal(0, 0.1, size=truth.shape)
        acts[:, 0] += np.isin(idx, np.arange(20)).mean() * truth[:, 0]
        return acts, 0.2

    kw = dict(truth=truth, n_units=40, blocks=blocks, group_kind="cell_type", n_pools=25, seed=0)
    assert decoded_enrichment({"PV": np.arange(10)}, decode, ["car", "b", "c"], **kw).enriched("PV") == ["car"]
    assert decoded_enrichment({"PV": np.arange(10)}, decode, ["car", "b", "c"], strata=region,
                              **kw).enriched("PV") == []


def test_decoded_enrichment_is_calibrated_when_nothing_is_decoded():
    """Activations independent of the truth (autocorrelated over windows like the truth itself), fidelity
    varying at random: p < 0.05 in about 5% of group x concept tests, no finding after FDR."""
    rng, truth, blocks = _decoded_world(3, W=120, K=4)

    def decode(idx):
        acts = np.repeat(rng.normal(size=(20, 4)), 6, axis=0) + rng.normal(0, 0.3, size=(120, 4))
        return acts, 0.1 + rng.normal(0, 0.02)

    groups = {f"g{i}": np.arange(5 * i, 5 * i + 5) for i in range(20)}
    ps, found = [], 0
    for seed in range(3):
        out = decoded_enrichment(groups, decode, ["a", "b", "c", "d"], truth=truth, n_units=100, blocks=blocks,
                                 group_kind="region", n_pools=20, n_boot=20, seed=seed)
        ps.append(out.p)
        found += sum(len(out.enriched(g)) for g in groups)
    rate = np.mean(np.concatenate(ps) < 0.05)
    assert 0.01 <= rate <= 0.09, rate
    assert found <= 1


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


def _collapsing_world(seed=0, per=20, d=16, n_draws=10):
    """Narrations with no stimulus content. Group "CA1" decodes nothing and collapses onto two captions;
    the other groups and every random pool narrate varied, group-independent sentences. Each item's
    fidelity (similarity with its reference) is low where the narrations collapse."""
    rng = np.random.default_rng(seed)
    captions = rng.normal(size=(2, d))
    names = ["CA1", "VISl", "VISp"]
    labels = np.repeat(names, per)
    strata = np.tile(np.arange(per), 3)

    def narr(collapsed):
        return captions[rng.integers(0, 2, per)] + 0.1 * rng.normal(size=(per, d)) if collapsed else \
            rng.normal(size=(per, d))

    emb = np.concatenate([narr(True), narr(False), narr(False)])
    fid = np.concatenate([np.full(per, 0.1), np.full(2 * per, 0.3)]) + 0.02 * rng.normal(size=3 * per)
    pools = [np.concatenate([narr(False) for _ in names]) for _ in range(n_draws)]
    pool_fid = [0.3 + 0.02 * rng.normal(size=3 * per) for _ in range(n_draws)]
    return emb, labels, strata, pools, np.asarray(pool_fid), fid


def test_a_collapsed_group_separates_under_label_permutation_but_is_not_interpretable():
    """The old label-permutation null calls CA1 distinct; with its fidelity below its null, its status is
    "not interpretable", and the fidelity-adjusted pool null does not call it separated either (the pools
    never decode as badly, so the comparison is an extrapolation with a wide interval)."""
    emb, labels, strata, pools, pool_fid, fid = _collapsing_world()
    old = narration_separation(emb, labels, group_kind="region", strata=strata, n_perm=200, n_boot=50)
    assert old.p[0] < 0.01 and old.null_kind[0].startswith("label permutation")
    ok = {"CA1": False, "VISl": True, "VISp": True}
    new = narration_separation(emb, labels, group_kind="region", strata=strata, pools=pools, item_fidelity=fid,
                               pool_item_fidelity=pool_fid, interpretable=ok, fidelity={"CA1": (0.1, 0.8)},
                               n_boot=50)
    assert new.group.tolist() == ["CA1", "VISl", "VISp", "all"]
    assert new.status.tolist() == ["not interpretable", "not distinctive", "not distinctive", "not interpretable"]
    assert new.fidelity[0] == 0.1 and np.isnan(new.fidelity[1]) and new.fidelity_q[0] == 0.8
    assert (new.p[1:3] > 0.05).all() and "fidelity-adjusted t on 8 df" in new.null_kind[0]
    clf = classify_groups(emb, labels, group_kind="region", strata=strata, pools=pools, item_fidelity=fid,
                          pool_item_fidelity=pool_fid, interpretable=ok)
    assert clf.status[0] == "not interpretable"


def test_pool_null_finds_group_specific_content_and_not_chance_content():
    """Groups whose narrations carry their own content beat matched pools (distinctive); the same groups
    with group-independent narrations do not (p < 0.05 in about 5% of repetitions)."""
    emb, labels, strata = _texts(sep=1.0)
    rng = np.random.default_rng(0)
    pools = [rng.normal(size=emb.shape) for _ in range(10)]
    out = narration_separation(emb, labels, group_kind="cell_type", strata=strata, pools=pools, n_boot=50)
    assert out.status.tolist() == ["distinctive"] * 4
    clf = classify_groups(emb, labels, group_kind="cell_type", strata=strata, pools=pools)
    assert clf.status[0] == "distinctive" and clf.p[0] < 0.001 and abs(clf.chance_level[0] - 1 / 3) < 0.1
    low = 0
    for seed in range(40):
        r = np.random.default_rng(100 + seed)
        e = r.normal(size=emb.shape)
        out = classify_groups(e, labels, group_kind="cell_type", strata=strata,
                              pools=[r.normal(size=emb.shape) for _ in range(10)], seed=seed)
        low += out.p[0] < 0.05
    assert low <= 6  # 40 x 0.05 = 2 expected; 6 is the 99.5% binomial quantile


def test_disjoint_pools_keep_sizes_and_regions():
    """The pools of one draw are a stratified relabelling: each keeps its group's regions, none shares a
    unit, ineligible units (no text) are never drawn."""
    from neurrator.analysis.separation import disjoint_pools

    region = np.array(["VISp"] * 30 + ["VISl"] * 20 + ["CA1"] * 10)
    groups = {"PV": np.array([0, 1, 2, 30]), "SST": np.array([3, 31, 32])}
    eligible = np.ones(60, bool)
    eligible[[4, 5]] = False
    for seed in range(20):
        p = disjoint_pools(groups, n_units=60, strata=region, eligible=eligible, seed=seed)
        assert sorted(region[p["PV"]]) == sorted(region[groups["PV"]])
        assert sorted(region[p["SST"]]) == sorted(region[groups["SST"]])
        assert not set(p["PV"]) & set(p["SST"]) and not {4, 5} & (set(p["PV"]) | set(p["SST"]))
