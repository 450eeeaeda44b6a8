"""The encoder against the decoders a user could pick instead: CEBRA, ridge, kNN on windows and kNN on
population vectors (issue 28), on simulated movie sessions and on real macaque V4 responses to unseen images.

Usage
-----
    .venv/bin/python benchmarks/bench_peers.py                       # 5 simulated sessions + V4, appends RESULTS.md
    .venv/bin/python benchmarks/bench_peers.py --seeds 2 --no-v4 --no-append --cebra-iters 100   # smoke run

What runs
---------
(a) ``--seeds`` simulated sessions (`neurrator.simulate.simulate_session`, seed s and movie seed s, so
    each re-draws the population and the movie), ``tiny`` backbone targets, split by whole repeats
    (2 validation, 2 test). Every method sees the same binned counts and the same split and is scored
    by the project's scorer (`neurrator.decode.fidelity.score_predictions`) on the test repeats:
    top-1, top-5, within 1 s, mean and median frame error (|most similar frame - true frame|, in
    frames), centred patch cosine (centred on the training frames' mean map).

    - encoder: `train_encoder` with the library's default `TrainConfig` / `EncoderConfig` except
      ``--epochs`` (max) and the architecture flags below.
    - CEBRA (Schneider, Lee & Mathis 2023; ``pip install cebra``, optional): CEBRA-Behavior with its
      documented defaults (InfoNCE, cosine distance, temperature 1, lr 3e-4) plus the frame index as a
      continuous label (``conditional='time_delta'``), the ``offset10-model`` of the paper's movie decoding
      on counts per movie frame (one row per presentation, repeats kept apart at transform), output
      dimension ``--cebra-dim``, batch 512, and ``--cebra-iters`` iterations (capped: its default 10,000
      takes hours on 2 shared CPU cores). Decoding: kNN (cosine) in the embedding onto the training
      presentations, the prediction the mean target of the k nearest (k in 1, 5, 10, 20 by validation
      MSE, as for the kNN baselines), so every method is scored on predicted patch tokens.
    - ridge: `neurrator.decode.baselines.ridge_baseline`, bins pooled by 4 (its best setting).
    - kNN: `knn_baseline` on the windows' time course (bins pooled by 4).
    - pv-kNN: `knn_baseline` on population vectors (the window summed).
    - encoder-plain: the same trained encoder with its output blend (ridge mix, soft retrieval, kNN over
      training windows, per subset size) switched off (what the blend adds).

    Per metric: mean over sessions with a 95% t interval, and the paired difference encoder - peer with
    its t interval and the number of sessions where the encoder is ahead. Training time per method.
(b) The subset curve (issue 28.1) on the first ``--subset-seeds`` sessions: the encoder trained once on
    all units, fed ``--draws`` random k-unit subsets, against the same architecture and training
    retrained on each subset (within 1 s on the test repeats; ridge on the subset for scale); and the
    same trained encoder with its blend chosen for exactly those units on the validation repeats
    (`neurrator.models.subset_blend.calibrate_blend`), with the seconds that choice takes.
(c) Real V4 (``../shared/fixtures/real/v4_cowley_210325``; Cowley et al. 2023, GPL-3.0; skipped with a
    reason when absent): 50 neurons x 640 natural images x up to 10 repeats of spike counts in a 100-ms
    window, each shown repeat one presentation (one bin, ``window_bins=1``). ``--v4-splits`` splits by
    image (`split_by_image`, 64 validation and 64 unseen test images, seeds 0..): identification of each
    unseen test showing among all 640 images (top-1, top-5, mean and median rank) and the centred patch
    cosine; CEBRA there uses the ``offset1-model`` and the image index as a discrete label (no time
    context in flashed images).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import io
import subprocess
import sys
import time
import types
import zipfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _hardware import append_results, hardware, publish  # noqa: E402
from bench_encoder import simulated, t_interval  # noqa: E402

from neurrator.data.binning import Binned  # noqa: E402
from neurrator.data.splits import split_by_image, split_repeats  # noqa: E402
from neurrator.decode.baselines import knn_baseline, knn_predict, ridge_baseline  # noqa: E402
from neurrator.decode.chance import duplicate_groups  # noqa: E402
from neurrator.decode.fidelity import score_predictions, training_mean_map  # noqa: E402
from neurrator.models.backbones import load_backbone  # noqa: E402
from neurrator.models.encoder import EncoderConfig  # noqa: E402
from neurrator.models.prediction import predict  # noqa: E402
from neurrator.models.subset_blend import calibrate_blend  # noqa: E402
from neurrator.models.targets import compute_targets  # noqa: E402
from neurrator.models.training import TrainConfig, train_encoder  # noqa: E402

V4 = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures" / "real" / "v4_cowley_210325"
MOVIE_METRICS = ("top1", "top5", "within_1s", "mean_frame_error", "median_frame_error", "centred_patch_cosine")
IMAGE_METRICS = ("top1", "top5", "mean_rank", "median_rank", "centred_patch_cosine")
LOWER_IS_BETTER = {"mean_frame_error", "median_frame_error", "mean_rank", "median_rank"}
KS = (1, 5, 10, 20)


# ------------------------------------------------------------------------------------------ methods


def score(pred, frames, targets, train_frames, groups, fps):
    s = score_predictions(pred, frames, targets, fps=fps, train_mean=training_mean_map(targets, train_frames),
                          groups=groups, n_boot=0, n_perm=0)
    err = np.abs(np.asarray(s["best"]) - frames)
    rank = np.asarray(s["rank"], np.float64)
    return {"top1": s["top1"], "top5": s["top5"], "within_1s": s["within_1s"],
            "mean_frame_error": float(err.mean()), "median_frame_error": float(np.median(err)),
            "mean_rank": float(rank.mean()), "median_rank": float(np.median(rank)),
            "centred_patch_cosine": s["centred_patch_cosine"]}


def cebra_embed(X: np.ndarray, frame: np.ndarray, run: np.ndarray, split, *, args, architecture: str,
                discrete: bool, seed: int) -> tuple[dict, float]:
    """Fit CEBRA on the training rows (label: frame index) and embed every split run by run.
    -> ({"tr", "va", "te": (rows, cebra_dim) float32 tensors}, seconds)."""
    import cebra

    torch.manual_seed(seed)
    idx = {k: np.asarray(v, np.int64) for k, v in zip(("tr", "va", "te"), split)}
    kw = dict(model_architecture=architecture, device="cpu", conditional="time_delta", batch_size=512,
              max_iterations=args.cebra_iters, output_dimension=args.cebra_dim, verbose=False)
    model = cebra.CEBRA(**kw)
    t0 = time.perf_counter()
    label = frame[idx["tr"]].astype(np.int64 if discrete else np.float32)
    model.fit(X[idx["tr"]].astype(np.float32), label)

    def embed(rows):
        out = np.zeros((len(rows), args.cebra_dim), np.float32)
        for r in np.unique(run[rows]):
            m = run[rows] == r
            out[m] = model.transform(X[rows[m]].astype(np.float32))
        return out

    return {k: torch.from_numpy(embed(v)) for k, v in idx.items()}, time.perf_counter() - t0


def cebra_predict(X: np.ndarray, frame: np.ndarray, run: np.ndarray, split, targets: np.ndarray, *, args,
                  architecture: str, discrete: bool, seed: int):
    """`cebra_embed`, then decode by kNN in the embedding (k by validation MSE). -> (test predictions, seconds)."""
    t0 = time.perf_counter()
    emb, _ = cebra_embed(X, frame, run, split, args=args, architecture=architecture, discrete=discrete, seed=seed)
    pred, _ = knn_predict(emb, frame[np.asarray(split[0])], frame[np.asarray(split[1])], targets, ks=KS)
    return pred, time.perf_counter() - t0


def plain(trained, binned, te, unit_idx=None):
    """The same trained encoder without its output blend (beta 1, gamma 0): what the blend adds."""
    m = trained.model
    if not trained.encoder_config.blend:
        return predict(trained, binned, te, unit_idx=unit_idx)
    saved = {k: v.clone() for k, v in m.state_dict().items() if k.startswith("blend_")}
    m.blend_beta.fill_(1.0)
    m.blend_gamma.fill_(0.0)
    if m.has_window_bank:  # the per-size table: beta 1, gamma 0, no kNN in every row
        m.blend_table[:, 1:] = torch.tensor([1.0, 0.0, 0.01, 0.0, 0.0])
    try:
        return predict(trained, binned, te, unit_idx=unit_idx)
    finally:
        for k, v in saved.items():
            getattr(m, k).copy_(v)


def timed(fn, *a, **kw):
    t0 = time.perf_counter()
    out = fn(*a, **kw)
    return out, time.perf_counter() - t0


def encoder_configs(args, n_units, targets, window_bins=20, **enc_kw):
    cfg = TrainConfig(max_epochs=args.epochs, window_bins=window_bins, val_subsets=tuple(args.val_subsets))
    enc_kw.setdefault("window_knn", not args.no_window_knn)
    enc = EncoderConfig(**{k: v for k, v in args.enc.items()}, **enc_kw).for_data(
        n_units=n_units, n_patches=targets.shape[1], dim=targets.shape[2], window_bins=window_bins)
    return cfg, enc


# ------------------------------------------------------------------------------------------ (a) + (b)


def bench_args(**over) -> types.SimpleNamespace:
    """This script's defaults as an ``args`` namespace, for scripts that reuse its sessions and encoder."""
    return types.SimpleNamespace(**{**dict(units=120, repeats=8, frames=300, epochs=8, val_subsets=[10, 30, 100],
                                           no_window_knn=False, enc=dict(d_model=64, n_latents=16, depth=1),
                                           window_bins=20, null_seed=None), **over})


