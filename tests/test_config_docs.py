"""Every field of the configuration dataclasses is documented by the string under it (an attribute
docstring, as PEP 257 and Sphinx autodoc read it), and no class docstring keeps an "Attributes" list."""

from __future__ import annotations

import ast
import dataclasses
import importlib
from pathlib import Path

import pytest

import neurrator

MODULES = ("neurrator.config", "neurrator.component_config")


def _is_dataclass(node: ast.ClassDef) -> bool:
    for deco in node.decorator_list:
        target = deco.func if isinstance(deco, ast.Call) else deco
        name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", None)
        if name == "dataclass":
            return True
    return False


def _is_string(node: ast.stmt | None) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def field_docs(source: str) -> dict[str, dict[str, str | None]]:
    """Per dataclass of ``source``: each field (an annotated name in the class body, ClassVar excepted)
    and the string right under it, None when there is none."""
    out: dict[str, dict[str, str | None]] = {}
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.ClassDef) and _is_dataclass(node)):
            continue
        fields: dict[str, str | None] = {}
        for stmt, after in zip(node.body, [*node.body[1:], None]):
            if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
                continue
            if "ClassVar" in ast.unparse(stmt.annotation):
                continue
            fields[stmt.target.id] = after.value.value if _is_string(after) else None
        out[node.name] = fields
    return out


def _source(module: str) -> str:
    path = Path(neurrator.__file__).parent / (module.removeprefix("neurrator.").replace(".", "/") + ".py")
    return path.read_text(encoding="utf-8")


CLASSES = [(m, c) for m in MODULES for c in field_docs(_source(m))]


def test_the_config_dataclasses_are_found():
    names = {c for _, c in CLASSES}
    assert {"NarrateConfig", "TrainConfig", "EncoderConfig", "SAEConfig", "AnalysisConfig", "SubsetPlan"} <= names


@pytest.mark.parametrize(("module", "name"), CLASSES)
def test_every_field_has_a_docstring_under_it(module, name):
    docs = field_docs(_source(module))[name]
    # the parse sees exactly the dataclass's fields
    assert set(docs) == {f.name for f in dataclasses.fields(getattr(importlib.import_module(module), name))}
    missing = sorted(f for f, doc in docs.items() if doc is None or not doc.strip())
    assert not missing, f"{module}.{name}: fields without a docstring under them: {', '.join(missing)}"


@pytest.mark.parametrize(("module", "name"), CLASSES)
def test_class_docstring_has_no_attributes_section(module, name):
    doc = ast.get_docstring(next(n for n in ast.parse(_source(module)).body
                                 if isinstance(n, ast.ClassDef) and n.name == name)) or ""
    lines = [line.strip() for line in doc.splitlines()]
    assert doc.strip(), f"{name} has no class docstring"
    assert not any(a == "Attributes" and b and set(b) == {"-"} for a, b in zip(lines, lines[1:])), \
        f"{name}'s class docstring still has an Attributes section: document each field under it instead"


def test_a_field_without_a_docstring_is_caught():
    source = '''
from dataclasses import dataclass
from typing import ClassVar

@dataclass(frozen=True)
class Example:
    """Summary."""

    documented: int = 1
    """What it is."""
    bare: int = 2
    empty: int = 3
    """  """
    NAMES: ClassVar[tuple] = ()
    last: int = 4
'''
    assert field_docs(source) == {"Example": {"documented": "What it is.", "bare": None, "empty": "  ", "last": None}}
