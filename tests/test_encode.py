"""The one encoding loop: batched, normalised in fp32, on the CPU, equal to the model's own encoders."""

from __future__ import annotations

import torch

from clipworks import create_model, tokenize
from clipworks.models.encode import embed_images, encode_texts, encode_tokens


def test_embed_images_equals_encode_image_and_passes_extras_through() -> None:
    model = create_model("RN-Tiny", seed=0).eval()
    images = torch.randn(5, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    batches = [(images[:2], "first"), None, (images[2:], [7, 8, 9])]  # None: a loader batch of unreadable images
    out = list(embed_images(model, batches))
    assert [extra for _, extra in out] == ["first", [7, 8, 9]]
    embeddings = torch.cat([e for e, _ in out])
    with torch.no_grad():
        expected = model.encode_image(images, normalize=True)
    assert embeddings.dtype == torch.float32 and embeddings.device.type == "cpu"
    torch.testing.assert_close(embeddings, expected, atol=1e-6, rtol=0)


def test_texts_are_encoded_in_batches_with_the_same_result() -> None:
    model = create_model("ViT-Tiny", seed=0).eval()
    texts = ["a red circle", "two blue squares on the left", "a photo of a star.", "x"]
    tokens = tokenize(texts, model.context_length)
    with torch.no_grad():
        expected = model.encode_text(tokens, normalize=True)
    torch.testing.assert_close(encode_texts(model, texts, batch_size=3), expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(encode_tokens(model, tokens, batch_size=1), expected, atol=1e-6, rtol=0)
    assert encode_texts(model, []).shape == (0, 128)


def test_a_bf16_model_gives_unit_norm_float32_embeddings() -> None:
    model = create_model("ViT-Tiny", seed=0).eval().to(torch.bfloat16)
    (embeddings, _), = embed_images(model, [(torch.randn(3, 3, 64, 64), None)])
    assert embeddings.dtype == torch.float32
    torch.testing.assert_close(embeddings.norm(dim=-1), torch.ones(3), atol=1e-6, rtol=0)
