"""Simulated session -> an Allen-layout NWB file on disk, with its ground truth next to it.

The layout is that of the Allen Visual Coding files: units (spike_times, quality, amplitude_cutoff,
presence_ratio, isi_violations, firing_rate, snr, peak_channel_id, and -- simulation only -- a
``cell_type`` column unless ``cell_type_column=False``), electrodes (location, group,
probe_vertical_position, ...), ``intervals/<stimulus>_presentations`` (start_time, stop_time,
stimulus_name, stimulus_block, frame; repeats back to back, no repeat column, like Allen),
``intervals/spontaneous_presentations``, ``processing/optotagging/optogenetic_stimulation``
(condition, level, duration), the movie as ``stimulus/templates/<stimulus>`` (ImageSeries (F, H, W)
uint8), and the captions as ``processing/stimulus/<stimulus>_captions`` (DynamicTable: frame,
variant, caption; one row per frame and caption variant, see `add_captions_to_nwbfile`).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from neurrator.simulate.captions import FEATURE_NAMES
from neurrator.simulate.recording import simulate_session
from neurrator.simulate.truth import SimulationTruth, truth_path
from neurrator import __version__
from neurrator.simulate.scenes import simulate_natural_scenes

__all__ = ["add_captions_to_nwbfile", "write_simulated_session"]


def add_captions_to_nwbfile(nwbfile, caption_variants: np.ndarray, *, stimulus: str,
                            vocabulary: Sequence[str] = ()) -> None:
    """Add ``processing/stimulus/<stimulus>_captions``: one row per (frame, variant), and the captions'
    vocabulary as ``<stimulus>_caption_terms`` (one ``term`` per row) when one is given.

    Parameters
    ----------
    nwbfile
        The `pynwb.NWBFile` to add to (a ``stimulus`` processing module is created when missing).
    caption_variants
        (F, V) str; column 0 is the canonical caption of each frame.
    stimulus
        Stimulus name (the table is ``<stimulus>_captions``).
    vocabulary
        The terms the captions are written in (the simulator's feature words): a reader restricts concept
        names to them (`neurrator.data.session.Session.caption_vocabulary`). Nothing is written when empty.

    Notes
    -----
    Rows are grouped by frame, and within a frame the variants come in DESCENDING order, so that the
    canonical caption (variant 0) is each frame's last row: a reader that keeps one caption per frame by
    overwriting (neurrator up to the paraphrases) still reads the canonical captions.
    """
    from hdmf.common import DynamicTable, VectorData

    table = np.asarray(caption_variants, dtype=str)
    n_frames, n_var = table.shape
    frame = np.repeat(np.arange(n_frames, dtype=np.int64), n_var)
    variant = np.tile(np.arange(n_var - 1, -1, -1, dtype=np.int64), n_frames)
    mod = nwbfile.processing.get("stimulus")
    if mod is None:
        mod = nwbfile.create_processing_module("stimulus", "annotations of the stimuli")
    mod.add(
        DynamicTable(
            name=f"{stimulus}_captions",
            description=(f"captions of each frame of the stimulus template {stimulus}: variant 0 is the canonical "
                         "caption (fixed template, canonical feature words), variants 1.. paraphrase it "
                         "(synonyms, word order); each frame's rows end with variant 0"),
            id=np.arange(frame.size),
            columns=[
                VectorData(name="frame", description="movie frame index", data=frame),
                VectorData(name="variant", description="caption variant (0 = canonical)", data=variant),
                VectorData(name="caption", description="what the frame shows",
                           data=table[frame, variant].tolist()),
            ],
        )
    )
    terms = [str(v) for v in vocabulary]
    if terms:
        mod.add(DynamicTable(
            name=f"{stimulus}_caption_terms",
            description=f"the vocabulary the captions of {stimulus} are written in (concept names are drawn from it)",
            id=np.arange(len(terms)),
            columns=[VectorData(name="term", description="a caption term (one word or phrase)", data=terms)],
        ))


def write_simulated_session(
    path: str | Path,
    *,
    n_units: int = 300,
    n_repeats: int = 12,
    seed: int = 0,
    movie_out: str | Path | None = None,
    cell_type_column: bool = True,
    natural_scenes: int | None = None,
    **kwargs,
) -> SimulationTruth:
    """Simulate a session and write it as an Allen-layout NWB file, with its truth next to it.

    Parameters
    ----------
    path
        Output ``.nwb`` path (overwritten). The truth goes to `truth_path(path)`.
    n_units, n_repeats, seed
        See `simulate_session`; further keyword arguments are passed on to it.
    movie_out
        Also save the movie frames, (F, H, W) uint8, as a ``.npy`` file there.
    cell_type_column
        Write the simulated cell classes as a units ``cell_type`` column (Allen files have none; set
        False to make readers rely on opto-tagging, as for real Allen files).
    natural_scenes
        Simulate an Allen natural_scenes block instead of a movie: this many flashed images, each shown
        ``n_repeats`` times for 250 ms in random order (`neurrator.simulate.scenes.simulate_natural_scenes`;
        presentations ``intervals/natural_scenes_presentations``, blanks ``frame = -1``, the images as
        ``stimulus/templates/natural_scenes``, their captions as ``natural_scenes_captions``).

    Returns
    -------
    SimulationTruth

    Examples
    --------
    >>> truth = write_simulated_session("sim.nwb", n_units=20, n_repeats=2, n_frames=60)  # doctest: +SKIP
    """
    from hdmf.backends.hdf5.h5_utils import H5DataIO
    from hdmf.common import VectorData, VectorIndex
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.ecephys import ElectrodesTable
    from pynwb.epoch import TimeIntervals
    from pynwb.file import Subject
    from pynwb.image import ImageSeries
    from pynwb.misc import Units


    if natural_scenes is not None:
        sim = simulate_natural_scenes(n_images=int(natural_scenes), n_repeats=n_repeats, n_units=n_units, seed=seed,
                                      **kwargs)
    else:
        sim = simulate_session(n_units=n_units, n_repeats=n_repeats, seed=seed, **kwargs)
    truth = sim.truth
    stim = truth.stimulus
    path = Path(path)
    ident = str(uuid.uuid5(uuid.NAMESPACE_URL, "neurrator-sim:" + json.dumps(truth.params, sort_keys=True)))
    nwb = NWBFile(
        session_description=(
            f"Simulated Allen-layout Neuropixels session (neurrator {__version__} simulator, population seed "
            f"{seed}, movie seed {truth.params['movie_seed']}): "
            f"{len(truth.unit_ids)} units, {n_repeats} repeats of a procedural captioned movie '{stim}', "
            "opto-tagging pulses."
        ),
        identifier=ident,
        session_start_time=datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc),
        session_id=f"sim{seed}",
        institution="neurrator simulator",
        experiment_description="Simulated Allen Brain Observatory-style Neuropixels recording with a captioned "
        "procedural movie and known ground truth (neurrator.simulate).",
        keywords=["simulation", "Neuropixels", "visual cortex", "natural movie", "opto-tagging"],
        stimulus_notes=(f"procedural movie {stim} (movie seed {truth.params['movie_seed']}): "
                        f"{truth.frame_features.shape[0]} frames at {truth.frame_rate} Hz"),
        subject=Subject(
            subject_id=f"sim{seed}", species="Mus musculus", sex="M", age="P100D", genotype=truth.genotype,
            strain="C57BL/6J", description="simulated mouse",
        ),
    )
    # electrodes
    el = sim.electrodes
    groups = {}
    for probe in dict.fromkeys(el["probe"].tolist()):
        dev = nwb.create_device(name=probe, description="simulated Neuropixels 1.0 probe")
        groups[probe] = nwb.create_electrode_group(
            name=probe, description=f"simulated {probe}", location="see electrodes.location", device=dev
        )
    n_el = el["id"].size
    nwb.electrodes = ElectrodesTable(
        id=el["id"],
        columns=[
            VectorData(name="location", description="brain area of the channel", data=el["location"].tolist()),
            VectorData(name="group", description="the probe's ElectrodeGroup",
                       data=[groups[str(p)] for p in el["probe"]]),
            VectorData(name="group_name", description="probe name", data=el["probe"].tolist()),
            VectorData(name="probe_vertical_position", description="position along the probe shank (um)",
                       data=el["probe_vertical_position"]),
            VectorData(name="probe_horizontal_position", description="position across the shank (um)",
                       data=el["probe_horizontal_position"]),
            VectorData(name="valid_data", description="whether the channel is usable", data=np.ones(n_el, bool)),
        ],
    )
    # units, built column-wise (add_unit per unit makes hdmf convert every spike time separately)
    m = sim.metrics
    lens = np.asarray([st.size for st in sim.spike_times], dtype=np.int64)
    all_spikes = np.concatenate(sim.spike_times) if lens.sum() else np.zeros(0)
    spike_data = VectorData(name="spike_times", description="spike times (s), sorted per unit", data=all_spikes)
    cols = [
        spike_data,
        VectorIndex(name="spike_times_index", data=np.cumsum(lens), target=spike_data),
        VectorData(name="quality", description="sorting quality label (good / noise)", data=m["quality"].tolist()),
        VectorData(name="amplitude_cutoff", description="estimated fraction of missed spikes",
                   data=m["amplitude_cutoff"]),
        VectorData(name="presence_ratio", description="fraction of the session with spikes", data=m["presence_ratio"]),
        VectorData(name="isi_violations", description="refractory-period violation rate", data=m["isi_violations"]),
        VectorData(name="firing_rate", description="mean firing rate (Hz)", data=lens / sim.duration),
        VectorData(name="snr", description="waveform signal-to-noise ratio", data=m["snr"]),
        VectorData(name="peak_channel_id", description="id of the electrode with the largest waveform",
                   data=sim.peak_channel_id),
    ]
    if cell_type_column:
        cols.append(VectorData(name="cell_type", data=truth.cell_type.tolist(),
                               description="simulated cell class (PV, SST, VIP, excitatory); not in Allen files"))
    nwb.units = Units(name="units", description="simulated sorted units", id=truth.unit_ids, columns=cols,
                      resolution=1 / 30000.0)
    # stimulus presentations
    pr = sim.presentations
    n_p = pr["start"].size
    nwb.add_time_intervals(
        TimeIntervals(
            name=f"{stim}_presentations",
            description=f"presentations of the movie frames of {stim}",
            id=np.arange(n_p),
            columns=[
                VectorData(name="start_time", description="start (s)", data=pr["start"]),
                VectorData(name="stop_time", description="stop (s)", data=pr["stop"]),
                VectorData(name="stimulus_name", description="stimulus", data=[stim] * n_p),
                VectorData(name="stimulus_block", description="block", data=np.full(n_p, 2.0)),
                VectorData(name="frame", data=pr["frame"].astype(np.float64),
                           description="image index (-1 = blank)" if natural_scenes else "movie frame index"),
            ],
        )
    )
    spont = TimeIntervals(name="spontaneous_presentations", description="grey screen")
    spont.add_column("stimulus_name", "stimulus")
    spont.add_interval(start_time=sim.spontaneous[0], stop_time=sim.spontaneous[1], stimulus_name="spontaneous")
    nwb.add_time_intervals(spont)
    # the movie and its captions
    nwb.add_stimulus_template(
        ImageSeries(
            name=stim, data=H5DataIO(sim.frames, compression="gzip", chunks=(1,) + sim.frames.shape[1:]),
            unit="NA", format="raw", rate=float(truth.frame_rate), starting_time=0.0,
            description=f"procedural movie (F, H, W) uint8; captions in processing/stimulus/{stim}_captions",
        )
    )
    variants = truth.caption_variants if truth.caption_variants is not None else np.asarray(truth.captions)[:, None]
    add_captions_to_nwbfile(nwb, variants, stimulus=stim, vocabulary=FEATURE_NAMES)
    # opto-tagging (none with n_pulses=0: the module is absent, as in an Allen wild-type session)
    op = sim.opto
    if op["start"].size:
        opto_mod = nwb.create_processing_module("optotagging", "opto-tagging light pulses")
        ot = TimeIntervals(name="optogenetic_stimulation", description="blue light pulses (ChR2)")
        for name, desc in (("stimulus_name", "stimulus"), ("condition", "pulse shape"),
                           ("level", "light level"), ("duration", "pulse duration (s)")):
            ot.add_column(name, desc)
        for i in range(op["start"].size):
            ot.add_interval(
                start_time=float(op["start"][i]), stop_time=float(op["stop"][i]), stimulus_name="pulse",
                condition=str(op["condition"][i]), level=float(op["level"][i]), duration=float(op["duration"][i]),
            )
        opto_mod.add(ot)

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.part.nwb")
    with NWBHDF5IO(str(tmp), "w") as io:
        io.write(nwb)
    tmp.replace(path)
    truth.save(truth_path(path))
    if movie_out is not None:
        np.save(Path(movie_out), sim.frames)
    return truth
