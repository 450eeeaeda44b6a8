"""Narration speed (batch 1 vs batched) and narration fidelity on the simulated session.

Usage::

    .venv/bin/python benchmarks/bench_narration.py                     # tiny LLaVA on CPU + simulated session
    .venv/bin/python benchmarks/bench_narration.py --full-7b-random    # LLaVA-1.5-7B-sized, random weights (GPU)
    .venv/bin/python benchmarks/bench_narration.py --skip-session --no-append   # speed only, print only

Speed: narrations per second of `neurrator.models.narrators.LlavaNarrator` (projector + masked_scatter +
``generate(inputs_embeds=...)``, greedy) at batch 1 and at larger batches, on patch tokens shaped like
the backbone's. Every narration is forced to ``max_new_tokens`` tokens (EOS disabled) so batch sizes do
the same work. ``--full-7b-random`` builds LLaVA-1.5-7B's exact configuration (CLIP ViT-L/14-336 tower,
projector 1024->4096, Llama-2-7B text model, vocabulary 32,064) with random fp16 weights: the compute of
the real model, with no weights to download.

Fidelity: `neurrator.pipeline.run_demo` (simulated session, tiny backbone, retrieval narrator, held-out
repeats) and its matched / shuffled / floor sentence similarities per unit subset.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from _hardware import append_results, hardware


def full_7b_random(device: str, *, text_layers: int = 32, vision_layers: int = 24):
    """LLaVA-1.5-7B's configuration with random weights (fp16 on CUDA) and the tiny tokenizer's specials."""
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)

    from neurrator.models.narrators import IMAGE_TOKEN, TINY_CHAT_TEMPLATE, LlavaNarrator, build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    vcfg = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=vision_layers,
                            num_attention_heads=16, image_size=336, patch_size=14, projection_dim=768,
                            hidden_act="quick_gelu")
    tcfg = LlamaConfig(vocab_size=32064, hidden_size=4096, intermediate_size=11008, num_hidden_layers=text_layers,
                       num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096,
                       pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    cfg = LlavaConfig(vision_config=vcfg.to_dict(), text_config=tcfg.to_dict(),
                      image_token_index=tok.convert_tokens_to_ids(IMAGE_TOKEN), image_seq_length=576)
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LlavaForConditionalGeneration(cfg)
    finally:
        torch.set_default_dtype(old)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tok, patch_size=14,
                               vision_feature_select_strategy="default", chat_template=TINY_CHAT_TEMPLATE)
    return model.eval(), processor, LlavaNarrator


def speed(narrator, patches: np.ndarray, batch_sizes: list[int], device: str) -> list[tuple[int, float, float]]:
    """(batch size, seconds, narrations per second) per batch size; each narration is max_new_tokens long."""
    out = []
    narrator.model.generation_config.eos_token_id = None  # same length for every narration
    narrator.model.generation_config.min_new_tokens = narrator.max_new_tokens
    for bs in batch_sizes:
        narrator.batch_size = bs
        narrator.narrate(patches[:bs])  # warm-up
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        narrator.narrate(patches)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        out.append((bs, dt, len(patches) / dt))
        print(f"batch {bs}: {len(patches)} narrations in {dt:.1f} s = {len(patches) / dt:.2f}/s", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--full-7b-random", action="store_true", help="LLaVA-1.5-7B-sized random model (needs a GPU)")
    ap.add_argument("--layers", type=int, default=None, help="override text/vision depth (smoke tests)")
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--batch-sizes", default="1,8,32")
    ap.add_argument("--max-new-tokens", type=int, default=60)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--skip-session", action="store_true", help="skip the simulated-session fidelity part")
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from neurrator.models.narrators import LlavaNarrator, load_narrator

    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    if args.full_7b_random:
        kw = {} if args.layers is None else {"text_layers": args.layers, "vision_layers": args.layers}
        model, processor, _ = full_7b_random(args.device, **kw)
        narrator = LlavaNarrator(model, processor, model_id="llava-1.5-7b-config:random-weights",
                                 max_new_tokens=args.max_new_tokens)
        shape, what = (576, 1024), "LLaVA-1.5-7B configuration, random weights"
        if args.layers is not None:
            what += f" (depth overridden to {args.layers} layers: smoke test, not the 7B figure)"
    else:
        narrator = load_narrator("tiny", device=args.device, seed=0, max_new_tokens=args.max_new_tokens)
        shape, what = (64, 64), "tiny LLaVA (2-layer Llama, hidden 64; tiny CLIP tower)"
    dtype = str(next(narrator.model.parameters()).dtype).replace("torch.", "")
    patches = np.random.default_rng(0).normal(size=(args.frames, *shape)).astype(np.float32)
    rows = speed(narrator, patches, batch_sizes, args.device)
    lines = ["", "## Narration", "",
             f"`benchmarks/bench_narration.py` ({when}): {what}, {dtype}, {args.frames} narrations of "
             f"{args.max_new_tokens} new tokens each (greedy, EOS disabled), prompt \"{narrator.prompt}\" with "
             f"{shape[0]} patch tokens of dim {shape[1]} injected.", "",
             f"Hardware ({args.device}): {hardware(args.device)}.", "",
             "| batch size | seconds | narrations / s | vs batch 1 |", "|---:|---:|---:|---:|"]
    for bs, dt, rate in rows:
        lines.append(f"| {bs} | {dt:.1f} | {rate:.2f} | {rate / rows[0][2]:.1f}x |")
    if not args.full_7b_random:
        lines += ["", "LLaVA-1.5-7B size (`--full-7b-random`): not measured: no GPU was available to this run; "
                  "run `bench_narration.py --full-7b-random --device cuda` on one."]
    if not args.skip_session:
        from neurrator.pipeline import run_demo

        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            res = run_demo(Path(tmp), seed=0, progress=False)
            dt = time.perf_counter() - t0
        lines += ["", f"Simulated session (`neurrator.pipeline.run_demo`, seed 0: tiny backbone, retrieval narrator "
                  f"over the training frames' captions, held-out repeats; {dt:.0f} s end to end). Sentence "
                  "similarity (all-MiniLM-L6-v2) to the frame's caption:", "",
                  "| unit subset | units | matched | shuffled | floor |", "|---|---:|---:|---:|---:|"]
        for r in res.subsets:
            lines.append(f"| {r.subset.label} | {r.subset.n_units} | {r.similarity.mean():.3f} +/- "
                         f"{r.similarity.std():.3f} | {r.shuffled.mean():.3f} | {r.floor.mean():.3f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_append:
        append_results(text)


if __name__ == "__main__":
    main()