def movie_data(seed: int, args, bb) -> tuple:
    """Session ``seed``: (binned, targets, split, test presentations, scorer of test predictions)."""
    sim, binned = simulated(args.units, args.repeats, args.frames, seed, movie_seed=seed,
                            null_seed=None if args.null_seed is None else args.null_seed + seed)
    targets = compute_targets(sim.frames, bb, batch_size=64)
    split = split_repeats(binned.repeat, n_val=2, n_test=2, seed=seed)
    te = np.asarray(split.test)
    return binned, targets, split, te, scorer(binned, targets, split, te)


def scorer(binned, targets, split, rows):
    """`score` of predictions of the presentations ``rows`` (the split's training frames centre the maps)."""
    train_frames = np.unique(binned.frame[np.asarray(split.train)])
    groups, frames = duplicate_groups(targets), binned.frame[np.asarray(rows)]
    return lambda p: score(p, frames, targets, train_frames, groups, 30.0)


def movie_session(seed: int, args, bb) -> dict:
    binned, targets, split, te, sc = movie_data(seed, args, bb)
    res, times = {}, {}
    cfg, enc = encoder_configs(args, binned.n_units, targets, window_bins=args.window_bins)
    tr, times["encoder"] = timed(train_encoder, binned, targets, split, config=cfg, encoder=enc, seed=seed,
                                 progress=False)
    res["encoder"] = sc(predict(tr, binned, te))
    res["encoder-plain"] = sc(plain(tr, binned, te))
    times["encoder-plain"] = times["encoder"]
    kw = dict(window_bins=cfg.window_bins, offset_bins=cfg.offset_bins)
    (p, _), times["ridge"] = timed(ridge_baseline, binned, targets, split, temporal_pool=4, **kw)
    res["ridge"] = sc(p)
    (p, _), times["knn"] = timed(knn_baseline, binned, targets, split, temporal_pool=4, **kw)
    res["knn"] = sc(p)
    (p, _), times["pv-knn"] = timed(knn_baseline, binned, targets, split, **kw)
    res["pv-knn"] = sc(p)
    if args.cebra_ok:
        b = binned.bins_per_frame
        X = np.asarray(binned.counts, np.float32).reshape(len(binned.frame), b, -1).sum(1)
        p, times["cebra"] = cebra_predict(X, binned.frame, binned.repeat, split, targets, args=args,
                                          architecture="offset10-model", discrete=False, seed=seed)
        res["cebra"] = sc(p)
    print(f"session {seed}: " + "; ".join(f"{m} w1s {r['within_1s']:.3f} top1 {r['top1']:.3f} ccos "
                                          f"{r['centred_patch_cosine']:.3f} ({times[m]:.0f} s)" for m, r in res.items()),
          flush=True)
    curve = subset_curve(seed, args, binned, targets, split, tr, cfg, sc) if seed < args.subset_seeds else []
    return {"scores": res, "times": times, "curve": curve}


