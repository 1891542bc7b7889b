"""Retrieval recall@K and zero-shot accuracy on small hand-built matrices with known answers."""

from __future__ import annotations

import pytest
import torch

from clipworks import create_model
from clipworks.evaluation.retrieval import recall_at_k
from clipworks.evaluation.zeroshot import topk_accuracy, zero_shot_classifier, zero_shot_logits


def test_recall_at_k_with_several_captions_per_image() -> None:
    # 3 images, 5 captions: captions 0,1 -> image 0; 2 -> image 1; 3,4 -> image 2.
    sim = torch.tensor([
        [0.9, 0.1, 0.8, 0.0, 0.2],  # image 0: its best caption (0) ranks 1st -> hit at 1
        [0.5, 0.4, 0.1, 0.3, 0.2],  # image 1: its caption 2 scores lowest of 5 -> rank 5
        [0.1, 0.7, 0.2, 0.6, 0.3],  # image 2: caption 3 is 2nd (caption 1 is higher) -> hit at 5, not at 1
    ])
    owner = [0, 0, 1, 2, 2]
    r = recall_at_k(sim, owner, ks=(1, 2, 5))
    assert r["image_to_text_R@1"] == pytest.approx(1 / 3)
    assert r["image_to_text_R@2"] == pytest.approx(2 / 3)
    assert r["image_to_text_R@5"] == pytest.approx(1.0)
    # Text -> image (rank of the own image in each column):
    # c0: 0.9 top -> 1; c1: own 0.1, others 0.4, 0.7 -> rank 3; c2: own 0.1, others 0.8, 0.2 -> 3;
    # c3: own 0.6, others 0.0, 0.3 -> 1; c4: own 0.3, others 0.2, 0.2 -> 1.
    assert r["text_to_image_R@1"] == pytest.approx(3 / 5)
    assert r["text_to_image_R@2"] == pytest.approx(3 / 5)
    assert r["text_to_image_R@5"] == pytest.approx(1.0)


def test_recall_rejects_mismatched_caption_owner_list() -> None:
    with pytest.raises(ValueError, match="4 entries for 5 texts"):
        recall_at_k(torch.zeros(2, 5), [0, 1, 0, 1])
    with pytest.raises(ValueError, match="outside"):
        recall_at_k(torch.zeros(2, 2), [0, 2])


def test_topk_accuracy() -> None:
    logits = torch.tensor([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0], [1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    labels = torch.tensor([0, 2, 0, 1])
    acc = topk_accuracy(logits, labels, ks=(1, 2, 5))
    assert acc == {"top1": 0.25, "top2": 0.75, "top5": 1.0}


def test_zero_shot_classifier_averages_normalised_template_embeddings() -> None:
    model = create_model("ViT-Tiny", seed=0).eval()
    classes, templates = ["cat", "dog"], ["a photo of a {}.", "a drawing of a {}."]
    weights = zero_shot_classifier(model, classes, templates)
    assert weights.shape == (model.config.embed_dim, 2)
    from clipworks.models.tokenizer import tokenize
    with torch.no_grad():
        emb = model.encode_text(tokenize(["a photo of a dog.", "a drawing of a dog."], 32), normalize=True)
    expected = torch.nn.functional.normalize(emb.mean(0), dim=0)
    torch.testing.assert_close(weights[:, 1], expected, atol=1e-6, rtol=0)
    logits = zero_shot_logits(torch.randn(4, model.config.embed_dim), weights)
    assert logits.shape == (4, 2) and logits.abs().max() <= 100.0 + 1e-4
    with pytest.raises(ValueError, match="no '\\{\\}'"):
        zero_shot_classifier(model, classes, ["a photo"])


def test_confusion_matrix_and_per_class_recall_by_hand() -> None:
    from clipworks.evaluation.zeroshot import confusion_matrix, mean_per_class_recall, per_class_recall

    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    predictions = torch.tensor([0, 1, 0, 1, 0, 1])
    cm = confusion_matrix(predictions, labels, 4)  # class 3 has no items
    assert cm.tolist() == [[2, 1, 0, 0], [1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]]
    recall = per_class_recall(cm)
    assert recall[:3].tolist() == pytest.approx([2 / 3, 1 / 2, 0.0]) and recall[3].isnan()
    assert mean_per_class_recall(cm) == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)  # empty class left out
    # Top-1 accuracy is 3/6 here, mean per-class recall ~0.389: the two differ on unbalanced sets.
    with pytest.raises(ValueError, match="5 predictions for 6 labels"):
        confusion_matrix(predictions[:5], labels, 3)


def test_chunked_recall_equals_dense_on_random_data() -> None:
    from clipworks.evaluation.retrieval import recall_at_k_chunked

    g = torch.Generator().manual_seed(0)
    images, texts = torch.randn(37, 16, generator=g, dtype=torch.float64), torch.randn(90, 16, generator=g,
                                                                                     dtype=torch.float64)
    owner = torch.randint(0, 37, (90,), generator=g)  # some images have several captions, some none
    dense = recall_at_k(images @ texts.t(), owner, ks=(1, 5, 10))
    for max_elements in (1, 90, 500, 10_000):  # one image per block ... everything in one block
        assert recall_at_k_chunked(images, texts, owner, ks=(1, 5, 10), max_elements=max_elements) == dense


def test_chunked_recall_equals_dense_with_ties() -> None:
    from clipworks.evaluation.retrieval import recall_at_k_chunked

    # Small integer embeddings: every dot product is exact in fp32 and many scores tie.
    g = torch.Generator().manual_seed(1)
    images = torch.randint(-2, 3, (25, 4), generator=g).float()
    texts = torch.randint(-2, 3, (60, 4), generator=g).float()
    owner = torch.arange(60) % 25
    dense = recall_at_k(images @ texts.t(), owner, ks=(1, 3, 10))
    assert recall_at_k_chunked(images, texts, owner, ks=(1, 3, 10), max_elements=130) == dense


def test_chunked_recall_with_several_captions_by_hand() -> None:
    from clipworks.evaluation.retrieval import recall_at_k_chunked

    # The hand-checked case above, as embeddings: identity images make the similarity matrix the texts' columns.
    sim = torch.tensor([[0.9, 0.1, 0.8, 0.0, 0.2], [0.5, 0.4, 0.1, 0.3, 0.2], [0.1, 0.7, 0.2, 0.6, 0.3]])
    r = recall_at_k_chunked(torch.eye(3), sim.t().contiguous(), [0, 0, 1, 2, 2], ks=(1, 2, 5), max_elements=5)
    assert r["image_to_text_R@1"] == pytest.approx(1 / 3) and r["image_to_text_R@2"] == pytest.approx(2 / 3)
    assert r["text_to_image_R@1"] == pytest.approx(3 / 5) and r["text_to_image_R@5"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="outside"):
        recall_at_k_chunked(torch.eye(3), sim.t(), [0, 0, 1, 2, 3])
