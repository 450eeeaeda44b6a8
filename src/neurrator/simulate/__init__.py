"""Seeds -> a simulated Allen-layout NWB session (captioned procedural movie, LNP units, opto-tagging) + truth.

The generative model, one module per part
-----------------------------------------
* **Vocabulary and captions** (`neurrator.simulate.captions`): five independent scene axes
  (`FEATURE_GROUPS`: object ``circle``/``square``/``bar``/``grating``/``car``; position; brightness
  ``bright``/``dark``; motion ``moving left``/``moving right``/``still``; lighting ``dim``/``sunlit``),
  their canonical words `FEATURE_NAMES`, synonym sets `FEATURE_SYNONYMS` and `mentions_feature`; per
  frame a canonical caption (variant 0, e.g. ``"a bright car on the left, moving right, in a sunlit
  scene"``) and paraphrases from a small grammar (variants 1..).
* **Movie** (`neurrator.simulate.movie`): ``n_frames`` grayscale uint8 frames (default 900 x 64 x 128
  at 30 Hz), scenes of 15-45 frames. A function of ``movie_seed`` alone, so sessions with different
  population seeds can watch the same movie (a pseudo-mouse of several sessions).
* **Population** (`neurrator.simulate.population`): LNP units in VISp, VISl, VISal, LGd and CA1 (CA1
  ignores the movie); PV, SST and VIP interneurons (18% of cortical units each) prefer ``car``,
  ``sunlit`` and ``dark`` -- one feature each, on three different axes (`TYPE_PREFERENCES`).
* **Recording** (`neurrator.simulate.recording`): `simulate_session` -> `SimulatedSession` (spikes
  with per-repeat noise and visual latency, presentations, opto-tagging pulses to which the
  genotype's Cre line responds, quality metrics, electrodes).
* **Truth** (`neurrator.simulate.truth`): `SimulationTruth` (tuning, receptive fields, noise-free
  rates, strongest features, captions ...) saved as ``<name>.truth.npz`` (`truth_path`, `load_truth`).
* **Writing** (`neurrator.simulate.writing`): `write_simulated_session` -> the NWB file in the Allen
  Visual Coding layout.
* **Global null** (`neurrator.simulate.null`): any session (a `Session`, or an NWB file) -> the same
  session with every unit's spikes circularly shifted by its own lag within every repeat
  (`global_null_session`, `write_global_null`): rates and autocorrelation kept, stimulus locking gone,
  the session on which every statistical test must find nothing.

Defaults (the demo's data): 300 units (38 per interneuron class), 12 back-to-back repeats of a
900-frame movie, 5 captions per frame, 60 opto pulses; a ~450 s session, ~14 MB file, written in a few
seconds. Tests use e.g. 40 units x 4 repeats x 90 frames. Deterministic for its arguments.

Examples
--------
A pseudo-mouse: three mice, one movie, one tagged class each.

>>> sims = [simulate_session(n_units=40, n_repeats=2, n_frames=30, seed=s, cre_line=c)
...         for s, c in enumerate(("SST", "PV", "VIP"))]
>>> sorted({str(t) for s in sims for t in s.truth.cell_type[s.truth.opto_responsive]})
['PV', 'SST', 'VIP']
"""

from neurrator.simulate.captions import (
    FEATURE_GROUPS,
    FEATURE_NAMES,
    FEATURE_SYNONYMS,
    STATIC_FEATURES,
    mentioned_features,
    mentions_feature,
)
from neurrator.simulate.movie import Movie, make_movie, simulate_movie
from neurrator.simulate.null import circular_shift_spikes, global_null_session, repeat_spans, write_global_null
from neurrator.simulate.population import REGIONS, TYPE_FRACTIONS, TYPE_PREFERENCES
from neurrator.simulate.recording import CRE_LINES, SimulatedSession, simulate_session
from neurrator.simulate.truth import SimulationTruth, load_truth, truth_path
from neurrator.simulate.writing import add_captions_to_nwbfile, write_simulated_session

__all__ = [
    "CRE_LINES",
    "FEATURE_GROUPS",
    "FEATURE_NAMES",
    "FEATURE_SYNONYMS",
    "REGIONS",
    "STATIC_FEATURES",
    "TYPE_FRACTIONS",
    "TYPE_PREFERENCES",
    "Movie",
    "SimulatedSession",
    "SimulationTruth",
    "add_captions_to_nwbfile",
    "circular_shift_spikes",
    "global_null_session",
    "load_truth",
    "make_movie",
    "mentioned_features",
    "mentions_feature",
    "repeat_spans",
    "simulate_movie",
    "simulate_session",
    "truth_path",
    "write_global_null",
    "write_simulated_session",
]
