"""Zero-shot classification (Radford et al. 2021, Sec. 3.1.2 and 3.1.4).

Each class is described by prompts ("a photo of a {}."); the classifier weight of a class is the mean of its
L2-normalised prompt embeddings, re-normalised (prompt ensembling). Images are classified by cosine similarity to
those weights, scaled by 100 as OpenAI's notebooks do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ..errors import ConfigError
from ..models.clip import CLIP
from ..models.encode import encode_texts
from .prompts import DEFAULT_TEMPLATE


@torch.no_grad()
def zero_shot_classifier(model: CLIP, classnames: Sequence[str], templates: Sequence[str | Callable[[str], str]]
                         = (DEFAULT_TEMPLATE,), *, batch_size: int = 256) -> torch.Tensor:
    """(embed_dim, n_classes) float32 classifier weights on the CPU. A template is a str with one "{}" or a callable
    name -> prompt."""
    if not classnames:
        raise ConfigError("zero_shot_classifier needs at least one class name")
    if not templates:
        raise ConfigError(f"zero_shot_classifier needs at least one template, e.g. {DEFAULT_TEMPLATE!r}")
    for t in templates:
        if isinstance(t, str) and "{}" not in t:
            raise ConfigError(f"template {t!r} has no '{{}}' where the class name goes")
    prompts = [t.format(c) if isinstance(t, str) else t(c) for c in classnames for t in templates]
    embeddings = encode_texts(model, prompts, batch_size=batch_size)  # (C * T, E)
    weights = embeddings.view(len(classnames), len(templates), -1).mean(dim=1)  # (C, E)
    return torch.nn.functional.normalize(weights, dim=-1).t()  # (E, C)


def zero_shot_logits(image_features: torch.Tensor, classifier: torch.Tensor) -> torch.Tensor:
    """(N, E) image embeddings x (E, C) classifier -> (N, C) logits, 100 * cosine similarity."""
    features = torch.nn.functional.normalize(image_features.float(), dim=-1)
    return 100.0 * features @ classifier.float().to(features.device)


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Fraction of rows whose label is among the K highest logits (K capped at the number of classes)."""
    n_classes = logits.shape[1]
    top = logits.topk(min(max(ks), n_classes), dim=1).indices  # (N, K)
    hits = top == labels.view(-1, 1)
    return {f"top{k}": hits[:, :min(k, n_classes)].any(dim=1).float().mean().item() for k in ks}


def confusion_matrix(predictions: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(n_classes, n_classes) counts: entry [i, j] is how many items of true class i were predicted as class j."""
    if predictions.shape != labels.shape:
        raise ValueError(f"{predictions.numel()} predictions for {labels.numel()} labels")
    flat = labels.long() * n_classes + predictions.long()
    return torch.bincount(flat, minlength=n_classes * n_classes).view(n_classes, n_classes)


def per_class_recall(confusion: torch.Tensor) -> torch.Tensor:
    """Recall of each class (diagonal / row sum) from a confusion matrix; NaN for a class with no items."""
    totals = confusion.sum(dim=1).double()
    return confusion.diagonal().double() / totals.where(totals > 0, torch.tensor(float("nan"), dtype=torch.float64))


def mean_per_class_recall(confusion: torch.Tensor) -> float:
    """The mean of per-class recalls over classes that have items (the paper's metric for unbalanced sets)."""
    recall = per_class_recall(confusion)
    return recall[~recall.isnan()].mean().item()