def subset_curve(seed, args, binned, targets, split, trained, cfg, sc):
    rng = np.random.default_rng(1000 + seed)
    te = np.asarray(split.test)
    rows = []
    for k in args.subset_sizes:
        if k >= binned.n_units:
            continue
        for d in range(args.draws):
            cols = np.sort(rng.choice(binned.n_units, k, replace=False))
            native = sc(predict(trained, binned, te, unit_idx=cols))["within_1s"]
            (choice, t_cal) = timed(calibrate_blend, trained, binned, targets, split.val, unit_idx=cols)
            calibrated = sc(predict(trained, binned, te, unit_idx=cols, blend=choice))["within_1s"]
            sub = dataclasses.replace(binned, counts=np.asarray(binned.counts)[:, cols], unit_ids=binned.unit_ids[cols])
            _, enc = encoder_configs(args, k, targets, window_bins=args.window_bins)
            re = train_encoder(sub, targets, split, config=dataclasses.replace(cfg, val_subsets=()), encoder=enc,
                               seed=seed, progress=False)
            retrained = sc(predict(re, sub, te))["within_1s"]
            ridge = sc(ridge_baseline(binned, targets, split, temporal_pool=4, unit_idx=cols)[0])["within_1s"]
            rows.append((k, native, retrained, ridge, calibrated, t_cal, seed))
            print(f"  subset k={k} draw {d}: native {native:.3f} blend per subset {calibrated:.3f} ({t_cal:.1f} s) "
                  f"retrained {retrained:.3f} ridge {ridge:.3f}", flush=True)
    return rows


