"""neurrator: narrate what neurons in visual cortex encode, from any subset of recorded units.

Spike counts -> predicted CLIP patch tokens -> a frozen multimodal language model writes a sentence,
checked by a sparse autoencoder; everything is stored in NWB with the ndx-neurrator extension.
"""

from importlib.metadata import PackageNotFoundError, version

from neurrator.errors import NeurratorError

try:
    __version__ = version("neurrator")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["NeurratorError", "__version__"]
