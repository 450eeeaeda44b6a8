"""An opened NWB session -> units, presentations, frames, binned counts, repeat splits, trial responses
and per-unit reliability; pseudo-mouse pooling; opto-tagging.

The face of `neurrator.data`: every public name of its modules, imported on first use
(`from neurrator.data import ...`), so that files can move without breaking a notebook.
"""

from neurrator._lazy import lazy_face

_WHERE = {
    "binning": (
        "Binned", "bin_session", "bin_spikes", "disjoint_spans", "window_index", "window_spans",
    ),
    "optotagging": (
        "CRE_TO_CELL_TYPE", "OptoTagResult", "cre_cell_type", "read_pulses", "tag_session_units",
        "tag_units",
    ),
    "outline": (
        "SessionOutline", "outline_nwbfile",
    ),
    "pseudomouse": (
        "Pooled", "check_same_stimulus", "frames_digest", "member_units", "member_view", "pool_binned",
        "pool_sessions", "pool_units",
    ),
    "responses": (
        "Reliability", "TrialResponses", "image_split_reliability", "trial_responses", "undefined_reliability",
        "unit_reliability", "unit_reliability_for",
    ),
    "session": (
        "Session", "file_ids", "load_session", "read_presentations", "read_session",
    ),
    "session_checks": (
        "MAX_UNITS", "check_presentation_columns", "check_spike_columns", "check_unit_ids",
        "names_the_file",
    ),
    "shots": (
        "detect_shots", "frame_differences",
    ),
    "splits": (
        "Split", "check_split", "split_by_image", "split_problem", "split_repeats",
    ),
    "stimuli": (
        "FLASHED_IMAGES", "FlashedImagesKind", "KNOWN_STIMULI", "MOVIE", "MovieKind", "Presentations",
        "STIMULUS_KINDS", "StimulusKind", "bin_intervals", "occurrence_repeats", "stimulus_kind",
    ),
    "units_table": (
        "ALLEN_QUALITY_FILTER", "Units", "is_plain_column", "read_column", "read_units",
    ),
}

__getattr__, __dir__, __all__ = lazy_face(__name__, _WHERE)