# ------------------------------------------------------------------------------------------ (c) V4


def v4_data(bb):
    from PIL import Image

    raw = np.load(V4 / "responses_raw_210325.npy")  # (neurons, images, repeats), NaN = not shown
    with zipfile.ZipFile(V4 / "images_210325.zip") as z:
        names = sorted(n for n in z.namelist() if n.lower().endswith(".jpg"))
        imgs = np.stack([np.asarray(Image.open(io.BytesIO(z.read(n))).convert("RGB")) for n in names])
    if len(imgs) != raw.shape[1]:
        raise SystemExit(f"V4: {len(imgs)} images but responses for {raw.shape[1]}")
    shown = ~np.isnan(raw).any(0)  # (images, repeats)
    img, rep = np.nonzero(shown)
    counts = raw[:, img, rep].T  # (P, neurons)
    P = len(img)
    binned = Binned(counts=counts.astype(np.uint16), frame=img.astype(np.int64), repeat=np.arange(P, dtype=np.int64),
                    bins_per_frame=1, unit_ids=np.arange(raw.shape[0], dtype=np.int64))
    targets = compute_targets(imgs, bb, batch_size=64)
    return binned, targets, rep


def v4_split(binned, seed, args, bb_data):
    binned, targets, _ = bb_data
    split = split_by_image(binned.frame, n_val_images=64, n_test_images=64, seed=seed)
    te = np.asarray(split.test)
    train_frames = np.unique(binned.frame[np.asarray(split.train)])
    groups = duplicate_groups(targets)
    sc = lambda p: score(p, binned.frame[te], targets, train_frames, groups, 0.4)  # noqa: E731
    res, times = {}, {}
    cfg, enc = encoder_configs(args, binned.n_units, targets, window_bins=1, linear_pool=1)
    tr, times["encoder"] = timed(train_encoder, binned, targets, split, config=cfg, encoder=enc, seed=seed,
                                 progress=False)
    res["encoder"] = sc(predict(tr, binned, te))
    res["encoder-plain"] = sc(plain(tr, binned, te))
    times["encoder-plain"] = times["encoder"]
    kw = dict(window_bins=1, offset_bins=0)
    (p, _), times["ridge"] = timed(ridge_baseline, binned, targets, split, **kw)
    res["ridge"] = sc(p)
    (p, _), times["pv-knn"] = timed(knn_baseline, binned, targets, split, **kw)
    res["pv-knn"] = sc(p)  # one bin per presentation: the window kNN is the same method
    if args.cebra_ok:
        X = np.asarray(binned.counts, np.float32)
        p, times["cebra"] = cebra_predict(X, binned.frame, np.zeros(len(X), np.int64), split, targets, args=args,
                                          architecture="offset1-model", discrete=True, seed=seed)
        res["cebra"] = sc(p)
    print(f"V4 split {seed}: " + "; ".join(f"{m} top1 {r['top1']:.3f} top5 {r['top5']:.3f} ccos "
                                           f"{r['centred_patch_cosine']:.3f} ({times[m]:.0f} s)" for m, r in res.items()),
          flush=True)
    return {"scores": res, "times": times}


# ------------------------------------------------------------------------------------------ (d) real dimensions


