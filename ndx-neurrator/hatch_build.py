"""Hatch build hook: put the schema YAML (single copy: ../spec) into the wheel and the sdist.

From a source checkout the YAML is read from the repository's top-level spec/; from an unpacked sdist
(which carries it as spec/) it is read from there. The wheel gets it as ndx_neurrator/spec/*.yaml,
where ndx_neurrator/__init__.py loads it.
"""

from __future__ import annotations

from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

YAMLS = ("ndx-neurrator.namespace.yaml", "ndx-neurrator.extensions.yaml")


class SpecHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict) -> None:
        root = Path(self.root)
        candidates = (root.parent / "spec", root / "spec")
        for folder in candidates:
            if all((folder / name).is_file() for name in YAMLS):
                break
        else:
            raise FileNotFoundError(
                f"ndx-neurrator: schema YAML {', '.join(YAMLS)} not found in "
                f"{' or '.join(str(c) for c in candidates)}; run src/spec/create_extension_spec.py"
            )
        dest = "ndx_neurrator/spec" if self.target_name == "wheel" else "spec"
        for name in YAMLS:
            build_data["force_include"][str(folder / name)] = f"{dest}/{name}"
