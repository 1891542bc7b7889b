"""`expected_shapes(config)`, the state-dict shapes a config gives by arithmetic, equals the shapes of the model that
config builds (on the meta device), for every registry model and for variants that move each size."""

from __future__ import annotations

import dataclasses

import pytest

from clipworks.io.checkpoints import _meta_model, expected_shapes
from clipworks.models.configs import MODELS, CLIPConfig


def _variants() -> dict[str, CLIPConfig]:
    vit, rn = MODELS["ViT-Tiny"], MODELS["RN-Tiny"]
    text = dataclasses.replace(vit.text, context_length=20, vocab_size=1000, width=96, layers=3, head_width=32)
    return {
        "ViT, other text tower and embed": dataclasses.replace(vit, text=text, embed_dim=48),
        "ViT, patch 8 at 40 px": dataclasses.replace(vit, vision=dataclasses.replace(vit.vision, image_size=40,
                                                                                     patch_size=8, layers=3)),
        "ResNet, uneven stages, 96 px": dataclasses.replace(rn, vision=dataclasses.replace(
            rn.vision, layers=(2, 1, 3, 2), image_size=96, width=24, head_width=32)),
    }


@pytest.mark.parametrize("name", [*MODELS, *_variants()])
def test_expected_shapes_equal_the_built_model(name: str) -> None:
    config = MODELS.get(name) or _variants()[name]
    built = {key: tuple(tensor.shape) for key, tensor in _meta_model(config).state_dict().items()}
    assert expected_shapes(config) == built
