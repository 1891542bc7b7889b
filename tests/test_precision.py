"""Precision and memory options of training: bf16 close to fp32, fp16 with its gradient scaler, checkpointing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from clipworks import cli, create_model
from clipworks.io.checkpoints import load_training_state
from clipworks.training.loss import clip_loss


def test_fp16_training_keeps_its_gradient_scaler_in_the_checkpoint(tmp_path: Path) -> None:
    assert cli.main(["train", "--model", "ViT-Tiny", "--precision", "fp16", "--steps", "3", "--batch-size", "8",
                     "--world-samples", "16", "--eval-every", "0", "--output-dir", str(tmp_path), "--quiet"]) == 0
    scaler = load_training_state(tmp_path)["scaler"]
    # GradScaler starts at 2**16 and halves on overflow; it must be saved so a resumed run scales the same way.
    assert scaler["scale"] <= 2.0**16 and scaler["_growth_tracker"] >= 0


@pytest.mark.parametrize("name", ["ViT-Tiny", "RN-Tiny"])
def test_gradient_checkpointing_gives_the_same_gradients(name: str) -> None:
    images = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    tokens = torch.tensor([[49406, 320, 736, 2972, 49407] + [0] * 27] * 4)
    tokens[:, 2] = torch.tensor([736, 1746, 1901, 3467])
    grads = []
    for checkpointing in (False, True):
        model = create_model(name, seed=0)
        model.set_grad_checkpointing(checkpointing)
        clip_loss(model.encode_image(images), model.encode_text(tokens), model.logit_scale).backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    for n in grads[0]:
        torch.testing.assert_close(grads[1][n], grads[0][n], atol=1e-6, rtol=1e-5, msg=n)


def test_bf16_embeddings_stay_close_to_fp32() -> None:
    model = create_model("ViT-Tiny", seed=0).eval()
    images = torch.randn(8, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model.encode_image(images, normalize=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = model.encode_image(images, normalize=True).float()
    assert torch.nn.functional.cosine_similarity(full, half).min() > 0.999


@pytest.mark.parametrize("name", ["ViT-Tiny", "RN-Tiny"])
def test_a_model_cast_to_bf16_runs_on_cpu_close_to_fp32(name: str) -> None:
    # Inference with bf16 weights (`load(..., dtype=torch.bfloat16)`) skips autocast's per-call weight casts; its
    # LayerNorms still compute in fp32.
    model = create_model(name, seed=0).eval()
    images = torch.randn(8, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    tokens = torch.tensor([[49406, 320, 736, 2972, 49407] + [0] * 27] * 4)
    tokens[:, 2] = torch.tensor([736, 1746, 1901, 3467])
    with torch.no_grad():
        full = model.encode_image(images, normalize=True), model.encode_text(tokens, normalize=True)
        model.to(torch.bfloat16)
        half = model.encode_image(images, normalize=True), model.encode_text(tokens, normalize=True)
    assert half[0].dtype == half[1].dtype == torch.bfloat16
    for f, h in zip(full, half):
        assert torch.nn.functional.cosine_similarity(f, h.float()).min() > 0.999
