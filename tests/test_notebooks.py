"""The notebooks under examples/ are executed in a real Jupyter kernel (nbclient) running this venv's python.

The kernel spec is written into a temporary folder and found through ``JUPYTER_PATH``, so the test needs
no ``ipykernel install`` and never uses a kernel of the machine it runs on.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))
KERNEL = "neurrator-test-venv"

nbformat = pytest.importorskip("nbformat", reason="the test extra (pip install -e '.[test]') brings nbformat")


def test_examples_hold_notebooks_committed_without_outputs():
    assert [p.name for p in NOTEBOOKS] == ["quickstart.ipynb"]
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: commit it without outputs"


@pytest.fixture
def kernel(tmp_path, monkeypatch) -> str:
    """A kernel spec that starts ``sys.executable -m ipykernel_launcher`` offline, on one thread."""
    pytest.importorskip("ipykernel", reason="the test extra brings ipykernel")
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "neurrator test venv", "language": "python",
        # offline like the rest of the suite; one thread: the tensors are tiny and the CPUs shared
        "env": {"NEURRATOR_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    }))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    return KERNEL


def _execute(path: Path, folder: Path, kernel: str):
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    try:
        NotebookClient(nb, timeout=900, kernel_name=kernel, resources={"metadata": {"path": str(folder)}}).execute()
    finally:  # the executed copy, outputs and all, for a look after a failure
        nbformat.write(nb, folder / f"executed-{path.name}")
    return nb


def _text(cell) -> str:
    parts = []
    for out in cell.outputs:
        if out.output_type == "stream":
            parts.append(out.text)
        elif out.output_type in ("execute_result", "display_data"):
            parts.append(out.data.get("text/plain", ""))
    return "".join(parts)


@pytest.mark.slow
def test_kernel_spec_runs_this_venvs_python(kernel, tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import sys, torch; print(sys.executable)\n"
                                                                   "print(torch.get_num_threads())")])
    nbformat.write(nb, tmp_path / "probe.ipynb")
    out = _text(_execute(tmp_path / "probe.ipynb", tmp_path, kernel).cells[0]).split()
    assert out == [sys.executable, "1"]


@pytest.mark.parametrize("env, backend", [({"MPLBACKEND": "svg"}, "svg"), ({}, "agg")])
def test_report_figures_keep_a_notebooks_matplotlib_backend(env, backend):
    """ipykernel sets MPLBACKEND to its inline backend: drawing the report must not switch it to Agg (the
    notebook's own plots would no longer show); without a chosen backend the report draws headless."""
    import os
    import subprocess

    code = ("import matplotlib; from neurrator.report.figures import _plt; plt = _plt(); "
            "plt.close(plt.figure()); print(matplotlib.get_backend().lower())")
    clean = {k: v for k, v in os.environ.items() if k not in ("MPLBACKEND", "DISPLAY", "WAYLAND_DISPLAY")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**clean, **env})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-1] == backend


@pytest.mark.slow
def test_quickstart_runs_on_the_demo_session(kernel, tmp_path):
    nb = _execute(EXAMPLES / "quickstart.ipynb", tmp_path, kernel)
    out = [_text(c) for c in nb.cells if c.cell_type == "code"]
    derived = tmp_path / "neurrator-demo" / "derived" / "sub-sim0" / "sub-sim0_ses-sim0_desc-neurrator.nwb"
    assert (tmp_path / "neurrator-demo" / "source" / "sub-sim0_ses-sim0.nwb").is_file()
    assert derived.is_file() and derived.with_suffix(".html").is_file()
    assert "300 units, 900 frames per repeat" in out[1], "the demo's session"
    assert "narrations from all" in out[2] and str(derived.relative_to(tmp_path)) in out[2]
    assert "counts (43200, " in out[3]  # 12 repeats x 900 frames x 4 bins
    # the notebook's own plot is shown inline; the report's figures (drawn by narrate_session) are not
    images = [i for i, c in enumerate(c for c in nb.cells if c.cell_type == "code")
              if any("image/png" in o.get("data", {}) for o in c.outputs)]
    assert images == [len(out) - 1], images

    from neurrator.report.data import read_derived

    data = read_derived(derived)
    fid = data["fidelity"]
    cos = fid[fid.metric == "centred_patch_cosine"].set_index("label")["value"]
    # the step-by-step table (reusing the file's encoder) shows the file's own numbers
    for label, value in cos.items():
        assert label in out[4], label
        assert f"{value:.6f}" in out[4] or f"{value:.4f}" in out[4], (label, value)
    assert "unit_neurration" in out[5] and "scaling" in out[5]
