"""Real V4 responses (Cowley et al. 2023) decoded into the features of each backbone: how well the decoded
features identify images never trained on, tiny (random CLIP ViT) vs efficientnet_lite0 (ImageNet features).

Usage::

    nice -n 10 .venv/bin/python benchmarks/bench_v4_backbones.py            # appends to RESULTS.md
    nice -n 10 .venv/bin/python benchmarks/bench_v4_backbones.py --no-write

What runs: the V4 counts (50 units, 640 images, 6-10 repeats; ``../shared/fixtures/real/v4_cowley_210325``)
are converted with `neurrator.io.count_files.convert_counts` and read back as a flashed-image session; the
split holds ``--test-images`` and ``--val-images`` whole images out of training
(`neurrator.data.splits.split_by_image`, seed 0). For each backbone the targets of the 640 COLOUR images
(read from the zip: sessions still reach the backbone in grey until issue 27.2 lands) are computed, and two
decoders map the 50 units' counts to them: neurrator's encoder (`train_encoder`, the pipeline's defaults,
``--epochs``) and a closed-form ridge from each presentation's window count (lambda chosen on the validation
images). Identification (`neurrator.decode.fidelity.frame_identification`, centred on the training mean
map): the true image's rank among the test images only, per single presentation and with the predictions
averaged over each test image's repeats. Chance: 1/T and 5/T. A third row, ``pixels16`` (16 x 16 grey
pixels as one 256-d token), is the floor the issue compares against.
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from _hardware import append_results, hardware

from neurrator.component_config import linear_rank_for
from neurrator.config import NarrateConfig
from neurrator.data.binning import bin_session
from neurrator.data.session import load_session
from neurrator.data.stimuli import FLASHED_IMAGES
from neurrator.decode.fidelity import frame_identification, training_mean_map
from neurrator.io.count_files import convert_counts, read_image_set
from neurrator.models.backbones import load_backbone
from neurrator.models.prediction import predict
from neurrator.models.training import train_encoder

V4 = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "real" / "v4_cowley_210325"


def _pixels16(images: np.ndarray) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    g = images.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) if images.ndim == 4 else images
    x = F.interpolate(torch.from_numpy(np.asarray(g, np.float32))[:, None], size=(16, 16), mode="area")
    return x.reshape(len(images), 1, 256).numpy() / 255.0


def _identify(pred: np.ndarray, frames: np.ndarray, targets: np.ndarray, test_images: np.ndarray,
              mean_map: np.ndarray) -> dict[str, float]:
    """top1/top5 among the test images, single presentations and repeat-averaged per image."""
    local = np.searchsorted(test_images, frames)
    cand = targets[test_images]
    single = frame_identification(pred, local, cand, fps=1.0, mean_map=mean_map)
    avg = np.stack([pred[local == i].mean(axis=0) for i in range(test_images.size)])
    image = frame_identification(avg, np.arange(test_images.size), cand, fps=1.0, mean_map=mean_map)
    return {"top1": single["top1"], "top5": single["top5"], "avg_top1": image["top1"], "avg_top5": image["top5"]}


def _ridge(binned, split, targets: np.ndarray) -> np.ndarray:
    """Closed-form ridge: window counts (P, N) -> flattened targets; lambda on the validation images. (P, ...)"""
    b = binned.bins_per_frame
    x = binned.counts.reshape(-1, b, binned.counts.shape[1]).sum(axis=1).astype(np.float64)
    mu, sd = x[split.train].mean(0), x[split.train].std(0) + 1e-9
    z = (x - mu) / sd
    y = targets[binned.frame].reshape(len(binned.frame), -1)
    ym = y[split.train].mean(0)
    xt, yt = z[split.train], y[split.train] - ym
    best, best_err = None, np.inf
    for lam in (1.0, 10.0, 100.0, 1000.0, 10000.0):
        w = np.linalg.solve(xt.T @ xt + lam * np.eye(xt.shape[1]), xt.T @ yt)
        err = float(((z[split.val] @ w + ym - y[split.val]) ** 2).mean())
        if err < best_err:
            best, best_err = w, err
    return (z @ best + ym).reshape((len(binned.frame),) + targets.shape[1:]).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--test-images", type=int, default=120)
    ap.add_argument("--val-images", type=int, default=40)
    ap.add_argument("--epochs", type=int, default=NarrateConfig().train.max_epochs)
    ap.add_argument("--backbones", default="tiny,efficientnet_lite0,pixels16")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    t0 = time.time()
    config = NarrateConfig.from_options(stimulus="natural_scenes", epochs=args.epochs, n_test_images=args.test_images,
                                        n_val_images=args.val_images)
    with tempfile.TemporaryDirectory() as tmp:
        path = convert_counts(V4 / "responses_raw_210325.npy", V4 / "images_210325.zip", Path(tmp) / "v4.nwb",
                              region="V4")
        session = load_session(path, stimulus="natural_scenes", fetch_movie=False)
    images = read_image_set(V4 / "images_210325.zip")  # (640, 112, 112, 3): colour
    binned = bin_session(session, kind="flashed_images", window_bins=config.train.window_bins,
                         window_s=config.image_window_s, latency_s=config.image_latency_s)
    split = FLASHED_IMAGES.split(binned.frame, binned.repeat, n_val_repeats=2, n_test_repeats=2,
                                 n_val_images=args.val_images, n_test_images=args.test_images, seed=config.seed,
                                 label="v4")
    test_images = np.unique(binned.frame[split.test])
    train_cfg = dataclasses.replace(config.train, offset_bins=0)
    rows = []
    for name in args.backbones.split(","):
        t = time.time()
        if name == "pixels16":
            targets, spec = _pixels16(images), None
        else:
            bb = load_backbone(name, preprocessing=config.preprocessing, seed=config.seed)
            targets = np.concatenate([bb.embed(images[i:i + 32]) for i in range(0, len(images), 32)])
            spec = bb.spec
        t_targets = time.time() - t
        train_frames = np.unique(binned.frame[split.train])
        mean_map = training_mean_map(targets, train_frames)
        rank = linear_rank_for(config.model.linear_rank, n_patches=targets.shape[1], dim=targets.shape[2],
                               n_frames=len(np.unique(binned.frame)))
        arch = dataclasses.replace(config.model, linear_rank=rank).for_data(
            n_units=binned.n_units, n_patches=targets.shape[1], dim=targets.shape[2],
            window_bins=config.train.window_bins)
        t = time.time()
        trained = train_encoder(binned, targets, split, config=train_cfg, device="cpu", seed=config.seed,
                                progress=False, encoder=arch, target_spec=spec, stimulus="natural_scenes")
        pred = predict(trained, binned, split.test)
        t_train = time.time() - t
        enc = _identify(pred, binned.frame[split.test], targets, test_images, mean_map)
        rid = _identify(_ridge(binned, split, targets)[split.test], binned.frame[split.test], targets, test_images,
                        mean_map)
        rows.append((name, targets.shape, enc, rid, t_targets, t_train))
        print(name, targets.shape, "encoder", enc, "ridge", rid, f"targets {t_targets:.0f} s, train {t_train:.0f} s",
              flush=True)
    T = test_images.size
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    lines = ["| backbone | targets | decoder | top-1 single | top-5 single | top-1 repeat-avg | top-5 repeat-avg | "
             "targets / train s |", "|---|---|---|---|---|---|---|---|"]
    for name, shape, enc, rid, tt, tr in rows:
        for dec, r in (("encoder", enc), ("ridge", rid)):
            lines.append(f"| {name} | {shape[1]} x {shape[2]} | {dec} | {r['top1']:.3f} | {r['top5']:.3f} | "
                         f"{r['avg_top1']:.3f} | {r['avg_top5']:.3f} | {tt:.0f} / {tr:.0f} |")
    text = (f"\n## Real V4 counts: tiny vs efficientnet_lite0 targets, unseen-image identification (issue 27.5)\n\n"
            f"{datetime.now(timezone.utc):%Y-%m-%d}, commit {commit}, `benchmarks/bench_v4_backbones.py "
            f"--epochs {args.epochs}`. {hardware('cpu')}. V4 fixture (Cowley et al. 2023, session 210325: 50 "
            f"units, 640 colour images, 4,840 presentations) converted by `neurrator convert`; {T} test and "
            f"{args.val_images} validation images never trained on; identification of the true image among the "
            f"{T} test images (chance top-1 {1 / T:.4f}, top-5 {5 / T:.4f}), per single presentation and with the "
            f"predictions averaged over each image's repeats. Whole run {time.time() - t0:.0f} s.\n\n"
            + "\n".join(lines) + "\n")
    print(text)
    if not args.no_write:
        append_results(text)


if __name__ == "__main__":
    main()
