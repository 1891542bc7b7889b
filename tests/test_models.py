"""Every registry entry, shrunk to CPU size with dataclasses.replace: forward/backward shapes, finite values, grads."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from clipworks import CLIPConfig, create_model, get_config, list_models
from clipworks.errors import ConfigError
from clipworks.models.configs import TextConfig, VisionConfig


def shrink(cfg: CLIPConfig) -> CLIPConfig:
    """Same architecture family and code path, a fraction of the size."""
    v = cfg.vision
    if v.kind == "vit":
        vision = dataclasses.replace(v, image_size=4 * v.patch_size, width=64, layers=2, head_width=32)
    else:
        vision = dataclasses.replace(v, image_size=64, width=8, layers=tuple(min(n, 2) for n in v.layers),
                                     head_width=32)
    text = dataclasses.replace(cfg.text, context_length=16, width=64, layers=2, head_width=32)
    return dataclasses.replace(cfg, embed_dim=32, vision=vision, text=text)


@pytest.mark.parametrize("name", list_models())
def test_forward_backward_over_the_registry(name: str) -> None:
    cfg = shrink(get_config(name))
    model = create_model(cfg, seed=0)
    images = torch.randn(3, 3, cfg.vision.image_size, cfg.vision.image_size)
    text = torch.tensor([[49406, 320, 1125, 49407] + [0] * 12] * 2 + [[49406] + [500] * 14 + [49407]])
    logits_per_image, logits_per_text = model(images, text)
    assert logits_per_image.shape == (3, 3) and torch.equal(logits_per_text, logits_per_image.t())
    assert torch.isfinite(logits_per_image).all()
    assert model.encode_image(images).shape == (3, 32)
    torch.testing.assert_close(model.encode_text(text, normalize=True).norm(dim=-1), torch.ones(3))
    logits_per_image.logsumexp(dim=1).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    # Only token rows never looked up get zero gradient; every parameter gets a finite gradient tensor.
    assert missing == []
    assert model.visual.conv1.weight.grad.abs().sum() > 0 and model.text_projection.grad.abs().sum() > 0


def test_unknown_model_name_suggests_close_matches() -> None:
    with pytest.raises(ValueError, match="unknown model 'ViT-B-23'. Did you mean .*ViT-B-32"):
        create_model("ViT-B-23")
    assert get_config("ViT-L/14@336px") is get_config("ViT-L-14-336")  # OpenAI's spelling is accepted


def test_paper_architecture_shapes() -> None:
    rn50x64 = get_config("RN50x64")
    assert (rn50x64.embed_dim, rn50x64.vision.image_size, rn50x64.vision.layers) == (1024, 448, (3, 15, 36, 10))
    assert rn50x64.vision.heads == 64 and rn50x64.text.heads == 16
    assert get_config("ViT-L-14").vision.heads == 16 and get_config("ViT-L-14").text.width == 768
    assert get_config("ViT-L-14-336").vision.image_size == 336


def test_invalid_vision_configs_are_rejected() -> None:
    v = get_config("ViT-B-32").vision
    with pytest.raises(ValueError, match="not a multiple of patch_size"):
        dataclasses.replace(v, image_size=100)
    with pytest.raises(ValueError, match="4 stage depths"):
        dataclasses.replace(get_config("RN50").vision, layers=(3, 4, 6))


@pytest.mark.parametrize("scale", [1, 10])
def test_config_bounds_leave_room_above_the_largest_released_clips(scale: int) -> None:
    # open_clip's ViT-bigG-14 (the largest released CLIP) and RN50x64, and both ten times deeper and wider, are valid.
    big_g = CLIPConfig(1280 * scale, VisionConfig(224, 1664 * scale, 48 * scale, 14, head_width=104),
                       TextConfig(width=1280 * scale, layers=32 * scale, head_width=64))
    assert big_g.vision.heads == 16 * scale and big_g.text.heads == 20 * scale
    rn = get_config("RN50x64").vision
    rn = dataclasses.replace(rn, width=rn.width * scale, layers=tuple(n * scale for n in rn.layers))
    assert rn.layers[2] == 36 * scale
    with pytest.raises(ConfigError, match=r"text.layers = 1000000 is out of bounds: allowed 1\.\.512"):
        dataclasses.replace(big_g.text, layers=10**6)
