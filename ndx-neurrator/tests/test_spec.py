"""The committed YAML is what the generator writes, is valid schema language, and is what the wheel ships."""

from __future__ import annotations

import importlib.util
from importlib.resources import files
from pathlib import Path

import pynwb
import pytest
from hdmf.testing.validate_spec import validate_spec
from jsonschema.exceptions import ValidationError

NDX_ROOT = Path(__file__).resolve().parents[1]
REPO_ROOT = NDX_ROOT.parent
# hdmf's validate_spec uses jsonschema.RefResolver, deprecated upstream; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:jsonschema.RefResolver is deprecated:DeprecationWarning")

SPEC_DIR = REPO_ROOT / "spec"
YAMLS = ("ndx-neurrator.namespace.yaml", "ndx-neurrator.extensions.yaml")
META_SCHEMA = Path(pynwb.__file__).parent / "nwb-schema" / "nwb.schema.json"


def _generator():
    path = NDX_ROOT / "src" / "spec" / "create_extension_spec.py"
    spec = importlib.util.spec_from_file_location("create_extension_spec", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", YAMLS)
def test_committed_yaml_matches_generator(tmp_path, name):
    _generator().write_spec(tmp_path)
    generated = (tmp_path / name).read_text()
    committed = (SPEC_DIR / name).read_text()
    assert generated == committed, (
        f"spec/{name} differs from what ndx-neurrator/src/spec/create_extension_spec.py writes; "
        "run the script and commit the result"
    )


@pytest.mark.parametrize("name", YAMLS)
def test_yaml_is_valid_nwb_schema_language(name):
    assert META_SCHEMA.is_file(), f"pynwb ships no nwb.schema.json at {META_SCHEMA}"
    validate_spec(SPEC_DIR / name, META_SCHEMA)


def test_meta_schema_rejects_a_broken_spec(tmp_path):
    """validate_spec really checks: a type with an unknown key is refused."""
    broken = (SPEC_DIR / YAMLS[1]).read_text().replace("neurodata_type_inc: NWBDataInterface", "neurodata_type_inc: 7", 1)
    path = tmp_path / "broken.extensions.yaml"
    path.write_text(broken)
    with pytest.raises(ValidationError):
        validate_spec(path, META_SCHEMA)


def test_no_float16_in_schema():
    for name in YAMLS:
        text = (SPEC_DIR / name).read_text()
        assert "float16" not in text and "half" not in text.lower().split(), name


def test_installed_package_ships_the_committed_yaml():
    shipped = files("ndx_neurrator") / "spec"
    if not shipped.is_dir():
        pytest.fail(f"the installed ndx_neurrator has no spec/ folder at {shipped}; install the wheel, not from source")
    for name in YAMLS:
        assert (shipped / name).read_text() == (SPEC_DIR / name).read_text(), (
            f"installed {name} is stale: pip install --no-deps --force-reinstall ./ndx-neurrator"
        )
