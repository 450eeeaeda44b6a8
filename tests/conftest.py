"""Shared fixtures: deterministic seeds, the real-file folder, and markers skipped when absent."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
REAL_FIXTURES = REPO.parent / "shared" / "fixtures" / "real"


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    np.random.seed(0)
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never reach the network: the Allen warehouse lookup refuses at once (its own tests use the
    local stand-in and unset this)."""
    monkeypatch.setenv("NEURRATOR_OFFLINE", "1")


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """One intra-op thread for the whole suite: the tensors are tiny, and with other processes on the 2
    cores OpenMP spin-waiting made 2 threads 10-20x slower (measured while developing)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def real_fixtures() -> Path:
    """The folder of real NWB files written by other projects (skips when absent)."""
    if not REAL_FIXTURES.is_dir():
        pytest.skip(f"real NWB fixtures not found at {REAL_FIXTURES}")
    return REAL_FIXTURES


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        has_gpu = False
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU; none available")
    skip_net = pytest.mark.skip(reason="needs the network; tests never reach it here")
    for item in items:
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(skip_gpu)
        if "network" in item.keywords:
            item.add_marker(skip_net)



@pytest.fixture(scope="session")
def small_sim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small simulated Allen-layout session (60 units, 5 repeats of a 300-frame movie), written once."""
    from neurrator.simulate import write_simulated_session

    path = tmp_path_factory.mktemp("sim") / "sub-sim0_ses-small.nwb"
    write_simulated_session(path, n_units=60, n_repeats=5, n_frames=300, seed=0)
    return path
