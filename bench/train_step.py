"""A training step of clipworks against open_clip's, both in one process on the same weights, data and optimizer.

The model is a small ViT CLIP that trains in seconds a step on a CPU (image 128 px, patch 16, 6 x 384 wide; text
6 x 256 wide, context 77) on built-in world images and captions (short, as web captions are: ~15 tokens of 77).
Each side takes the same batches and an AdamW with the same settings; steps alternate between the two libraries so
that load from elsewhere on the machine hits both alike. clipworks' step is its trainer's own
(`training.step.contrastive_backward` with the trainer's CPU attention setting); open_clip's is
`model(images, tokens)` and `open_clip.ClipLoss`, as its `train_one_epoch` does. Reported: samples/s (median step
time), the ratio, and how far apart the two loss curves are. Results are appended to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import statistics
import time

import open_clip
import torch
from open_clip.model import CLIPTextCfg, CLIPVisionCfg
from timing import append_results

import clipworks
from clipworks.data.world import World, WorldConfig
from clipworks.distributed import Process
from clipworks.hardware import cpu, resolve_precision
from clipworks.models.configs import CLIPConfig, TextConfig, VisionConfig
from clipworks.models.tokenizer import tokenize
from clipworks.training.loss import local_clip_loss
from clipworks.training.step import Towers, contrastive_backward, forward_context

IMAGE, PATCH, WIDTH, LAYERS, TEXT_WIDTH, TEXT_LAYERS, EMBED = 128, 16, 384, 6, 256, 6, 256


def make_models() -> tuple[torch.nn.Module, clipworks.CLIP]:
    theirs = open_clip.CLIP(EMBED, CLIPVisionCfg(layers=LAYERS, width=WIDTH, patch_size=PATCH, image_size=IMAGE),
                            CLIPTextCfg(context_length=77, width=TEXT_WIDTH, heads=TEXT_WIDTH // 64,
                                        layers=TEXT_LAYERS), quick_gelu=True)
    ours = clipworks.create_model(CLIPConfig(EMBED, VisionConfig(IMAGE, WIDTH, LAYERS, PATCH),
                                             TextConfig(context_length=77, width=TEXT_WIDTH, layers=TEXT_LAYERS)))
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return theirs.train(), ours.train()


def adamw(model: torch.nn.Module, *, fused: bool = False) -> torch.optim.AdamW:
    """The same AdamW settings on both sides; clipworks' trainer uses the fused implementation (optim.py), open_clip's
    the default."""
    return torch.optim.AdamW(model.parameters(), lr=5e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.2, fused=fused)


def batches(n_steps: int, batch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    world = World(WorldConfig(image_size=IMAGE))
    images, captions, _ = world.arrays("train", n_steps * batch)
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255)
    pixels = (pixels - pixels.mean()) / pixels.std()
    tokens = tokenize(captions)
    return [(pixels[i * batch:(i + 1) * batch], tokens[i * batch:(i + 1) * batch]) for i in range(n_steps)]


def run(precision: str, n_steps: int, batch: int) -> dict[str, object]:
    torch.manual_seed(0)
    theirs, ours = make_models()
    opt_theirs, opt_ours = adamw(theirs), adamw(ours, fused=True)
    loss_theirs = open_clip.ClipLoss()
    towers = Towers(ours)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
    data = batches(n_steps + 1, batch)

    def step_theirs(images: torch.Tensor, tokens: torch.Tensor) -> float:
        opt_theirs.zero_grad(set_to_none=True)
        with autocast:
            image_features, text_features, logit_scale = theirs(images, tokens)
            loss = loss_theirs(image_features, text_features, logit_scale)
        loss.backward()
        opt_theirs.step()
        with torch.no_grad():
            theirs.logit_scale.clamp_(0, 4.6052)
        return loss.item()

    def step_ours(images: torch.Tensor, tokens: torch.Tensor) -> float:
        opt_ours.zero_grad(set_to_none=True)
        loss = contrastive_backward(towers, ours.logit_scale, images, tokens, loss_fn=local_clip_loss,
                                    process=Process(), micro_batches=1,
                                    context=lambda: forward_context(autocast, torch.device("cpu")))
        opt_ours.step()
        with torch.no_grad():
            ours.logit_scale.clamp_(0, 4.6052)
        return loss.item()

    times: dict[str, list[float]] = {"theirs": [], "ours": []}
    losses: dict[str, list[float]] = {"theirs": [], "ours": []}
    for i, (images, tokens) in enumerate(data):
        for name, step in (("theirs", step_theirs), ("ours", step_ours)):
            t = time.perf_counter()
            losses[name].append(step(images, tokens))
            if i > 0:  # step 0 is the warm-up
                times[name].append(time.perf_counter() - t)
    t_theirs, t_ours = statistics.median(times["theirs"]), statistics.median(times["ours"])
    eot = int(data[0][1].argmax(-1).max()) + 1
    return {"precision": precision, "theirs": batch / t_theirs, "ours": batch / t_ours, "ratio": t_theirs / t_ours,
            "loss_diff": max(abs(a - b) for a, b in zip(losses["theirs"], losses["ours"])),
            "first": losses["ours"][0], "last": losses["ours"][-1], "eot": eot}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per library and precision")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    rows = []
    auto = resolve_precision("auto").name
    # bf16 only where it is native: emulated, it is many times slower than fp32 for both libraries.
    for precision in ("fp32", "bf16") if cpu().native_bf16 else ("fp32",):
        r = run(precision, args.steps, args.batch_size)
        label = f"{precision} (auto)" if precision == auto else precision
        rows.append(f"| {label} | {r['theirs']:.1f} | {r['ours']:.1f} | **{r['ratio']:.2f}×** | "
                    f"{r['first']:.4f} → {r['last']:.4f} | {r['loss_diff']:.1e} |")
        print(rows[-1], flush=True)
    versions = f"torch {torch.__version__}, open_clip {open_clip.__version__}, {torch.get_num_threads()} threads"
    append_results(
        "Training step, clipworks vs open_clip", versions,
        f"ViT CLIP, image {IMAGE} px / patch {PATCH} / {LAYERS}×{WIDTH}, text {TEXT_LAYERS}×{TEXT_WIDTH} context 77, "
        f"embed {EMBED}; batch {args.batch_size}; world captions (longest {r['eot']} tokens of 77); AdamW lr 5e-4, "
        f"betas (0.9, 0.98), eps 1e-6, wd 0.2 on both; median of {args.steps} alternating steps after one warm-up. "
        "Loss columns: clipworks' loss over the run, and the largest difference between the two loss curves.",
        ["| precision | open_clip samples/s | clipworks samples/s | speed-up | clipworks loss | max loss gap |",
         "|---|---|---|---|---|---|", *rows])


if __name__ == "__main__":
    main()
