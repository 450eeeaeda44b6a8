"""Size and write time of a derived NWB file at real dimensions (576 patches x 1024, issue 10.1).

Usage::

    .venv/bin/python benchmarks/bench_derived_size.py                       # rank 64, basis stored once
    .venv/bin/python benchmarks/bench_derived_size.py --basis-layout twice  # basis also inside the encoder weights
    .venv/bin/python benchmarks/bench_derived_size.py --rank 256 --no-append

Random weights of the real sizes: an encoder whose linear readout basis is (rank, 576 * 1024) float32
plus per-unit weights for 2,000 units; a TopK SAE with 16,384 latents over 1,024-d (W_enc, W_dec,
biases, float32); predictions of 32 subsets x 30 windows, stored compactly as coefficients in the
encoder's readout basis (``neurrator.compression``) with the measured error per window, plus
``--full-windows`` windows kept exactly; the narrations (one table per subset) and every analysis table
(2,000 units, 2,000 x 200 concept-tuning rows). The predictions are the readout of random coefficients
plus an out-of-span residual of 5 % of the variance (what the encoder's nonlinear path adds), so the
stored error is that residual.

``--basis-layout once`` stores the readout basis once, as the PatchBasis, and leaves it out of the
encoder's safetensors (the loader puts it back from the PatchBasis); ``twice`` keeps it in both, as
today's checkpoint does. Reported: file size by container, write and read-back time, and the
reconstruction error stored in the file.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np
from pynwb import NWBHDF5IO

import ndx_neurrator as ndx
from ndx_neurrator.testing import mock_NWBFile, safetensors_bytes
from neurrator.compression import compress_windows, encoder_readout_basis

from _hardware import append_results, hardware

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

    m = N_PATCHES * DIM
    lin_basis = np.linalg.qr(rng.standard_normal((args.rank, 4096)).T)[0].T  # orthonormal rows in 4096 dims
    lin_basis = (np.tile(lin_basis, (1, m // 4096 + 1))[:, :m] * np.sqrt(4096 / m)).astype(np.float32)
    lin_basis += (rng.standard_normal(lin_basis.shape, dtype=np.float32) * np.float32(1e-3))
    lin_scale = rng.uniform(0.5, 2.0, args.rank).astype(np.float32)
    target_mean = rng.standard_normal((N_PATCHES, DIM), dtype=np.float32)
    target_std = rng.uniform(0.5, 1.5, DIM).astype(np.float32)
    tensors = {"lin_weight": rng.standard_normal((args.units, 4, args.rank), dtype=np.float32),
               "lin_scale": lin_scale, "target_mean": target_mean, "target_std": target_std,
               "trunk": rng.standard_normal((4, 256, 256), dtype=np.float32)}
    if args.basis_layout == "twice":
        tensors["lin_basis"] = lin_basis
    enc = ndx.create_encoder_checkpoint(
        safetensors_bytes(tensors), name="encoder", units_table=units, unit_rows=np.arange(args.units),
        architecture="set_pool_transformer", config={"linear_rank": args.rank}, backbone_id="llava-hf/llava-1.5-7b-hf",
        backbone_layer=-2, n_patches=N_PATCHES, dim=DIM, preprocessing="pad to square, 336",
        stimulus="natural_movie_one", training_metrics={}, validation_metrics={},
    )
    module.add(enc)
    del tensors

    comps, mean = encoder_readout_basis(lin_basis, lin_scale, target_mean, target_std)
    del lin_basis
    basis = ndx.create_patch_basis(comps, mean=mean, name="patch_basis", kind="encoder_readout")
    module.add(basis)

    t0 = time.perf_counter()
    flat_c = comps.reshape(args.rank, -1)
    stats = []
    collection_tables = {}
    for s in range(args.subsets):
        coef_true = rng.standard_normal((args.windows, args.rank), dtype=np.float32)
        x = coef_true @ flat_c
        signal = float(((x - x.mean(0)) ** 2).mean())
        x += rng.standard_normal(x.shape, dtype=np.float32) * np.float32(np.sqrt(0.05 * signal))
        x += mean.reshape(-1)
        packed = compress_windows(x.reshape(args.windows, N_PATCHES, DIM), components=comps, mean=mean)
        keep = min(args.full_windows - s * 0, args.windows) if s == 0 else 0  # exact windows: first subset only
        extra = {}
        if keep:
            extra = {"full_windows": np.arange(keep), "full_data": x[:keep].reshape(keep, N_PATCHES, DIM)}
        module.add(ndx.create_patch_predictions(
            name=f"predictions_{s}", timestamps=np.arange(args.windows) * 1.0 + 0.5,
            frame=np.arange(args.windows) * 30, unit_subsets=subsets, unit_subset_rows=s, encoder=enc,
            coefficients=packed.coefficients, basis=basis, relative_mse=packed.relative_mse, cosine=packed.cosine,
            **extra,
        ))
        stats.append(packed.relative_mse)
        start = np.arange(args.windows) * 1.0
        collection_tables[s] = dict(start_time=start, stop_time=start + 0.25,
                                    text=[f"a scene with a tree and a car, window {i}" for i in range(args.windows)],
                                    frame=np.arange(args.windows) * 30, narrator_model="llava-hf/llava-1.5-7b-hf",
                                    prompt="Describe this scene in one sentence.",
                                    reference_text=["a tree next to a road"] * args.windows,
                                    similarity=rng.uniform(0, 1, args.windows))
    compress_s = time.perf_counter() - t0
    del comps
    narr = ndx.create_narrations_collection(collection_tables, unit_subsets=subsets)
    module.add(narr)

    sae = {"W_enc": rng.standard_normal((16384, DIM), dtype=np.float32),
           "W_dec": rng.standard_normal((16384, DIM), dtype=np.float32),
           "b_enc": np.zeros(16384, np.float32), "b_dec": np.zeros(DIM, np.float32)}
    module.add(ndx.create_sparse_autoencoder(
        safetensors_bytes(sae), name="sae", architecture="topk", config={"n_latents": 16384, "k": 32},
        concept_labels=[f"concept {i}" for i in range(16384)], concept_label_sources="train-frame captions",
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
    return nwbfile, np.concatenate(stats), compress_s


def sizes_by_container(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                key = name.split("/")[2] if name.startswith("processing/neurrator/") else name.split("/")[0]
                key = "predictions_*" if key.startswith("predictions_") else key
                out[key] = out.get(key, 0) + obj.id.get_storage_size()
        f.visititems(visit)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--basis-layout", choices=("once", "twice"), default="once")
    ap.add_argument("--units", type=int, default=2000)
    ap.add_argument("--subsets", type=int, default=32)
    ap.add_argument("--windows", type=int, default=30)
    ap.add_argument("--full-windows", type=int, default=2, help="windows kept as exact float32 (first subset)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args()

    t0 = time.perf_counter()
    nwbfile, rel, compress_s = build_file(args)
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
            p = io.read().processing["neurrator"]["predictions_3"]
            window = p.get_windows([0])
        read_s = time.perf_counter() - t0
    full = args.subsets * args.windows * N_PATCHES * DIM * 4
    lines = [
        f"file size                      {size / 1e6:8.1f} MB  (full float32 predictions alone would be {full / 1e9:.2f} GB)",
        f"write time                     {write_s:8.1f} s   (building containers {build_s:.1f} s, of which compressing {compress_s:.1f} s)",
        f"open + reconstruct one window  {read_s:8.2f} s   -> {window.shape} {window.dtype}",
        f"stored relative MSE            median {np.median(rel):.4f}, max {rel.max():.4f} (5 % out-of-span residual planted)",
    ] + [f"  {k:<28} {v / 1e6:8.1f} MB" for k, v in parts.items() if v > 1e5]
    print("\n".join(lines))
    if not args.no_append:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        append_results(
            f"\n## Derived file at real dimensions (bench_derived_size.py, {stamp})\n\n"
            f"576 x 1024 patches; encoder readout rank {args.rank}, basis stored {args.basis_layout}; SAE 16,384 x 1,024 "
            f"(W_enc + W_dec float32); {args.subsets} subsets x {args.windows} windows as coefficients, "
            f"{args.full_windows} exact window(s); {args.units} units, {args.units} x 200 concept-tuning rows.\n"
            f"{hardware()}\n\n```\n" + "\n".join(lines) + "\n```\n"
        )


if __name__ == "__main__":
    main()
