"""Where bytes come from and go: SOURCE strings (path, https, dandi://) opened safely, HTTP range reads,
HDF5 safety checks, movie files, checksums and output folders.

The face of `neurrator.io`: every public name of its modules, imported on first use
(`from neurrator.io import ...`), so that files can move without breaking a notebook.
"""

from neurrator._lazy import lazy_face

_WHERE = {
    "allen_warehouse": (
        "DEFAULT_WAREHOUSE", "ECEPHYS_PRODUCT_ID", "list_stimulus_templates", "movie_download_url",
        "scene_download_urls", "stimulus_templates_query", "warehouse_url",
    ),
    "checksums": (
        "sha256_file", "verify_sha256",
    ),
    "folders": (
        "CreatedDirs", "MAX_NAME_BYTES", "MAX_PATH_BYTES", "check_name_length", "check_output_file",
        "open_regular_file", "path_inside",
    ),
    "h5safety": (
        "EXPANSION_FLOOR_BYTES", "MAX_DATASET_BYTES", "MAX_DEPTH", "MAX_EXPANSION", "MAX_OBJECTS",
        "ScanReport", "check_hdf5_file", "check_numeric_dataset", "declared_nbytes", "max_dataset_bytes",
    ),
    "httpfile": (
        "CachedHTTPFile", "DEFAULT_TIMEOUT_S", "check_range_response", "is_timeout", "probe_size",
        "retrying", "timeout_message", "unique_suffix",
    ),
    "limits": (
        "MAX_ARRAY_BYTES", "check_array_size", "max_array_bytes", "memory_guard",
    ),
    "movies": (
        "FRAME_RATE_TOLERANCE", "FetchedMovie", "KNOWN_MOVIES", "MovieEntry", "check_frame_rate", "check_frames",
        "fetch_known_movie", "fetch_movie",
        "frames_from_template", "register_movie", "require_frames", "resolve_frames",
    ),
    "movie_files": (
        "IMAGE_SUFFIXES", "load_movie_file", "read_movie_file", "to_gray_uint8", "to_uint8",
    ),
    "video_files": (
        "VIDEO_SUFFIXES", "VideoFrames", "read_video",
    ),
    "counts": (
        "CountPresentations", "CountProtocol", "EDGE_S", "check_counts", "counts_nwbfile", "made_up_notes",
        "order_presentations", "spread_counts",
    ),
    "count_files": (
        "convert_counts", "read_count_array", "read_image_set",
    ),
    "progress": (
        "HEARTBEAT_S", "Progress", "format_seconds", "library_bars", "progress_iter", "stderr_is_terminal",
    ),
    "sources": (
        "AssetInfo", "DEFAULT_DANDI_API_URL", "default_cache_dir", "list_assets", "open_source",
        "parse_dandi_url", "resolve_source", "source_label",
    ),
}

__getattr__, __dir__, __all__ = lazy_face(__name__, _WHERE)
