"""Every registry entry, shrunk to CPU size with dataclasses.replace: forward/backward shapes, finite values, grads."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from clipworks import CLIPConfig, create_model, get_config, list_models
from clipworks.errors import ConfigError
from clipworks.hardware import use_fast_paths
from clipworks.models.configs import MODELS, TextConfig, VisionConfig


def shrink(cfg: CLIPConfig) -> CLIPConfig:
    """Same architecture family and code path, a fraction of the size."""
    v = cfg.vision
    if v.kind == "vit":
        # A non-4x MLP (ViT-g-14, ViT-bigG-14) stays non-4x: the same ratio, rounded down.
        vision = dataclasses.replace(v, image_size=4 * v.patch_size, width=64, layers=2, head_width=32,
                                     mlp_width=v.mlp_width * 64 // v.width)
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


# ---------------------------------------------------------------- MLP width (open_clip's mlp_ratio)

# A tiny ViT whose MLPs are not 4x wide, in either tower.
NARROW_MLP = CLIPConfig(32, VisionConfig(32, 64, 2, 16, head_width=32, mlp_width=200),
                        TextConfig(context_length=16, width=64, layers=2, head_width=32, mlp_width=96), "gelu")


def test_mlp_width_builds_the_mlps_and_round_trips() -> None:
    model = create_model(NARROW_MLP, seed=0)
    assert model.visual.transformer.resblocks[1].mlp.c_fc.weight.shape == (200, 64)
    assert model.visual.transformer.resblocks[1].mlp.c_proj.weight.shape == (64, 200)
    assert model.transformer.resblocks[0].mlp.c_fc.weight.shape == (96, 64)
    assert CLIPConfig.from_dict(json.loads(NARROW_MLP.to_json())) == NARROW_MLP
    big_g = get_config("ViT-bigG-14")
    assert CLIPConfig.from_dict(big_g.to_dict()) == big_g and big_g.vision.mlp_hidden == 8192


def test_mlp_width_zero_is_4x_and_old_configs_load_unchanged() -> None:
    old = get_config("ViT-B-32").to_dict()
    for tower in ("vision", "text"):
        del old[tower]["mlp_width"]  # config.json files written before the field existed
    assert CLIPConfig.from_dict(old) == get_config("ViT-B-32")
    assert get_config("ViT-B-32").vision.mlp_hidden == 3072 and get_config("ViT-B-32").text.mlp_hidden == 2048
    # An explicit 4x is stored as 0, so one architecture has one config however it was written ...
    explicit = VisionConfig(224, 768, 12, 32, mlp_width=3072)
    assert explicit == get_config("ViT-B-32").vision and explicit.mlp_width == 0
    # ... and a variant made with replace follows its new width unless its MLP width was set.
    assert dataclasses.replace(explicit, width=512).mlp_hidden == 2048


@pytest.mark.parametrize("tower, value, message", [
    ("vision", -1, r"vision.mlp_width = -1 is out of bounds: allowed 1\.\.131072"),
    ("text", 10**6, r"text.mlp_width = 1000000 is out of bounds"),
    ("text", 2.5, r"text.mlp_width must be an integer, got 2.5"),
])
def test_mlp_width_is_checked_against_limits(tower: str, value: object, message: str) -> None:
    d = NARROW_MLP.to_dict()
    d[tower]["mlp_width"] = value
    with pytest.raises(ConfigError, match=message):
        CLIPConfig.from_dict(d)


def test_a_resnet_has_no_mlp_width() -> None:
    with pytest.raises(ConfigError, match="vision.mlp_width 256 is for ViT towers"):
        dataclasses.replace(get_config("RN50").vision, mlp_width=256)


# Parameter counts from the meta device; the same counts as open_clip 3.3.0's models (bench/open_clip_parity.py).
OPEN_CLIP_COUNTS = {"ViT-B-32-256": 151_288_833, "ViT-B-16-plus-240": 208_377_345, "ViT-H-14": 986_109_441,
                    "ViT-H-14-378": 986_714_881, "ViT-g-14": 1_366_678_273, "ViT-bigG-14": 2_539_567_105}


@pytest.mark.parametrize("name", list(OPEN_CLIP_COUNTS))
def test_open_clip_architectures(name: str) -> None:
    cfg = get_config(name)
    assert cfg.activation == "gelu"  # their LAION / DataComp trainings
    with torch.device("meta"):
        model = create_model(name)
    assert sum(p.numel() for p in model.parameters()) == OPEN_CLIP_COUNTS[name]
    quick = get_config(f"{name}-quickgelu")  # open_clip's name for the same shapes with QuickGELU
    assert quick == dataclasses.replace(cfg, activation="quick_gelu")


def test_open_clip_head_and_mlp_widths() -> None:
    h, g, big_g = get_config("ViT-H-14"), get_config("ViT-g-14"), get_config("ViT-bigG-14")
    assert (h.vision.heads, h.vision.mlp_hidden, h.text.heads) == (16, 5120, 16)
    # open_clip's int(width * mlp_ratio): int(1408 * 4.3637) = 6144, int(1664 * 4.9231) = 8192
    assert (g.vision.heads, g.vision.mlp_hidden, g.text.heads) == (16, 6144, 16)
    assert (big_g.vision.heads, big_g.vision.mlp_hidden, big_g.text.heads, big_g.text.layers) == (16, 8192, 20, 32)
    assert MODELS["ViT-H-14-378"] == dataclasses.replace(h, vision=dataclasses.replace(h.vision, image_size=378))


def test_a_non_4x_mlp_trains_the_same_with_and_without_the_onednn_linear() -> None:
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    text = torch.tensor([[49406, 320, 1125, 49407] + [0] * 12] * 2 + [[49406] + [500] * 14 + [49407]])

    def step(training_linear: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        model = create_model(NARROW_MLP, seed=0)
        with use_fast_paths(training_linear=training_linear):
            loss = model(images, text)[0].logsumexp(dim=1).sum()
            loss.backward()
        return loss.detach(), {n: p.grad for n, p in model.named_parameters()}

    (loss, grads), (plain_loss, plain_grads) = step(True), step(False)
    torch.testing.assert_close(loss, plain_loss, atol=1e-5, rtol=1e-5)
    for name, grad in grads.items():  # float rounding relative to each gradient's size (some reach ~100)
        scale = float(plain_grads[name].abs().max())
        torch.testing.assert_close(grad, plain_grads[name], atol=1e-5 * max(scale, 1.0), rtol=1e-4, msg=name)
