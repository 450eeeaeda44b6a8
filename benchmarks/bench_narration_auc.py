"""How well the narration score separates matched from mismatched frames, on derived files (issue 31.1).

For each unit subset of a derived file, every narration is embedded (all-MiniLM-L6-v2, as the pipeline
scores) and compared with the reference of its own frame (matched) and with the references of the other
narrated frames more than one scene block (30 frames) away (mismatched). The AUC is the probability that a
matched similarity exceeds a mismatched one (Mann-Whitney, ties count half): 0.5 is no separation, 1.0
perfect. Reported per file: pooled over subsets, for the ``all`` subset, and the median over subsets; the
oracle (each reference text scored as if it were the narration: what a narrator that says exactly the
reference reaches with this scorer; below 1.0 where distant frames share a caption); and the means of the
matched, mismatched and constant-narration scores. The last two columns measure one candidate improvement
without changing the pipeline: the cosine of embeddings centred on the mean reference embedding of the
narrated frames (the template every caption shares), as the centred patch cosine does for patches.

Usage: nice -n 10 .venv/bin/python benchmarks/bench_narration_auc.py DERIVED.nwb [DERIVED2.nwb ...] [--append]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _hardware import append_results, hardware  # noqa: E402


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(pos > neg) + 0.5 P(pos == neg) over all pairs (Mann-Whitney U / (n_pos n_neg))."""
    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    if not len(pos) or not len(neg):
        return float("nan")
    allv = np.concatenate([pos, neg])
    from scipy.stats import rankdata

    ranks = rankdata(allv)
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


def pairs(emb_nar: np.ndarray, emb_ref: np.ndarray, frames: np.ndarray, *, block: int = 30):
    """(matched (B,), mismatched (M,)) similarities of one subset's narrations."""
    sim = emb_nar @ emb_ref.T
    far = np.abs(frames[:, None] - frames[None, :]) > block
    return np.diag(sim).copy(), sim[far]


def centred(emb: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Embeddings minus ``mean`` (what every reference shares), renormalised: a centred sentence cosine."""
    x = emb - mean
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def run(path: Path, embedder) -> dict:
    from neurrator.report.data import read_derived

    d = read_derived(path)
    narr = d.narrations
    texts = list(dict.fromkeys([*narr["text"], *narr["reference_text"]]))
    emb = dict(zip(texts, embedder.encode(texts).astype(np.float64)))
    # the mean reference embedding of the narrated frames (one per frame): the template every caption shares
    per_frame = narr.drop_duplicates("frame")
    mean_ref = np.mean([emb[t] for t in per_frame["reference_text"]], axis=0)
    rows, pooled_pos, pooled_neg, cpos, cneg = [], [], [], [], []
    for label, part in narr.groupby("label", sort=False):
        part = part.sort_values("start_time")
        frames = part["frame"].to_numpy()
        nar = np.stack([emb[t] for t in part["text"]])
        ref = np.stack([emb[t] for t in part["reference_text"]])
        pos, neg = pairs(nar, ref, frames)
        pooled_pos.append(pos), pooled_neg.append(neg)
        p2, n2 = pairs(centred(nar, mean_ref), centred(ref, mean_ref), frames)
        cpos.append(p2), cneg.append(n2)
        rows.append((label, auc(pos, neg), float(pos.mean()), float(neg.mean())))
    oracle_pos, oracle_neg = pairs(ref, ref, frames)  # the last subset's frames: the same for every subset
    fid = d.fidelity
    const = fid.loc[fid["metric"] == "narration_constant", "value"].astype(float)
    by_label = {r[0]: r for r in rows}
    return {"file": path.name, "pooled": auc(np.concatenate(pooled_pos), np.concatenate(pooled_neg)),
            "all": by_label.get("all", (None, float("nan")))[1], "median": float(np.median([r[1] for r in rows])),
            "n_subsets": len(rows), "n_narrations": int(len(narr)),
            "matched": float(np.mean(np.concatenate(pooled_pos))),
            "mismatched": float(np.mean(np.concatenate(pooled_neg))),
            "constant": float(const.mean()) if len(const) else float("nan"),
            "oracle": auc(oracle_pos, oracle_neg), "rows": rows,
            "centred_pooled": auc(np.concatenate(cpos), np.concatenate(cneg)),
            "centred_all": auc(cpos[list(by_label).index("all")], cneg[list(by_label).index("all")])
            if "all" in by_label else float("nan")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--append", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = ap.parse_args()
    from neurrator.models.embedder import load_sentence_embedder

    t0 = time.perf_counter()
    embedder = load_sentence_embedder(device="cpu")
    results = [run(f, embedder) for f in args.files]
    lines = ["| file | subsets | narrations | AUC pooled | AUC all units | AUC median over subsets | matched mean | "
             "mismatched mean | constant mean | oracle references AUC | centred cosine: AUC pooled | centred: all units |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['file']} | {r['n_subsets']} | {r['n_narrations']} | {r['pooled']:.3f} | {r['all']:.3f} | "
                     f"{r['median']:.3f} | {r['matched']:.3f} | {r['mismatched']:.3f} | {r['constant']:.3f} | "
                     f"{r['oracle']:.3f} | {r['centred_pooled']:.3f} | {r['centred_all']:.3f} |")
    table = "\n".join(lines)
    print(table)
    for r in results:
        worst = sorted(r["rows"], key=lambda x: x[1])[:3]
        print(f"{r['file']}: lowest AUC subsets " + ", ".join(f"{lab} {a:.2f}" for lab, a, _, _ in worst))
    if args.append:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        append_results(f"\n## Narration score: matched vs mismatched frames (AUC, issue 31.1)\n\n"
                       f"`benchmarks/bench_narration_auc.py` on {', '.join(r['file'] for r in results)}; commit "
                       f"{commit}; {hardware()}; {time.perf_counter() - t0:.0f} s.\n\n{table}\n")


if __name__ == "__main__":
    main()
