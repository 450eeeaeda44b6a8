"""neurrator: narrate what neurons in visual cortex encode, from any subset of recorded units.

Spike counts -> predicted CLIP patch tokens -> a frozen multimodal language model writes a sentence,
checked by a sparse autoencoder; everything is stored in NWB with the ndx-neurrator extension.

The notebook face: ``import neurrator as nr`` is light (no torch, no pynwb) and every name below is
imported on first use (PEP 562); the stages live in sub-packages with faces of their own
(`neurrator.io`, `neurrator.data`, `neurrator.models`, `neurrator.decode`, `neurrator.sae`,
`neurrator.analysis`, `neurrator.stats`, `neurrator.nwb`, `neurrator.report`, `neurrator.simulate`).

Examples
--------
>>> import neurrator as nr
>>> nr.NarrateConfig.from_options(epochs=2, seed=1).train.max_epochs
2
>>> "narrate_session" in dir(nr)
True
"""

from importlib.metadata import PackageNotFoundError, version

from neurrator._lazy import lazy_face
from neurrator.errors import NeurratorError

try:
    __version__ = version("neurrator")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

_WHERE = {
    "config": ("AnalysisConfig", "EncoderConfig", "NarrateConfig", "SAEConfig", "SubsetPlan", "TrainConfig"),
    "pipeline": ("NarrateResult", "SessionAnalysis", "analyse", "narrate_session", "narrate_sessions", "run_demo"),
    "io.count_files": ("convert_counts",),
    "data.session": ("load_session",),
    "data.binning": ("bin_session",),
    "models.loading": ("load_models",),
    "report.data": ("read_derived",),
    "report.html": ("write_report",),
    "report.tables": ("to_pynapple",),
    "simulate.writing": ("write_simulated_session",),
}

_getattr, _dir, _names = lazy_face(__name__, _WHERE)
__all__ = ["NeurratorError", "__version__", *_names]


def __getattr__(name: str) -> object:
    return _getattr(name)


#: The stage sub-packages, listed by ``dir(neurrator)`` for tab completion.
STAGES = ("io", "data", "models", "decode", "sae", "analysis", "stats", "nwb", "report", "simulate")


def __dir__() -> list[str]:
    return sorted(set(__all__) | set(STAGES))
