"""Full-size dry run (issue 10.5): every compute stage at real dimensions with random-weight models of the real sizes.

Real dimensions: 2,000 units x 20 repeats x 900 frames at 4 bins per frame; CLIP ViT-L/14-336 vision tower
(random weights from a `transformers.CLIPVisionConfig`: 24 layers, width 1024, 577 tokens -> 576 patch
targets x 1024); the encoder at its real output size (576 x 1024, linear rank 64: the pipeline's cap, `linear_rank_for`); a TopK SAE on
1024-d tokens; a LLaVA-1.5-sized projector (1024 -> 4096 -> 4096) in front of a small Llama (hidden
4096, 1 layer, tiny vocabulary) for narration. Stages run one after another in this process: spikes
-> binning -> targets -> training -> prediction of the test repeats for each unit subset -> SAE epoch
-> narration. For each stage it measures wall time and the peak resident memory (psutil sampler, every
20 ms; plus torch.cuda.max_memory_allocated on CUDA).

On CPU it runs at reduced repeats / frames (``--repeats``, ``--frames``; units stay 2,000) and prints
the extrapolation to full size: stage time scaled by the stage's size ratio (linear in presentations,
frames or tokens), and the memory of every large array at full size computed from its shape, checked
against the 24 GB host-RAM budget. With CUDA it runs in full by default.

    .venv/bin/python benchmarks/bench_full_size.py --repeats 5 --frames 24      # CPU, appends to RESULTS.md
    .venv/bin/python benchmarks/bench_full_size.py --device cuda                  # full size on a GPU
"""

from __future__ import annotations

import argparse
import gc
import time
from datetime import datetime, timezone

import numpy as np
from _hardware import PeakRSS, append_results, hardware

GB = 1024**3
BUDGET_GB = 24.0
FULL = {"units": 2000, "repeats": 20, "frames": 900, "bins": 4, "patches": 576, "dim": 1024, "subsets": 32,
        "test_repeats": 2, "narrations": 30}


