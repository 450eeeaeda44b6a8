"""The docstring examples of neurrator's modules run and give what they show (examples marked SKIP do
not run: they need files or models)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import neurrator

MODULES = sorted(m.name for m in pkgutil.walk_packages(neurrator.__path__, prefix="neurrator.")
                 if not m.name.endswith("__main__"))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
