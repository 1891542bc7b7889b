"""Exact parity with OpenAI's own clip/model.py on seeded random weights copied across (fp32, <= 1e-5)."""

from __future__ import annotations

import pytest
import torch
from reference import openai_model

from clipworks import MODELS, create_model
from clipworks.models.configs import CLIPConfig

TOL = 1e-5


def openai_clip(cfg: CLIPConfig) -> torch.nn.Module:
    v, t = cfg.vision, cfg.text
    return openai_model().CLIP(cfg.embed_dim, v.image_size, v.layers, v.width, v.patch_size or None,
                               t.context_length, t.vocab_size, t.width, t.heads, t.layers)


def sample_inputs(cfg: CLIPConfig, n_images: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    images = torch.randn(n_images, 3, cfg.vision.image_size, cfg.vision.image_size, generator=g)
    length = cfg.text.context_length
    text = torch.randint(1, 49406, (3, length), generator=g)
    text[:, 0] = 49406
    # EOT at three different places, zero padding after it (as tokenize produces), one caption filling the context.
    for row, eot in enumerate((5, length // 2, length - 1)):
        text[row, eot] = 49407
        text[row, eot + 1:] = 0
    return images, text


def assert_parity(name: str) -> None:
    cfg = MODELS[name]
    ours = create_model(name, seed=0).eval()
    ref = openai_clip(cfg).eval()
    ref.load_state_dict(ours.state_dict(), strict=True)  # OpenAI's names are ours: no conversion
    images, text = sample_inputs(cfg)
    with torch.no_grad():
        torch.testing.assert_close(ours.encode_image(images), ref.encode_image(images), atol=TOL, rtol=0)
        torch.testing.assert_close(ours.encode_text(text), ref.encode_text(text), atol=TOL, rtol=0)
        for a, b in zip(ours(images, text), ref(images, text)):
            torch.testing.assert_close(a, b, atol=TOL * 100, rtol=TOL)  # logits are 100x the cosine similarity


@pytest.mark.parametrize("name", ["ViT-Tiny", "RN-Tiny"])
def test_small_models_match_openai(name: str) -> None:
    assert_parity(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["RN50", "RN101", "RN50x4", "RN50x16", "RN50x64",
                                  "ViT-B-32", "ViT-B-16", "ViT-L-14", "ViT-L-14-336"])
def test_paper_models_match_openai(name: str) -> None:
    assert_parity(name)


def test_openai_state_dict_loads_strictly_both_ways() -> None:
    cfg = MODELS["RN-Tiny"]
    ref_state = openai_clip(cfg).state_dict()
    ours = create_model("RN-Tiny")
    ours.load_state_dict(ref_state, strict=True)
    assert set(ours.state_dict()) == set(ref_state)


def test_vit_b_32_parameter_count() -> None:
    with torch.device("meta"):
        model = create_model("ViT-B-32")
    assert sum(p.numel() for p in model.parameters()) == 151_277_313


def test_openai_initialisation_statistics() -> None:
    model = create_model("ViT-Tiny", seed=0)
    width, layers = model.transformer.width, model.transformer.layers
    assert model.logit_scale.item() == pytest.approx(2.6592600, abs=1e-6)  # ln(1/0.07)
    assert model.token_embedding.weight.std().item() == pytest.approx(0.02, rel=0.01)
    block = model.transformer.resblocks[0]
    assert block.attn.in_proj_weight.std().item() == pytest.approx(width**-0.5, rel=0.05)
    assert block.mlp.c_proj.weight.std().item() == pytest.approx(width**-0.5 * (2 * layers) ** -0.5, rel=0.05)
    rn = create_model("RN-Tiny", seed=0)
    assert all((b.bn3.weight == 0).all() for stage in (rn.visual.layer1, rn.visual.layer4) for b in stage)


def test_length_adaptive_text_encoding_equals_full_length() -> None:
    model = create_model("ViT-Tiny", seed=0).eval()
    _, text = sample_inputs(model.config)
    short = text[:2]  # the last EOT is at length // 2: half the positions are skipped
    with torch.no_grad():
        x = model.token_embedding(short) + model.positional_embedding  # full-length reference path
        x = model.ln_final(model.transformer(x, causal=True))
        full = x[torch.arange(2), short.argmax(-1)] @ model.text_projection
        torch.testing.assert_close(model.encode_text(short), full, atol=TOL, rtol=0)
        # int32 ids (as ONNX users feed them) pool at the same position.
        torch.testing.assert_close(model.encode_text(short.int()), full, atol=TOL, rtol=0)