def vit_l14_336(seed: int):
    """CLIP ViT-L/14-336 vision tower with random weights (the config of openai/clip-vit-large-patch14-336)."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModel

    cfg = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                           image_size=336, patch_size=14, projection_dim=768, hidden_act="quick_gelu")
    torch.manual_seed(seed)
    return CLIPVisionModel(cfg).eval()


def llava_sized_narrator(device: str, seed: int):
    """A LlavaNarrator: ViT-L/14-336 tower config, LLaVA-1.5 projector (1024 -> 4096 -> 4096), 1-layer Llama of width 4096."""
    import torch
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    from neurrator.models.narrators import (
        IMAGE_TOKEN,
        TINY_CHAT_TEMPLATE,
        LlavaNarrator,
        build_tiny_tokenizer,
    )

    tok = build_tiny_tokenizer(())
    vcfg = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=1, num_attention_heads=16,
                            image_size=336, patch_size=14, projection_dim=768)  # the tower is never run here
    tcfg = LlamaConfig(vocab_size=len(tok), hidden_size=4096, intermediate_size=11008, num_hidden_layers=1,
                       num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=1024,
                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    cfg = LlavaConfig(vision_config=vcfg.to_dict(), text_config=tcfg.to_dict(),
                      image_token_index=tok.convert_tokens_to_ids(IMAGE_TOKEN), image_seq_length=576,
                      projector_hidden_act="gelu", vision_feature_layer=-2, vision_feature_select_strategy="default")
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(cfg).eval().to(device)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    proc = LlavaProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 336},
                                                             crop_size={"height": 336, "width": 336}),
                          tokenizer=tok, patch_size=14, vision_feature_select_strategy="default",
                          num_additional_image_tokens=1, chat_template=TINY_CHAT_TEMPLATE, image_token=IMAGE_TOKEN)
    return LlavaNarrator(model, proc, model_id="bench:llava-sized", max_new_tokens=20, batch_size=8)


def make_spikes(n_units: int, duration: float, rate: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = rng.poisson(rate * duration, size=n_units)
    offsets = np.concatenate([[0], np.cumsum(n)]).astype(np.int64)
    times = rng.random(int(offsets[-1])) * duration
    for i in range(n_units):
        times[offsets[i]:offsets[i + 1]].sort()
    return times, offsets


def full_size_memory() -> list[tuple[str, float, str]]:
    """Host-RAM of each large array at full size, from its shape (GB), with what holds it."""
    f = FULL
    P = f["repeats"] * f["frames"]
    P_test = f["test_repeats"] * f["frames"]
    tok = f["patches"] * f["dim"] * 4
    rows = [
        ("binned counts (P*b, N) uint16", P * f["bins"] * f["units"] * 2 / GB, "binning"),
        ("spike times of a whole Allen session (2,000 units x 20 Hz x 9,700 s) float64", 20 * 2000 * 9700 * 8 / GB,
         "session"),
        ("targets (F, 576, 1024) float32", f["frames"] * tok / GB, "targets"),
        ("movie frames (F, 304, 608) uint8 + (B, 3, 336, 336) pixels", f["frames"] * 304 * 608 / GB, "targets"),
        ("predictions of the test repeats, ONE subset (1800, 576, 1024) float32", P_test * tok / GB, "decode"),
        (f"predictions of the test repeats, ALL {f['subsets']} subsets at once (decoding.py does NOT do this: "
         "one subset at a time, `del pred`)", f["subsets"] * P_test * tok / GB, "decode"),
        ("decode peak if ridge + kNN baseline predictions are held with the encoder's (3 x one subset)",
         3 * P_test * tok / GB, "decode"),
        (f"predicted patches of the narrated windows ({f['narrations']} x {f['subsets']} subsets)",
         f["narrations"] * f["subsets"] * tok / GB, "write"),
        ("pipeline.py all_pred + all_true + the per-subset copies (3 x the narrated windows)",
         3 * f["narrations"] * f["subsets"] * tok / GB, "validate"),
        ("SAE token set: all frames' tokens (900*576, 1024) float32", f["frames"] * tok / GB, "sae"),
        ("SAE token set: targets + predictions of the test repeats", (f["frames"] + P_test) * tok / GB, "sae"),
        ("encoder linear basis (rank 64, the pipeline's cap) + weights",
         (2000 * 5 * 64 + 64 * f["patches"] * f["dim"]) * 4 / GB, "train"),
    ]
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if _has_cuda() else "cpu")
    ap.add_argument("--units", type=int, default=FULL["units"])
    ap.add_argument("--repeats", type=int, default=None, help="default: 20 on CUDA, 5 on CPU")
    ap.add_argument("--frames", type=int, default=None, help="default: 900 on CUDA, 24 on CPU")
    ap.add_argument("--steps", type=int, default=None, help="encoder training steps (default: one epoch)")
    ap.add_argument("--narrate", type=int, default=4, help="windows narrated")
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args()
    import torch

    from neurrator.models.backbones import Backbone
    from neurrator.data.binning import Binned, bin_spikes
    from neurrator.data.splits import split_repeats
    from neurrator.config import EncoderConfig, SAEConfig, TrainConfig
    from neurrator.sae.autoencoder import train_sae
    from neurrator.models.targets import compute_targets
    from neurrator.models.training import train_encoder
    from neurrator.models.prediction import predict

    cuda = args.device.startswith("cuda")
    R = args.repeats or (20 if cuda else 5)
    F = args.frames or (900 if cuda else 24)
    N = args.units
    b = FULL["bins"]
    rows: list[tuple[str, float, float, float, str]] = []  # stage, seconds, peak RSS GB, GPU GB, scale to full
    t_all = time.perf_counter()

    def stage(name: str, scale: float, fn):
        gc.collect()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            out = fn()
            if cuda:
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
        gpu = torch.cuda.max_memory_allocated() / GB if cuda else float("nan")
        rows.append((name, dt, mem.peak / GB, gpu, scale))
        print(f"{name:<28} {dt:8.1f} s   peak RSS {mem.peak / GB:6.2f} GB"
              + (f"   GPU {gpu:6.2f} GB" if cuda else "") + f"   (x{scale:.0f} to full size)", flush=True)
        return out

    rng = np.random.default_rng(0)
    frame_s = 1 / 30
    P = R * F
    starts = np.arange(P) * frame_s
    times, offsets = stage("spikes (simulated)", FULL["repeats"] * FULL["frames"] / P,
                           lambda: make_spikes(N, P * frame_s, 20.0, 0))
    counts = stage("binning", FULL["repeats"] * FULL["frames"] / P,
                   lambda: bin_spikes(times, offsets, starts, starts + frame_s, bins_per_interval=b))
    del times
    binned = Binned(counts, np.tile(np.arange(F), R).astype(np.int64), np.repeat(np.arange(R), F).astype(np.int64),
                    b, np.arange(N, dtype=np.int64))
    split = split_repeats(binned.repeat, n_val=1, n_test=1 if R < 5 else 2, seed=0)
    frames = rng.integers(0, 256, size=(F, 304, 608), dtype=np.uint8)
    tower = vit_l14_336(0)
    backbone = Backbone.from_clip_vision_model(tower, backbone_id="bench:vit-l14-336-random", weights="random:seed=0",
                                               device=args.device)
    targets = stage("targets (ViT-L/14-336)", FULL["frames"] / F,
                    lambda: compute_targets(frames, backbone, batch_size=8 if not cuda else 32))
    del backbone, tower
    assert targets.shape == (F, 576, 1024), targets.shape
    tcfg = TrainConfig(max_epochs=1, batch_size=16 if not cuda else 64, warmup_steps=1, patience=1)
    from neurrator.component_config import linear_rank_for

    rank = linear_rank_for(EncoderConfig().linear_rank, n_patches=576, dim=1024, n_frames=FULL["frames"])
    ecfg = EncoderConfig(n_units=N, n_patches=576, dim=1024, window_bins=tcfg.window_bins, linear_rank=rank)
    trained = stage("encoder training (1 epoch)", FULL["repeats"] * FULL["frames"] / P,
                    lambda: train_encoder(binned, targets, split, config=tcfg, encoder=ecfg, device=args.device,
                                          seed=0, progress=False))
    n_sub = 2
    subsets = [np.arange(N), np.arange(N // 2)]
    preds = stage(f"decode test repeats x {n_sub} subsets", FULL["subsets"] / n_sub
                  * FULL["test_repeats"] * FULL["frames"] / len(split.test),
                  lambda: [predict(trained, binned, split.test, unit_idx=u, device=args.device) for u in subsets])
    tokens = np.concatenate([targets, preds[0]]).reshape(-1, 1024)
    sae_scale = (FULL["frames"] + FULL["test_repeats"] * FULL["frames"]) * 576 / tokens.shape[0]
    stage("SAE epoch (targets+preds)", sae_scale,
          lambda: train_sae(tokens, config=SAEConfig(d_in=1024, n_latents=8192, k=32), epochs=1,
                            device=args.device, seed=0))
    del tokens
    narrator = stage("narrator build (LLaVA-sized)", 1, lambda: llava_sized_narrator(args.device, 0))
    texts = stage(f"narration x {args.narrate} (batch 8)", FULL["narrations"] * FULL["subsets"] / args.narrate,
                  lambda: narrator.narrate(preds[0][: args.narrate]))
    assert len(texts) == args.narrate
    total = time.perf_counter() - t_all

    mem = full_size_memory()
    est_total = sum(dt * s for _, dt, _, _, s in rows)
    print(f"\nmeasured at {N} units x {R} repeats x {F} frames in {total:.0f} s; "
          f"extrapolated compute at full size ~{est_total / 3600:.1f} h on this device")
    print("full-size host memory of the large arrays (GB):")
    for what, gb, where in mem:
        flag = "  OVER 24 GB" if gb > BUDGET_GB else ""
        print(f"  {gb:8.2f}  {what} [{where}]{flag}")
    if args.no_append:
        return
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"\n## Full-size dry run (issue 10.5)\n\n`python benchmarks/bench_full_size.py --device {args.device} "
             f"--repeats {R} --frames {F}`, {stamp}, {total:.0f} s. Hardware: {hardware(args.device)}.\n\n"
             f"Measured at {N} units x {R} repeats x {F} frames (full size: 2,000 x 20 x 900), random-weight "
             "ViT-L/14-336 targets (576 x 1024), encoder at 576 x 1024 output, TopK SAE 1024 -> 8192 (k 32), "
             "LLaVA-1.5-sized projector with a 1-layer width-4096 Llama. `x full` = the stage's size ratio "
             "(presentations, frames, tokens, narrated windows); `full-size time` = measured time x ratio "
             "(linear extrapolation; encoder training is one epoch).\n\n"
             "| stage | time (s) | peak RSS (GB) | x full | full-size time (s) |\n|---|---:|---:|---:|---:|\n"]
    lines += [f"| {n} | {dt:.1f} | {rss:.2f} | {s:.0f} | {dt * s:.0f} |\n" for n, dt, rss, _, s in rows]
    lines.append("\nFull-size host memory of the large arrays, from their shapes (budget 24 GB):\n\n"
                 "| array | GB | stage | |\n|---|---:|---|---|\n")
    lines += [f"| {w} | {gb:.2f} | {st} | {'**over budget**' if gb > BUDGET_GB else 'ok'} |\n" for w, gb, st in mem]
    if not cuda:
        lines.append("\nGPU rows (encoder training at full size, 7B narration throughput batched vs batch 1, SAE epoch, "
                     "GPU memory): not measured: no GPU lent in this session.\n")
    append_results("".join(lines))


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        return False


if __name__ == "__main__":
    main()
