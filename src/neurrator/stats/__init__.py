"""The one home of the statistics: resampling (bootstrap, permutations, circular shifts), nulls and FDR.

The face of `neurrator.stats`: every public name of its modules, imported on first use
(`from neurrator.stats import ...`), so that files can move without breaking a notebook.
"""

from neurrator._lazy import lazy_face

_WHERE = {
    "nulls": (
        "NULL_BLOCKS", "NULL_SHIFT", "beats_null", "block_permutations", "item_blocks", "off_block_mean",
        "paired_null",
    ),
    "pools": (
        "fidelity_adjusted_pvalue", "incomplete_beta", "pool_pvalue", "t_sf",
    ),
    "resampling": (
        "Estimate", "benjamini_hochberg", "block_bootstrap", "block_permutation", "circular_shift_corr",
        "permutation_pvalue", "scene_blocks", "split_half_reliability",
    ),
}

__getattr__, __dir__, __all__ = lazy_face(__name__, _WHERE)
