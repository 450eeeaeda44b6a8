"""Size and write time of a derived NWB file at real dimensions (576 patches x 1024, issue 10.1).

Usage::

    .venv/bin/python benchmarks/bench_derived_size.py                            # what the pipeline writes
    .venv/bin/python benchmarks/bench_derived_size.py --predictions compact-pca  # + a rank-64 PCA basis
    .venv/bin/python benchmarks/bench_derived_size.py --rank 256 --no-append     # the old uncapped rank

The big containers go through the pipeline's own writers, at the real sizes with random weights:
neurrator's ``SpikeEncoder`` for 2,000 units with 576 x 1024 outputs and the linear rank the pipeline
uses (``component_config.linear_rank_for``: 64), written by ``nwb_results.add_encoder_to_nwbfile``; the
predicted patches of 32 subsets x 30 windows, written by ``nwb_results.add_patch_predictions_to_nwbfile``
(``compact``: coefficients in the encoder's own readout, which its weights already hold, every
window's error measured and stored, the worst kept in full). The predictions are the readout of random
coefficients plus an out-of-span residual (``--residual``, 5 % of the variance) standing in for the
encoder's nonlinear path, so the stored error is that residual. Around them: a TopK SAE of the
pipeline's size (1,024 latents over 1,024-d, float32), the narrations (one table per subset) and every
analysis table (2,000 units, 2,000 x 200 concept-tuning rows). Reported: file size by container, write
and read-back time, and the reconstruction error stored in the file.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import h5py
import ndx_neurrator as ndx
import numpy as np
from _hardware import append_results, hardware
from ndx_neurrator.testing import mock_NWBFile, safetensors_bytes
from pynwb import NWBHDF5IO

N_PATCHES, DIM = 576, 1024


def build_file(args) -> tuple:
    rng = np.random.default_rng(args.seed)
    nwbfile = mock_NWBFile()
    from pynwb.misc import Units

    units = Units(name="units", description="random units", resolution=1 / 30000)
    units.add_column(name="region", description="region")
    regions = np.array(["VISp", "VISl", "VISal", "VISpm", "CA1"])
    for i in range(args.units):
        units.add_unit(spike_times=np.sort(rng.uniform(0, 100, 50)), region=regions[i % 5])
    nwbfile.units = units
    module = ndx.get_neurrator_module(nwbfile)
    subsets = ndx.create_unit_subsets(
        [{"label": f"random:{50 + i}:seed{i}", "kind": "random", "unit_idx": np.sort(rng.choice(args.units, 50 + i,
          replace=False)), "seed": i} for i in range(args.subsets)], units_table=units)
    module.add(subsets)

    # The encoder: neurrator's own SpikeEncoder at real sizes (random weights), its linear rank capped as
    # the pipeline caps it, written by the pipeline's writer (safetensors inside an EncoderCheckpoint).
    from types import SimpleNamespace

    import torch

    from neurrator.models.backbones import TargetSpec
    from neurrator.component_config import EncoderConfig, linear_rank_for
    from neurrator.models.encoder import SpikeEncoder
    from neurrator.nwb.results import (
        add_encoder_to_nwbfile,
        add_patch_predictions_to_nwbfile,
        window_order,
    )
    from neurrator.models.training import TrainConfig, TrainedEncoder

    rank = args.rank or linear_rank_for(256, n_patches=N_PATCHES, dim=DIM, n_frames=900)
    config = EncoderConfig(d_model=64, n_latents=16, depth=1, linear_rank=rank).for_data(
        n_units=args.units, n_patches=N_PATCHES, dim=DIM, window_bins=20)
    torch.manual_seed(args.seed)
    model = SpikeEncoder(config=config)
    m = N_PATCHES * DIM
    with torch.no_grad():
        q = torch.linalg.qr(torch.randn(m, rank))[0].T.contiguous()  # orthonormal standardised token maps
        model.set_linear_basis(q, torch.rand(rank) + 0.5)
        model.target_mean.copy_(torch.randn(N_PATCHES, DIM))
        model.target_std.copy_(torch.rand(DIM) + 0.5)
    del q
    trained = TrainedEncoder(
        model=model.eval(), encoder_config=config, train_config=TrainConfig(), history=[],
        unit_ids=np.arange(args.units, dtype=np.int64),
        target_spec=TargetSpec("llava:llava-hf/llava-1.5-7b-hf", -2, N_PATCHES, DIM, "pad to square, 336"),
        stimulus="natural_movie_one")
    t0 = time.perf_counter()
    enc = add_encoder_to_nwbfile(nwbfile, trained, units_table=units, unit_rows=np.arange(args.units),
                                 stimulus="natural_movie_one")
    encoder_s = time.perf_counter() - t0

    # Predictions of 32 subsets x 30 windows: the readout of random coefficients plus an out-of-span
    # residual of 5 % of the variance (standing in for the nonlinear path), written by the pipeline's
    # writer: compact = coefficients in the encoder's readout, errors measured, the worst kept in full.
    comps, mean = enc.readout_basis()
    flat_c = comps.reshape(len(comps), -1)
    results, collection_tables = [], {}
    n_pres = args.subsets * args.windows
    for s in range(args.subsets):
        x = rng.standard_normal((args.windows, len(comps)), dtype=np.float32) @ flat_c
        signal = float(((x - x.mean(0)) ** 2).mean())
        x += rng.standard_normal(x.shape, dtype=np.float32) * np.float32(np.sqrt(args.residual * signal))
        x += mean.reshape(-1)
        pres = np.arange(s, n_pres, args.subsets)
        results.append(SimpleNamespace(presentations=pres, frames=pres % 900,
                                       predicted=x.reshape(args.windows, N_PATCHES, DIM)))
        start = pres * 1.0
        collection_tables[s] = dict(start_time=start, stop_time=start + 0.25,
                                    text=[f"a scene with a tree and a car, window {i}" for i in range(args.windows)],
                                    frame=pres % 900, narrator_model="llava-hf/llava-1.5-7b-hf",
                                    prompt="Describe this scene in one sentence.",
                                    reference_text=["a tree next to a road"] * args.windows,
                                    similarity=rng.uniform(0, 1, args.windows))
    del comps, flat_c
    presentations = SimpleNamespace(start=np.arange(n_pres) * 1.0, stop=np.arange(n_pres) * 1.0 + 0.25)
    order, rows = window_order(results, presentations.start)
    t0 = time.perf_counter()
    pp = add_patch_predictions_to_nwbfile(nwbfile, results, presentations, order=order, rows=rows,
                                          subsets_table=subsets, encoder=enc, storage=args.predictions)
    compress_s = time.perf_counter() - t0
    stats = np.asarray(pp.relative_mse.data if hasattr(pp.relative_mse, "data") else pp.relative_mse)
    n_full = 0 if pp.full_windows is None else len(np.asarray(pp.full_windows))
    del results
    narr = ndx.create_narrations_collection(collection_tables, unit_subsets=subsets)
    module.add(narr)

    L = args.sae_latents  # the pipeline's SAE: 1,024 latents, k 16 (16,384 is the large option)
    sae = {"W_enc": rng.standard_normal((L, DIM), dtype=np.float32),
           "W_dec": rng.standard_normal((L, DIM), dtype=np.float32),
           "b_enc": np.zeros(L, np.float32), "b_dec": np.zeros(DIM, np.float32)}
    module.add(ndx.create_sparse_autoencoder(
        safetensors_bytes(sae), name="sae", architecture="topk", config={"n_latents": L, "k": 16},
        concept_labels=[f"concept {i}" for i in range(L)], concept_label_sources="train-frame captions",
        naming_split="train"))
    del sae

    n, k = args.units, 200
    module.add(ndx.create_unit_neurration(
        units_table=units, unit_rows=np.arange(n), reliability=rng.uniform(0, 1, n), reliability_p=rng.uniform(0, 1, n),
        visually_driven=np.ones(n, bool), preferred_text=["a bright moving bar on the left"] * n,
        top_frames=[rng.choice(900, 10, replace=False) for _ in range(n)], top_concept=["bright"] * n,
        top_concept_r=rng.uniform(0, 1, n), top_concept_q=rng.uniform(0, 1, n), loo_delta=rng.normal(0, 0.01, n),
        loo_ci_lo=rng.normal(-0.01, 0.01, n), loo_ci_hi=rng.normal(0.01, 0.01, n), loo_p=rng.uniform(0, 1, n),
        drive_text=["a bright scene"] * n, baseline_text=["a grey scene"] * n, drive_shift=rng.uniform(0, 1, n),
        drive_p=rng.uniform(0, 1, n)))
    q = rng.uniform(0, 1, n * k)
    module.add(ndx.create_concept_tuning(
        units_table=units, unit_rows=np.repeat(np.arange(n), k), concept=[f"concept {j}" for j in range(k)] * n,
        r=rng.uniform(-1, 1, n * k), p=q, q=q, significant=q < 0.05))
    g = 3 * 2 * k
    module.add(ndx.create_group_comparison(
        group_kind="cell_type", group=["PV", "SST", "VIP"] * (g // 3), source=["tuning"] * (g // 2) + ["decoded"] * (g // 2),
        concept=[f"concept {j % k}" for j in range(g)], effect=rng.normal(size=g), ci_lo=rng.normal(size=g),
        ci_hi=rng.normal(size=g), p=rng.uniform(size=g), q=rng.uniform(size=g), n_units=38, n_null_draws=200))
    module.add(ndx.create_group_separation(
        analysis=["text_classifier"] * 3, group_kind="cell_type", group=["", "", ""], value=[0.7, 0.6, 0.5],
        ci_lo=[0.6] * 3, ci_hi=[0.8] * 3, chance_level=1 / 3, p=0.01, n=90))
    sizes = np.array([1, 3, 10, 30, 100, 300])
    module.add(ndx.create_scaling(
        region=np.repeat(regions, 6).tolist(), n_units=np.tile(sizes, 5), metric="top1", value=rng.uniform(size=30),
        ci_lo=rng.uniform(size=30), ci_hi=rng.uniform(size=30), n_draws=5, baseline=1 / 900,
        crossing_n=np.repeat([10.0, 30, 30, 100, np.nan], 6), crossing_lo=np.repeat([3.0, 10, 10, 30, np.nan], 6),
        crossing_hi=np.repeat([30.0, 100, 100, 300, np.nan], 6)))
    rows = np.repeat(np.arange(args.subsets), 4)
    module.add(ndx.create_decoding_fidelity(
        unit_subsets=subsets, unit_subset_rows=rows, n_units=50 + rows, region="all", cell_type="all", seed=rows,
        split="test", metric=["top1", "centred_cosine", "narration_similarity", "top5"] * args.subsets,
        value=rng.uniform(size=len(rows)), chance_level=1 / 900, ci_lo=0.1, ci_hi=0.2, p_value=0.01, q_value=0.02,
        beats_null=True, null_kind="scene-block permutation"))
    return nwbfile, stats, n_full, encoder_s, compress_s, rank


def sizes_by_container(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                key = name.split("/")[2] if name.startswith("processing/neurrator/") else name.split("/")[0]
                out[key] = out.get(key, 0) + obj.id.get_storage_size()
        f.visititems(visit)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rank", type=int, default=0, help="encoder linear rank (0: the pipeline's cap, 64)")
    ap.add_argument("--predictions", choices=("compact", "compact-pca", "full"), default="compact")
    ap.add_argument("--residual", type=float, default=0.05, help="out-of-span variance fraction planted")
    ap.add_argument("--sae-latents", type=int, default=1024)
    ap.add_argument("--units", type=int, default=2000)
    ap.add_argument("--subsets", type=int, default=32)
    ap.add_argument("--windows", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args()

    t0 = time.perf_counter()
    nwbfile, rel, n_full, encoder_s, compress_s, rank = build_file(args)
    build_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sub-bench_ses-bench_desc-neurrator.nwb"
        t0 = time.perf_counter()
        with NWBHDF5IO(path, "w") as io:
            io.write(nwbfile)
        write_s = time.perf_counter() - t0
        size = path.stat().st_size
        parts = sizes_by_container(path)
        t0 = time.perf_counter()
        with NWBHDF5IO(path, "r") as io:
            p = io.read().processing["neurrator"]["patch_predictions"]
            window = p.get_windows([0])
        read_s = time.perf_counter() - t0
    full = args.subsets * args.windows * N_PATCHES * DIM * 4
    lines = [
        f"file size                      {size / 1e6:8.1f} MB  (full float32 predictions alone would be {full / 1e9:.2f} GB)",
        f"write time                     {write_s:8.1f} s   (building containers {build_s:.1f} s: encoder "
        f"{encoder_s:.1f} s, predictions incl. compression {compress_s:.1f} s)",
        f"open + reconstruct one window  {read_s:8.2f} s   -> {window.shape} {window.dtype}",
        f"stored relative MSE            median {np.median(rel):.4f}, max {rel.max():.4f} "
        f"({args.residual:.0%} out-of-span residual planted); {n_full} windows kept in full",
    ] + [f"  {k:<28} {v / 1e6:8.1f} MB" for k, v in parts.items() if v > 1e5]
    print("\n".join(lines))
    if not args.no_append:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        append_results(
            f"\n## Derived file at real dimensions (bench_derived_size.py, {stamp})\n\n"
            f"`bench_derived_size.py --predictions {args.predictions}`: 576 x 1024 patches; neurrator's SpikeEncoder "
            f"(random weights) with linear rank {rank}, written by `nwb_results.add_encoder_to_nwbfile`; "
            f"{args.subsets} subsets x {args.windows} windows written by `add_patch_predictions_to_nwbfile`; "
            f"SAE {args.sae_latents:,} x 1,024 (W_enc + W_dec float32); {args.units} units, "
            f"{args.units} x 200 concept-tuning rows.\n"
            f"{hardware()}\n\n```\n" + "\n".join(lines) + "\n```\n"
        )


if __name__ == "__main__":
    main()
