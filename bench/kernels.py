"""Each oneDNN fast path of clipworks against its own fallback, on this CPU's class: the measurements behind
`clipworks.hardware.fast_paths`. Run it on both classes (on an AVX-512 machine, the AVX2 class with
`ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2`).

- training_linear: a whole fp32 training step (forward, backward, fused AdamW) with layers.linear in oneDNN vs
  F.linear (torch's BLAS), on the demo's models and a mid-size ViT.
- packed_linear: optimize_for_inference's fp32 copy with prepacked Linear weights and fused QuickGELU vs the same
  folded copy through F.linear (ViT-B-32 images and texts).
- packed_conv: the same for the ResNet convolutions (RN50 images).
- channels_last_resnet: ModifiedResNet on NHWC activations vs NCHW (training steps of RN-Tiny, plain RN50 images).
- fold_quick_gelu: training steps with QuickGELU's 1.702 moved onto the MLP weights vs applied to the activations.
- patch_matmul, residual_in_place: optimize_for_inference's ViT patch embedding as one matmul vs a convolution, and
  ResNet residual sums accumulated in place vs into a fresh output (ViT-B-32 and RN50 images).
- conv_batch_packing: ResNet convolution weights packed for batches of two or more as well vs packed for one image
  only (RN50 images at batch 2, 8 and 32; batch 1 runs the same packing either way).
Times are medians of alternating calls; results are appended to bench/RESULTS.md. Needs only clipworks' own venv.
"""

from __future__ import annotations

import argparse

import torch
from timing import append_results, paired

import clipworks
from clipworks import optimize_for_inference
from clipworks.hardware import use_fast_paths
from clipworks.models.configs import CLIPConfig, TextConfig, VisionConfig
from clipworks.training.loss import clip_loss
from clipworks.training.optim import create_optimizer

MID_VIT = CLIPConfig(256, VisionConfig(128, 384, 6, 16), TextConfig(context_length=77, width=256, layers=6))


def training_rows(repeats: int) -> list[str]:
    rows = []
    for name, cfg, batch in (("RN-Tiny", "RN-Tiny", 128), ("RN-Tiny", "RN-Tiny", 256), ("ViT-Tiny", "ViT-Tiny", 128),
                             ("ViT 128px 6x384", MID_VIT, 64)):
        torch.manual_seed(0)
        model = clipworks.create_model(cfg).train()
        optimizer = create_optimizer(model, lr=1e-4, weight_decay=0.2, betas=(0.9, 0.98), eps=1e-6)
        size, length = model.config.vision.image_size, model.config.text.context_length
        images, tokens = torch.randn(batch, 3, size, size), torch.randint(1, 49407, (batch, length))
        tokens[:, 16] = 49407  # captions of ~16 tokens, as web captions are

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            loss = clip_loss(model.encode_image(images), model.encode_text(tokens), model.logit_scale)
            loss.backward()
            optimizer.step()

        paths = ["training_linear", "fold_quick_gelu"] + (["channels_last_resnet"]
                                                          if model.config.vision.kind == "resnet" else [])
        for path in paths:
            def plain() -> None:
                with use_fast_paths(**{path: False}):
                    step()

            with use_fast_paths(**{path: True}):
                fast_t, plain_t = paired(step, plain, repeats)
            rows.append(f"| {path} | train step {name}, fp32 | {batch} | {batch / plain_t:.1f} | "
                        f"{batch / fast_t:.1f} | {plain_t / fast_t:.2f}x |")
    return rows


def inference_rows(repeats: int) -> list[str]:
    rows = []
    torch.manual_seed(0)
    vit, rn = clipworks.create_model("ViT-B-32").eval(), clipworks.create_model("RN50").eval()
    images, image = torch.randn(32, 3, 224, 224), torch.randn(1, 3, 224, 224)
    tokens = torch.randint(1, 49407, (256, 77))
    tokens[:, 16] = 49407
    cases = (("packed_linear", "ViT-B-32 images", vit, lambda m: m.encode_image(images), 32),
             ("packed_linear", "ViT-B-32 images", vit, lambda m: m.encode_image(image), 1),
             ("packed_linear", "ViT-B-32 texts", vit, lambda m: m.encode_text(tokens), 256),
             ("packed_conv", "RN50 images", rn, lambda m: m.encode_image(images), 32),
             ("packed_conv", "RN50 images", rn, lambda m: m.encode_image(image), 1),
             ("patch_matmul", "ViT-B-32 images", vit, lambda m: m.encode_image(images), 32),
             ("patch_matmul", "ViT-B-32 images", vit, lambda m: m.encode_image(image), 1),
             ("residual_in_place", "RN50 images", rn, lambda m: m.encode_image(images), 32),
             ("residual_in_place", "RN50 images", rn, lambda m: m.encode_image(image), 1),
             *(("conv_batch_packing", "RN50 images", rn, lambda m, n=n: m.encode_image(images[:n]), n)
               for n in (2, 8, 32)))
    with torch.no_grad():
        for batch in (32, 1):
            def plain_rn50() -> None:
                with use_fast_paths(channels_last_resnet=False):
                    rn.encode_image(images[:batch])

            with use_fast_paths(channels_last_resnet=True):
                fast_t, plain_t = paired(lambda: rn.encode_image(images[:batch]), plain_rn50, repeats)
            rows.append(f"| channels_last_resnet | RN50 images, plain model fp32 | {batch} | {batch / plain_t:.1f} | "
                        f"{batch / fast_t:.1f} | {plain_t / fast_t:.2f}x |")
    for path, what, model, run, batch in cases:
        with use_fast_paths(**{path: True}):
            fast = optimize_for_inference(model, torch.float32)
        with use_fast_paths(**{path: False}):
            plain = optimize_for_inference(model, torch.float32)
        with torch.no_grad():
            fast_t, plain_t = paired(lambda: run(fast), lambda: run(plain), repeats)
        rows.append(f"| {path} | {what}, optimize_for_inference fp32 | {batch} | {batch / plain_t:.1f} | "
                    f"{batch / fast_t:.1f} | {plain_t / fast_t:.2f}x |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    header = ["| fast path | what | batch | fallback /s | fast path /s | speed-up |", "|---|---|---|---|---|---|"]
    parser.add_argument("--only", choices=("training", "inference"), help="one half of the table")
    args = parser.parse_args()
    rows = [] if args.only == "inference" else training_rows(args.repeats)
    rows += [] if args.only == "training" else inference_rows(args.repeats)
    append_results("oneDNN fast paths vs their fallbacks", f"torch {torch.__version__}",
                   f"Median of {args.repeats} alternating calls after a warm-up, random weights and inputs. "
                   "Fallback: torch's plain op for the same computation (F.linear / F.conv2d on the same folded "
                   "weights). A path is on for a CPU class where its speed-up is above 1.", [*header, *rows])


if __name__ == "__main__":
    main()