def real_dims(args) -> list[str]:
    """Seconds per training window of `train_encoder` at real dimensions (2,000 units, 576 x 1024 targets,
    the pipeline's linear rank cap), on random counts and targets: one epoch at F and at 2F frames, the
    difference is the cost of the extra F x 3 windows (set-up and validation excluded), extrapolated."""
    from neurrator.component_config import linear_rank_for
    from neurrator.models import training
    from neurrator.models.readout import MAX_GRID_BYTES, MAX_WINDOWS

    blend_secs = []
    fit = training.fit_blend

    def timed_fit(*a, **kw):  # the blend's choice, timed apart from the epoch
        t0 = time.perf_counter()
        try:
            return fit(*a, **kw)
        finally:
            blend_secs.append(time.perf_counter() - t0)

    training.fit_blend = timed_fit
    rng = np.random.default_rng(0)
    N, R, P_, D_ = 2000, 4, 576, 1024
    walls = {}
    for F in (args.real_frames, 2 * args.real_frames):
        counts = rng.poisson(0.2, size=(F * R * 4, N)).astype(np.uint16)
        binned = Binned(counts=counts, frame=np.tile(np.arange(F), R), repeat=np.repeat(np.arange(R), F),
                        bins_per_frame=4, unit_ids=np.arange(N, dtype=np.int64))
        targets = rng.standard_normal((F, P_, D_), dtype=np.float32)
        split = split_repeats(binned.repeat, n_val=1, n_test=0, seed=0)
        cfg = TrainConfig(max_epochs=1, val_subsets=tuple(args.val_subsets))
        enc = EncoderConfig(linear_rank=linear_rank_for(256, n_patches=P_, dim=D_, n_frames=900)).for_data(
            n_units=N, n_patches=P_, dim=D_)
        t0 = time.perf_counter()
        tr = train_encoder(binned, targets, split, config=cfg, encoder=enc, seed=0, progress=False)
        walls[F] = (time.perf_counter() - t0, len(split.train))
        print(f"real dims, {F} frames: {walls[F][0]:.0f} s for {walls[F][1]} training windows", flush=True)
    training.fit_blend = fit
    units = torch.arange(N)
    x = torch.from_numpy(rng.poisson(0.2, size=(64, 20, N)).astype(np.float32))
    with torch.no_grad():
        decode = [timed(tr.model, x, units, blend=b)[1] for b in (False, True, False, True)][2:]
    (w1, n1), (w2, n2) = walls.values()
    e = tr.encoder_config
    per = ((w2 - blend_secs[1]) - (w1 - blend_secs[0])) / max(1, n2 - n1)  # training alone
    return [f"Real dimensions (d): `train_encoder`, one epoch on random counts of 2,000 units and random 576 x 1024 "
            f"targets, 3 train repeats + 1 validation repeat of {args.real_frames} and of {2 * args.real_frames} "
            f"frames: {w1:.0f} s ({n1} windows) and {w2:.0f} s ({n2} windows), set-up, validation and the blend's "
            f"choice included; "
            f"library defaults (d_model 128, 32 latents, depth 2, linear rank {enc.linear_rank}, val_subsets "
            f"{cfg.val_subsets}; Gram kept: {f'factored, rank {e.gram_rank}' if e.gram_rank else tr.model.has_subset_ridge}; blend bank: {e.bank_frames} frames as "
            f"{e.bank_rank or 'full maps'}{' coefficients' if e.bank_rank else ''}, {e.window_bank} training windows "
            f"for the kNN; {tr.model.n_parameters() / 1e6:.1f} M parameters). Marginal "
            f"cost of training, the blend's choice left out: {per:.2f} s per training window: a session of 18 train repeats x 900 frames would take ~"
            f"{per * 18 * 900 / 60:.0f} min per epoch on this CPU under this load (the pipeline trains up to 3 epochs).",
            "",
            f"The blend's choice (`fit_blend`, included above): {blend_secs[0]:.0f} s and {blend_secs[1]:.0f} s "
            f"(on at most {min(MAX_WINDOWS, MAX_GRID_BYTES // (4 * P_ * D_))} validation windows whatever the session's "
            f"length, 4 subset sizes). Decoding 64 windows of all units at real dimensions: {decode[0]:.1f} s "
            f"without the blend, {decode[1]:.1f} s with it (chosen blend, all units: beta "
            f"{tr.extra['blend']['beta']}, gamma {tr.extra['blend']['gamma']}, kNN k {tr.extra['blend']['knn_k']} "
            f"share {tr.extra['blend']['knn_w']}; on random targets the choice itself means nothing)."]


