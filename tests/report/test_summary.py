"""The run summary says which control each narration count is against."""

from __future__ import annotations

from _tiny_run import fake_subset_result

from neurrator.decode.decoding import apply_fdr
from neurrator.report.summary import narration_counts


def test_narration_counts_name_each_control_and_star_only_both():
    results = [fake_subset_result("all", "all", [0], narration_p=0.001),
               fake_subset_result("region:VISp", "region", [1], narration_p=0.001, beats_constant=False),
               fake_subset_result("region:VISl", "region", [2], narration_p=0.9)]
    apply_fdr(results)
    assert narration_counts(results) == ("Narration beats its paired null (shuffled references) in 2 of "
                                         "3 subsets, the constant narration in 2 of 3, and both ('*') in 1 of 3.")
