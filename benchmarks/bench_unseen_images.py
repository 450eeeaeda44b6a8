"""The paper's unseen-image test on flashed natural scenes: images held out of training entirely, decoded
and narrated by the retrieval narrator and by a generative (LLaVA-style) narrator, compared (issue 10.3).

Usage::

    .venv/bin/python benchmarks/bench_unseen_images.py                      # retrieval vs tiny LLaVA, CPU
    .venv/bin/python benchmarks/bench_unseen_images.py --generative llava --device cuda   # real LLaVA-1.5-7B

What runs: a simulated Allen natural_scenes session (``--images`` flashed images x ``--repeats``, 250 ms
each, opto-tagged SST cells) is narrated by ``neurrator.pipeline.narrate_session`` with
``--test-images`` images never trained on (``splits.split_by_image``: every showing of a test image is
held out, and the retrieval narrator's caption bank holds training images only). The encoder is trained
once, in the retrieval run, and reused unchanged by the generative run (``config.encoder``), so both
narrators see the same predicted patches. Reported per unit subset and narrator: the mean matched
narration similarity (all-MiniLM-L6-v2 cosine to the image's reference caption) with its 95 % block
bootstrap CI, the paired shuffled-reference null and its p, and two narrations of the "all" subset.

What it can and cannot show here: ``tiny`` is the generative narrator's exact code path (projector,
masked_scatter, ``generate(inputs_embeds=...)``) with RANDOM weights, since no model hub is reachable,
so its text carries no meaning and it should sit at the null; the figure that matters, a real
LLaVA-1.5-7B against retrieval on unseen images, needs ``--generative llava`` with the weights in the
Hugging Face cache and a GPU. The retrieval narrator cannot name an unseen image's own caption (it is
not in its bank): on the simulator's scenes it can still be close, by naming a training image with the
same features.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from _hardware import append_results, hardware

from neurrator.config import NarrateConfig
from neurrator.pipeline import narrate_session
from neurrator.simulate import write_simulated_session


def _rows(result, narrator: str) -> list[str]:
    rows = []
    for r in result.subsets:
        m = r.narration_metric()
        rows.append(f"| {narrator} | {r.subset.label} | {len(r.narrations)} | {m.value:.3f} [{m.lo:.3f}, {m.hi:.3f}] "
                    f"| {m.chance:.3f} | {m.p:.3g} |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--units", type=int, default=200)
    ap.add_argument("--test-images", type=int, default=10)
    ap.add_argument("--val-images", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--generative", default="tiny", help="generative narrator id (tiny: random weights; llava)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        src = root / "sub-scenes_ses-scenes.nwb"
        write_simulated_session(src, natural_scenes=args.images, n_repeats=args.repeats, n_units=args.units,
                                seed=args.seed, n_pulses=30)
        config = NarrateConfig.from_options(
            stimulus="natural_scenes", n_val_images=args.val_images, n_test_images=args.test_images,
            narrations_per_subset=args.test_images, epochs=args.epochs, device=args.device, seed=args.seed,
            cache_dir=str(root / "cache"), progress=False, narrator="retrieval")
        runs = {"retrieval": narrate_session(src, out=root / "retrieval.nwb", config=config)}
        reuse = dataclasses.replace(config, encoder=str(runs["retrieval"].output), narrator=args.generative)
        runs[args.generative] = narrate_session(src, out=root / "generative.nwb", config=reuse)
    seconds = time.perf_counter() - t0

    lines = ["| narrator | subset | unseen images narrated | matched similarity [95% CI] | shuffled null | p |",
             "|---|---|---:|---:|---:|---:|"]
    for name, result in runs.items():
        lines += _rows(result, name)
    examples = []
    for name, result in runs.items():
        top = result.subsets[0]
        for text, ref in list(zip(top.narrations, top.references))[:2]:
            examples.append(f"- {name}: \"{text}\"  (reference: \"{ref}\")")
    print("\n".join(lines + [""] + examples))
    if not args.no_append:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        append_results(
            f"\n## Unseen natural images: retrieval vs generative narrator (bench_unseen_images.py, {stamp})\n\n"
            f"Simulated natural_scenes session: {args.images} images x {args.repeats} repeats, {args.units} units; "
            f"{args.test_images} images never trained on (and absent from the retrieval bank), {args.val_images} "
            f"for validation; encoder trained once ({args.epochs} epochs), reused by the generative run. "
            f"Generative narrator: `{args.generative}`"
            + (" (random weights: its text has no meaning; the real comparison needs LLaVA-1.5-7B weights and a "
               "GPU, `--generative llava`)" if args.generative == "tiny" else "")
            + f". {seconds:.0f} s. {hardware(args.device)}\n\n" + "\n".join(lines) + "\n\n" + "\n".join(examples) + "\n"
        )


if __name__ == "__main__":
    main()