# ------------------------------------------------------------------------------------------ tables


def tables(runs: list[dict], metrics: tuple[str, ...], unit: str = "sessions") -> list[str]:
    methods = list(runs[0]["scores"])
    out = ["| method | " + " | ".join(metrics) + " | train s |", "|---" * (len(metrics) + 2) + "|"]
    for m in methods:
        cells = []
        for met in metrics:
            mean, lo, hi = t_interval([r["scores"][m][met] for r in runs])
            cells.append(f"{mean:.3f} [{lo:.3f}, {hi:.3f}]")
        out.append(f"| {m} | " + " | ".join(cells) + f" | {np.mean([r['times'][m] for r in runs]):.1f} |")
    out += ["", f"Paired difference encoder - peer, mean [95% t interval over {unit}], {unit} where the encoder "
            "is ahead (lower is better for errors and ranks):", "",
            "| comparison | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for m in methods[1:]:
        cells = []
        for met in metrics:
            d = np.array([r["scores"]["encoder"][met] - r["scores"][m][met] for r in runs])
            mean, lo, hi = t_interval(d)
            ahead = int(np.sum(d < 0 if met in LOWER_IS_BETTER else d > 0))
            cells.append(f"{mean:+.3f} [{lo:+.3f}, {hi:+.3f}], {ahead}/{len(d)}")
        out.append(f"| encoder - {m} | " + " | ".join(cells) + " |")
    return out


def curve_table(rows) -> list[str]:
    """Rows (k, native, retrained, ridge, native with the blend chosen for the subset, seconds to choose it,
    session seed).

    The draws of one session share its trained native model, its test repeats and its movie, so they are
    not independent: each gap's interval is a t interval over the sessions' mean gaps (the unit of
    replication), with the naive interval over all draws beside it for comparison."""
    out = ["| k units | sessions x draws | native within 1 s | retrained within 1 s | gap native - retrained "
           "[95% t over sessions] (over draws) | native, blend per subset | its gap [95% t over sessions] (over "
           "draws), draws ahead of native | s to choose | ridge on the subset |",
           "|---|---|---|---|---|---|---|---|---|"]

    def cell(gap, seeds):
        per_session = [gap[seeds == s].mean() for s in np.unique(seeds)]
        mean, lo, hi = t_interval(per_session)
        _, dlo, dhi = t_interval(gap)
        return f"{mean:+.3f} [{lo:+.3f}, {hi:+.3f}] ({dlo:+.3f}, {dhi:+.3f})"

    for k in sorted({r[0] for r in rows}):
        rr = np.array([r[1:] for r in rows if r[0] == k])
        seeds = rr[:, 5]
        out.append(f"| {k} | {len(np.unique(seeds))} x {len(rr) // len(np.unique(seeds))} | {rr[:, 0].mean():.3f} | "
                   f"{rr[:, 1].mean():.3f} | {cell(rr[:, 0] - rr[:, 1], seeds)} | {rr[:, 3].mean():.3f} | "
                   f"{cell(rr[:, 3] - rr[:, 1], seeds)}, {int((rr[:, 3] > rr[:, 0]).sum())}/{len(rr)} | "
                   f"{rr[:, 4].mean():.1f} | {rr[:, 2].mean():.3f} |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--units", type=int, default=120)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=8, help="encoder max epochs (early stopping inside)")
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--latents", type=int, default=16)
    ap.add_argument("--depth", type=int, default=1)
    ap.add_argument("--val-subsets", type=int, nargs="*", default=[10, 30, 100],
                    help="TrainConfig.val_subsets of the encoder (issue 28.1)")
    ap.add_argument("--no-window-knn", action="store_true",
                    help="the encoder without EncoderConfig.window_knn (the blend's kNN and per-size choice)")
    ap.add_argument("--cebra-iters", type=int, default=500)
    ap.add_argument("--cebra-dim", type=int, default=32)
    ap.add_argument("--no-cebra", action="store_true")
    ap.add_argument("--subset-seeds", type=int, default=3)
    ap.add_argument("--subset-sizes", type=int, nargs="+", default=[10, 30, 60, 100])
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--window-bins", type=int, default=20,
                    help="the encoder's window on the movie sessions, and the ridge and kNN baselines' (bins of 1/120 s; "
                         "40 = CEBRA offset10's 333 ms of context)")
    ap.add_argument("--null-seed", type=int, default=None,
                    help="global null: every unit's spikes circularly shifted within every repeat (seed + session)")
    ap.add_argument("--v4-splits", type=int, default=5)
    ap.add_argument("--no-v4", action="store_true")
    ap.add_argument("--real-dims", action="store_true", help="only (d): time training at real dimensions")
    ap.add_argument("--real-frames", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.enc = dict(d_model=args.d_model, n_latents=args.latents, depth=args.depth)
    try:
        import cebra  # noqa: F401

        args.cebra_ok = not args.no_cebra
    except ImportError:
        args.cebra_ok = False
        print("cebra is not installed (.venv/bin/pip install cebra): CEBRA skipped", flush=True)
    if args.real_dims:
        publish("Encoder training at real dimensions on CPU (bench_peers.py --real-dims)", real_dims(args),
                append=not args.no_append)
        return
    t_all = time.perf_counter()
    bb = load_backbone("tiny", seed=0)
    runs = [movie_session(s, args, bb) for s in range(args.seeds)]
    v4 = []
    if not args.no_v4:
        if (V4 / "responses_raw_210325.npy").exists():
            data = v4_data(bb)
            v4 = [v4_split(data[0], s, args, data) for s in range(args.v4_splits)]
        else:
            print(f"V4 fixture absent ({V4}): skipped", flush=True)
    wall = time.perf_counter() - t_all
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cmd = " ".join(sys.argv[1:])
    out = [f"\n## Encoder vs peers: CEBRA, ridge, kNN, pv-kNN (bench_peers.py, {now})\n",
           f"`python benchmarks/bench_peers.py {cmd}`, commit {commit} (+ working tree), {wall:.0f} s total. "
           f"Hardware: {hardware('cpu')} (2 cores shared with other engineers' jobs: times are comparable "
           "within this run only).", "",
           f"Simulated sessions (a): {args.seeds} x `simulate_session(n_units={args.units}, n_repeats={args.repeats}, "
           f"n_frames={args.frames}, seed=s, movie_seed=s)`, `tiny` targets, 4 train / 2 val / 2 test repeats. "
           + (f"GLOBAL NULL: every unit's spikes circularly shifted within every repeat by its own uniform lag "
              f"(`circular_shift_spikes`, seed {args.null_seed} + s), so no method has stimulus information. "
              if args.null_seed is not None else "") +
           f"Encoder: library defaults except d_model {args.d_model}, {args.latents} latents, depth {args.depth}, "
           f"max {args.epochs} epochs, window {args.window_bins} bins ({args.window_bins / 120 * 1000:.0f} ms; the ridge and kNN "
           f"baselines read the same), val_subsets {tuple(args.val_subsets)}, output blend on (EncoderConfig.blend), "
           f"window_knn {not args.no_window_knn}. CEBRA: " + (f"offset10-model, frame index as continuous label (time_delta), "
           f"output dim {args.cebra_dim}, batch 512, {args.cebra_iters} iterations (capped; documented default "
           "10,000), kNN decoder in the embedding." if args.cebra_ok else "not run (not installed)"), "",
           "Mean over sessions [95% t interval]; frame errors in movie frames (30 fps):", ""]
    out += tables(runs, MOVIE_METRICS)
    curve = [row for r in runs for row in r["curve"]]
    if curve:
        out += ["", f"Subset curve (b): encoder trained once on all {args.units} units and fed k random units "
                f"(native; and native with the blend chosen for exactly those units on the validation repeats, "
                f"`calibrate_blend`) vs the same configuration retrained on those k units; within 1 s on the test repeats, "
                f"{args.draws} draws x {min(args.subset_seeds, args.seeds)} sessions per k:", ""]
        out += curve_table(curve)
    if v4:
        out += ["", f"Real V4 (c): Cowley et al. 2023 session 210325, 50 neurons, {len(data[0].frame)} shown "
                f"repeats of 640 images, 100-ms counts; {args.v4_splits} image splits (64 val / 64 unseen test "
                "images each); identification among all 640 images; CEBRA offset1-model with the image index as a "
                "discrete label. Mean over splits [95% t interval]:", ""]
        out += tables(v4, IMAGE_METRICS, unit="splits")
    text = "\n".join(out) + "\n"
    print(text)
    if not args.no_append:
        append_results(text)


if __name__ == "__main__":
    main()
