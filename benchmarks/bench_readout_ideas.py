"""Two readout ideas for the ties with CEBRA and the native subset gap (issue 28), tried on bench_peers' sessions.

For each of bench_peers' simulated sessions (its data, split, encoder configuration and, for subsets, its
draws) the encoder is trained once on all units, CEBRA is fitted as in bench_peers, and:

(a) **temporal smoothing**: each test (and validation) window's prediction is replaced by a Gaussian-weighted
    mean of the predictions of the windows of neighbouring frames in the same repeat (sigma in `SIGMAS`
    frames; sigma 0: none), for the encoder's blended output and, for CEBRA, for its embedding before the
    kNN (the fair counterpart). It reads more context without retraining, as CEBRA's offset10 model does.
    Sigma chosen per session on the validation repeats (best within 1 s).
(b) **output-space kNN**: what CEBRA does with its embedding, done with the encoder's own output. Every
    training window is decoded by the encoder without its blend on exactly the units given; a window's
    prediction is the mean target map of the frames of the k training windows whose centred outputs are
    nearest by cosine (k in 1, 5, 10, 20 by validation MSE, as for the kNN baselines). It is mixed into
    the library's blended output, share s in `SHARES` chosen on validation: among the shares whose
    validation centred cosine is at least the unmixed output's, the best mean of validation top-1 and
    top-5. On all units against CEBRA and the unmixed output; on the first ``--gap-seeds`` sessions also
    on bench_peers' subset draws, natively (the all-unit model) and retrained on the subset (each with its
    own chosen share): the gap native - retrained, within 1 s, with a t interval over sessions.

Not in the library: see RESULTS.md for what was measured and why neither is adopted yet.

    python benchmarks/bench_readout_ideas.py [--seeds 10] [--gap-seeds 5] [--sizes 10 30 60] [--draws 3]
                                             [--null-seed N] [--no-append]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_peers as bp  # noqa: E402
from _hardware import publish  # noqa: E402

SIGMAS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)
SHARES = (0.0, 0.25, 0.5, 0.75, 1.0)
METRICS = ("top1", "top5", "within_1s", "mean_frame_error", "centred_patch_cosine")


def smooth(x: np.ndarray, repeat: np.ndarray, frame: np.ndarray, sigma: float) -> np.ndarray:
    """Rows of ``x`` (one per presentation) -> their Gaussian-weighted mean over the presentations of frames
    within 3 sigma in the same repeat (truncated at the repeat's ends; sigma 0: ``x`` itself)."""
    if sigma == 0:
        return x
    out = np.empty_like(x)
    h = int(np.ceil(3 * sigma))
    for r in np.unique(repeat):
        rows = np.flatnonzero(repeat == r)
        rows = rows[np.argsort(frame[rows], kind="stable")]
        v, n = x[rows], len(rows)
        acc, wsum = np.zeros_like(v), np.zeros((n,) + (1,) * (v.ndim - 1), v.dtype)
        for d in range(-h, h + 1):
            w = np.exp(-0.5 * (d / sigma) ** 2)
            lo, hi = max(0, -d), min(n, n - d)
            acc[lo:hi] += w * v[lo + d:hi + d]
            wsum[lo:hi] += w
        out[rows] = acc / wsum
    return out


def output_knn(trained, binned, split, targets, cols=None) -> tuple[np.ndarray, np.ndarray]:
    """-> (validation, test) predictions of the kNN in the encoder's unblended output space (see (b))."""
    rows = {k: np.asarray(v, np.int64) for k, v in zip(("tr", "va", "te"), split)}
    y = {k: bp.plain(trained, binned, v, unit_idx=cols) for k, v in rows.items()}
    mu = y["tr"].mean(0, keepdims=True)
    feats = {k: torch.from_numpy((v - mu).reshape(len(v), -1)) for k, v in y.items()}
    fr = binned.frame
    fit = (fr[rows["tr"]], fr[rows["va"]], targets)
    te, _ = bp.knn_predict(feats, *fit, ks=bp.KS)
    va, _ = bp.knn_predict({**feats, "te": feats["va"]}, *fit, ks=bp.KS)
    return va, te


def mixed(trained, binned, split, targets, sc, scv, cols=None, blended=None) -> dict:
    """(b) for one unit set: the chosen share and the test scores of the unmixed and the chosen output.
    ``blended``: the library's (validation, test) predictions on these units, when the caller has them."""
    kva, kte = output_knn(trained, binned, split, targets, cols)
    bva, bte = blended or (bp.predict(trained, binned, np.asarray(p), unit_idx=cols) for p in (split.val, split.test))
    val = {s: scv((1 - s) * bva + s * kva) for s in SHARES}
    ok = [s for s in SHARES if val[s]["centred_patch_cosine"] >= val[0.0]["centred_patch_cosine"]]
    share = max(ok, key=lambda s: (val[s]["top1"] + val[s]["top5"]) / 2)
    return {"share": share, "plain": sc(bte), "mixed": sc((1 - share) * bte + share * kte)}


def session(seed: int, args, bb) -> dict:
    binned, targets, split, te, sc = bp.movie_data(seed, args, bb)
    va = np.asarray(split.val)
    scv = bp.scorer(binned, targets, split, va)
    cfg, enc = bp.encoder_configs(args, binned.n_units, targets)
    trained = bp.train_encoder(binned, targets, split, config=cfg, encoder=enc, seed=seed, progress=False)
    X = np.asarray(binned.counts, np.float32).reshape(len(binned.frame), binned.bins_per_frame, -1).sum(1)
    emb, _ = bp.cebra_embed(X, binned.frame, binned.repeat, split, args=args, architecture="offset10-model",
                            discrete=False, seed=seed)
    fr_tr = binned.frame[np.asarray(split.train)]
    pred = {"va": bp.predict(trained, binned, va), "te": bp.predict(trained, binned, te)}
    out = {"smooth": {}}
    for s in SIGMAS:
        sm = {k: smooth(pred[k], binned.repeat[p], binned.frame[p], s) for k, p in (("va", va), ("te", te))}
        e = {"tr": emb["tr"], **{k: torch.from_numpy(smooth(emb[k].numpy(), binned.repeat[p], binned.frame[p], s))
                                 for k, p in (("va", va), ("te", te))}}
        out["smooth"][s] = {"encoder_va": scv(sm["va"]), "encoder": sc(sm["te"]),
                            "cebra": sc(bp.knn_predict(e, fr_tr, binned.frame[va], targets, ks=bp.KS)[0])}
    out["all"] = mixed(trained, binned, split, targets, sc, scv, blended=(pred["va"], pred["te"]))
    out["gap"] = []
    rng = np.random.default_rng(1000 + seed)  # bench_peers.subset_curve's draws
    for k in args.sizes if seed < args.gap_seeds else ():
        for d in range(args.draws):
            cols = np.sort(rng.choice(binned.n_units, k, replace=False))
            native = mixed(trained, binned, split, targets, sc, scv, cols)
            sub = dataclasses.replace(binned, counts=np.asarray(binned.counts)[:, cols], unit_ids=binned.unit_ids[cols])
            _, enc_k = bp.encoder_configs(args, k, targets)
            re = bp.train_encoder(sub, targets, split, config=dataclasses.replace(cfg, val_subsets=()), encoder=enc_k,
                                  seed=seed, progress=False)
            out["gap"].append((seed, k, native, mixed(re, sub, targets=targets, split=split, sc=sc, scv=scv)))
            n, r = native, out["gap"][-1][3]
            print(f"  session {seed} k={k} draw {d}: within 1 s native {n['plain']['within_1s']:.3f} -> "
                  f"{n['mixed']['within_1s']:.3f} (share {n['share']}), retrained {r['plain']['within_1s']:.3f} -> "
                  f"{r['mixed']['within_1s']:.3f} (share {r['share']})", flush=True)
    a = out["all"]
    print(f"session {seed}: within 1 s encoder {a['plain']['within_1s']:.3f}, with output kNN {a['mixed']['within_1s']:.3f} "
          f"(share {a['share']}), CEBRA {out['smooth'][0.0]['cebra']['within_1s']:.3f}", flush=True)
    return out


def cell(d) -> str:
    mean, lo, hi = bp.t_interval(d)
    return f"{mean:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def tables(runs: list[dict]) -> list[str]:
    n = len(runs)
    out = [f"(a) Temporal smoothing, mean over {n} sessions (encoder: its blended output; CEBRA: its embedding before "
           "the kNN):", "", "| sigma (frames) | " + " | ".join(f"encoder {m} | CEBRA {m}" for m in METRICS) + " |",
           "|---" * (1 + 2 * len(METRICS)) + "|"]
    for s in SIGMAS:
        out.append(f"| {s} | " + " | ".join(f"{np.mean([r['smooth'][s]['encoder'][m] for r in runs]):.3f} | "
                                            f"{np.mean([r['smooth'][s]['cebra'][m] for r in runs]):.3f}" for m in METRICS) + " |")
    chosen = [max(SIGMAS, key=lambda s: r["smooth"][s]["encoder_va"]["within_1s"]) for r in runs]
    out += ["", f"Sigma chosen on validation (best within 1 s): {chosen}. Paired differences [95% t over sessions]:", "",
            "| comparison | " + " | ".join(METRICS) + " |", "|---" * (1 + len(METRICS)) + "|"]
    for name, ref in (("smoothed encoder - encoder", lambda r: r["smooth"][0.0]["encoder"]),
                      ("smoothed encoder - CEBRA", lambda r: r["smooth"][0.0]["cebra"])):
        out.append(f"| {name} | " + " | ".join(cell([r["smooth"][c]["encoder"][m] - ref(r)[m] for r, c in zip(runs, chosen)])
                                               for m in METRICS) + " |")
    out += ["", f"(b) Output-space kNN mixed in, all units; shares chosen {[r['all']['share'] for r in runs]}:", "",
            "| comparison | " + " | ".join(METRICS) + " |", "|---" * (1 + len(METRICS)) + "|"]
    for name, a, b in (("with output kNN - encoder", "mixed", "plain"), ("with output kNN - CEBRA", "mixed", None),
                       ("encoder - CEBRA", "plain", None)):
        out.append(f"| {name} | " + " | ".join(cell([r["all"][a][m] - (r["all"][b][m] if b else r["smooth"][0.0]["cebra"][m])
                                                     for r in runs]) for m in METRICS) + " |")
    gap = [g for r in runs for g in r["gap"]]
    if gap:
        out += ["", "(b) Subsets, within 1 s: native (trained once on all units) and retrained on the subset, each "
                "with and without its own chosen share of output kNN; [95% t over sessions' means]:", "",
                "| k | sessions x draws | native | native + kNN | retrained | retrained + kNN | gap now (native - "
                "retrained) | gap, both + kNN | native + kNN - retrained |", "|---" * 9 + "|"]
        for k in sorted({g[1] for g in gap}):
            gk = [g for g in gap if g[1] == k]
            seeds = np.array([g[0] for g in gk])
            v = {(w, s): np.array([g[2 if w == "n" else 3][s]["within_1s"] for g in gk])
                 for w in "nr" for s in ("plain", "mixed")}

            def over_sessions(x):
                return cell([x[seeds == s].mean() for s in np.unique(seeds)])
            out.append(f"| {k} | {len(np.unique(seeds))} x {len(gk) // len(np.unique(seeds))} | "
                       + " | ".join(f"{v[key].mean():.3f}" for key in (("n", "plain"), ("n", "mixed"), ("r", "plain"), ("r", "mixed")))
                       + f" | {over_sessions(v['n', 'plain'] - v['r', 'plain'])} | {over_sessions(v['n', 'mixed'] - v['r', 'mixed'])}"
                       f" | {over_sessions(v['n', 'mixed'] - v['r', 'plain'])} |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--gap-seeds", type=int, default=5)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 30, 60])
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--cebra-iters", type=int, default=500)
    ap.add_argument("--cebra-dim", type=int, default=32)
    ap.add_argument("--null-seed", type=int, default=None,
                    help="global null: every unit's spikes circularly shifted within every repeat (seed + session)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-append", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    args = bp.bench_args(sizes=a.sizes, draws=a.draws, gap_seeds=a.gap_seeds, cebra_iters=a.cebra_iters,
                         cebra_dim=a.cebra_dim, null_seed=a.null_seed)
    bb = bp.load_backbone("tiny", seed=0)
    t0 = time.perf_counter()
    runs = [session(s, args, bb) for s in range(a.seeds)]
    publish("Readout ideas: temporal smoothing and output-space kNN (bench_readout_ideas.py)",
            [f"`python benchmarks/bench_readout_ideas.py {' '.join(sys.argv[1:])}`: {a.seeds} of bench_peers' sessions"
             f"{' on the global null' if a.null_seed is not None else ''}, its encoder and CEBRA configuration (CEBRA "
             f"{a.cebra_iters} iterations, dimension {a.cebra_dim}); test repeats; {time.perf_counter() - t0:.0f} s.", ""]
            + tables(runs), append=not a.no_append)


if __name__ == "__main__":
    main()
