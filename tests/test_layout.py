"""The floor plan holds: stage sub-packages import downwards only, no module passes 500 lines, every face
resolves its names, and the light imports stay light (no torch for `import neurrator` or the report)."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import neurrator

SRC = Path(neurrator.__file__).parent
#: The stages in data-flow order: a stage may import itself and the stages before it, never one after.
STAGES = ("stats", "io", "data", "models", "decode", "sae", "analysis", "nwb", "report")
#: Top-level modules any stage may import (io: errors only).
SHARED = {"errors", "_lazy", "config", "component_config"}
#: Never imported from inside a stage.
ABOVE = {"pipeline", "cli", "process", "simulate", "__main__"}


def _own_imports(path: Path) -> list[tuple[int, str]]:
    """(line, neurrator module) of every import in a file, function bodies included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.startswith("neurrator"):
            mods = [node.module] if node.module != "neurrator" else [f"neurrator.{a.name}" for a in node.names]
            found += [(node.lineno, m) for m in mods]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("neurrator")]
    return found


def _stage_modules():
    return sorted(p for stage in STAGES for p in (SRC / stage).rglob("*.py"))


def _violations(path: Path) -> list[str]:
    stage = path.relative_to(SRC).parts[0]
    allowed = set(STAGES[: STAGES.index(stage) + 1])
    bad = []
    for line, mod in _own_imports(path):
        top = mod.split(".")[1] if "." in mod else ""
        if top in ABOVE:
            bad.append(f"{path.relative_to(SRC)}:{line} imports {mod} (above every stage)")
        elif stage == "io" and top not in ("io", "errors", "_lazy"):
            bad.append(f"{path.relative_to(SRC)}:{line} imports {mod} (io imports only errors)")
        elif top in STAGES and top not in allowed:
            bad.append(f"{path.relative_to(SRC)}:{line} imports {mod} (stage {top} comes after {stage})")
        elif top not in STAGES and top not in SHARED and top:
            bad.append(f"{path.relative_to(SRC)}:{line} imports {mod} (not a stage or a shared module)")
    return bad


def test_stages_import_downwards_only():
    bad = [v for p in _stage_modules() for v in _violations(p)]
    assert not bad, "\n".join(bad)


def test_the_rule_catches_an_upward_import(tmp_path, monkeypatch):
    """The checker itself: a data module that imports the models is reported."""
    fake_src = tmp_path / "neurrator"
    (fake_src / "data").mkdir(parents=True)
    bad = fake_src / "data" / "bad.py"
    bad.write_text("def f():\n    from neurrator.models.training import train_encoder\n    from neurrator.pipeline import analyse\n")
    monkeypatch.setattr(sys.modules[__name__], "SRC", fake_src)
    found = _violations(bad)
    assert len(found) == 2 and "stage models comes after data" in found[0] and "above every stage" in found[1]


def test_no_module_over_500_lines():
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py") if (n := len(p.read_text().splitlines())) > 500}
    assert not long, long


@pytest.mark.parametrize("face", ["neurrator", *(f"neurrator.{s}" for s in STAGES)])
def test_every_public_name_of_a_face_resolves(face):
    module = importlib.import_module(face)
    assert module.__all__, face
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{face}.{name}"
    assert set(module.__all__) <= set(dir(module))


def test_a_face_says_what_it_lacks():
    with pytest.raises(AttributeError, match="has no attribute 'no_such_verb'"):
        neurrator.data.no_such_verb  # noqa: B018


def _modules_loaded(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(' '.join(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_import_neurrator_is_light():
    loaded = _modules_loaded("import neurrator as nr; nr.NarrateConfig; dir(nr)")
    assert "torch" not in loaded and "transformers" not in loaded and "pynwb" not in loaded


def test_the_report_never_imports_torch_or_the_models():
    mods = [f"neurrator.report.{p.stem}" for p in (SRC / "report").glob("*.py") if p.stem != "__init__"]
    loaded = _modules_loaded("; ".join(f"import {m}" for m in mods))
    assert "torch" not in loaded
    assert not {m for m in loaded if m.startswith("neurrator.models")}
