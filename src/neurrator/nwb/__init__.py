"""Run results -> a derived NWB file: ndx-neurrator containers, provenance, compact predictions, atomic writes.

The face of `neurrator.nwb`: every public name of its modules, imported on first use
(`from neurrator.nwb import ...`), so that files can move without breaking a notebook.
"""

from neurrator._lazy import lazy_face

_WHERE = {
    "compression": (
        "CompressedPatches", "compress_windows", "encoder_readout_basis", "fit_pca_basis", "reconstruct",
        "reconstruction_error",
    ),
    "derived": (
        "PROVENANCE_FILE_NAME", "STALE_TEMPORARY_AGE_S", "add_units_to_nwbfile", "as_rows",
        "check_writable_dir", "derived_file_name", "encoder_config_text", "jsonable", "new_derived_nwbfile",
        "output_is_complete", "provenance_record", "read_provenance", "remove_dead_temporaries",
        "remove_stale_temporaries", "run_provenance", "software_versions", "source_checksum",
        "stimulus_epochs", "temporary_name", "write_nwbfile_atomic",
    ),
    "results": (
        "add_encoder_to_nwbfile", "add_fidelity_to_nwbfile", "add_frame_thumbnails_to_nwbfile",
        "add_narrations_to_nwbfile", "add_neurration_to_nwbfile", "add_patch_predictions_to_nwbfile",
        "add_sae_to_nwbfile", "add_sae_validation_to_nwbfile", "add_unit_subsets_to_nwbfile",
        "build_derived_nwbfile", "narration_rows", "thumbnail", "window_order",
    ),
}

__getattr__, __dir__, __all__ = lazy_face(__name__, _WHERE)
