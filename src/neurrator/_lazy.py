"""A package's public names -> imported on first use (PEP 562), so a face costs nothing until a name is used.

Each sub-package's ``__init__`` lists, per module, the names it hands on; ``lazy_face`` returns the
module-level ``__getattr__`` and ``__dir__`` that import the owning module when a name is first asked
for, and the package's ``__all__`` (for tab completion and ``from package import *``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence

__all__ = ["lazy_face", "missing_package_error"]

#: Where a third-party package a name needs comes from, for the error when it is missing.
INSTALL_HINTS = {
    "av": "pip install av (PyAV, to read video files)",
    "cebra": "pip install cebra (only the peer benchmark needs it)",
}


def missing_package_error(name: str, err: ModuleNotFoundError) -> ImportError:
    """The error for a public name whose module needs a package that is not installed."""
    pkg = (err.name or "").split(".")[0]
    hint = INSTALL_HINTS.get(pkg, f"pip install {pkg}, or reinstall neurrator (pip install -e .)")
    return ImportError(f"{name} needs the package {pkg!r}, which is not installed: {hint}")


def lazy_face(package: str, where: Mapping[str, Sequence[str]]
              ) -> tuple[Callable[[str], object], Callable[[], list[str]], list[str]]:
    """(``__getattr__``, ``__dir__``, ``__all__``) for ``package`` whose module ``m`` owns ``where[m]``.

    >>> getattr_, dir_, all_ = lazy_face("neurrator.stats", {"resampling": ["scene_blocks"]})
    >>> all_
    ['scene_blocks']
    >>> getattr_("scene_blocks").__name__
    'scene_blocks'
    """
    owner = {name: module for module, names in where.items() for name in names}
    public = sorted(owner)

    def __getattr__(name: str) -> object:
        module = owner.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        try:
            mod = importlib.import_module(f"{package}.{module}")
        except ModuleNotFoundError as err:
            if (err.name or "").startswith("neurrator"):
                raise
            raise missing_package_error(f"{package}.{name}", err) from err
        return getattr(mod, name)

    def __dir__() -> list[str]:
        return sorted(set(public) | {module.split(".")[0] for module in where})

    return __getattr__, __dir__, public
