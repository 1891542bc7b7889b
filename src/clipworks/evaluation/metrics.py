"""The headline metric of each benchmark (Radford et al. 2021, Table 9; retrieval: Table 13).

Pure functions of tensors. Accuracy and top-5 elsewhere; mean per-class recall for FGVC Aircraft, Oxford Pets,
Caltech-101 and Flowers-102; PASCAL VOC 2007's 11-point interpolated average precision (Everingham et al. 2010,
Sec. 4.2: the devkit's VOCevalcls), averaged over the 20 classes; ROC AUC for Hateful Memes; the mean of top-1 and
top-5 for Kinetics-700; recall@K for retrieval. Every figure is a fraction in [0, 1].
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .retrieval import recall_at_k
from .zeroshot import confusion_matrix, mean_per_class_recall, topk_accuracy

if TYPE_CHECKING:
    from .specs import BenchmarkSpec


def average_precision_11point(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """One class: `scores` (N,), `targets` (N,) with 1 present, 0 absent, -1 difficult (left out entirely).

    AP = mean over recall levels t = 0, 0.1, ..., 1 of the highest precision reached at recall >= t (0 if none).
    Ties in score keep the input order, as the devkit's sort does. NaN when the class has no positive item.
    """
    keep = targets >= 0
    scores, targets = scores[keep].double(), targets[keep]
    n_positive = int((targets == 1).sum())
    if n_positive == 0:
        return float("nan")
    order = torch.sort(scores, descending=True, stable=True).indices
    hits = (targets[order] == 1).double()
    true_positives = hits.cumsum(0)
    precision = true_positives / torch.arange(1, len(hits) + 1, dtype=torch.float64)
    recall = true_positives / n_positive
    levels = torch.linspace(0, 1, 11, dtype=torch.float64)
    reached = recall.unsqueeze(0) >= levels.unsqueeze(1) - 1e-12  # (11, N)
    best = torch.where(reached, precision.unsqueeze(0), torch.zeros(())).max(dim=1).values  # (11,)
    return best.mean().item()


def map_11point(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """VOC 2007 classification mAP: `scores`, `targets` (N, C); targets 1 present, 0 absent, -1 difficult (ignored).

    The mean over classes of `average_precision_11point`; a class with no positive item is left out of the mean.
    """
    if scores.shape != targets.shape or scores.dim() != 2:
        raise ValueError(f"scores {tuple(scores.shape)} and targets {tuple(targets.shape)} must both be (N, C)")
    aps = torch.tensor([average_precision_11point(scores[:, c], targets[:, c]) for c in range(scores.shape[1])])
    if aps.isnan().all():
        raise ValueError("no class has a positive item, so mAP is undefined")
    return aps[~aps.isnan()].mean().item()


def _average_ranks(values: torch.Tensor) -> torch.Tensor:
    """1-based ranks of `values` (N,), tied values sharing the mean of their ranks."""
    sorted_values, order = torch.sort(values, stable=True)
    _, inverse, counts = torch.unique_consecutive(sorted_values, return_inverse=True, return_counts=True)
    last = counts.cumsum(0).double()  # rank of each tie group's last member
    group_rank = last - (counts.double() - 1) / 2
    ranks = torch.empty_like(group_rank[inverse])
    ranks[order] = group_rank[inverse]
    return ranks


def roc_auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve of binary `labels` (N,) in {0, 1} ranked by `scores` (N,), ties counting half.

    Computed as the Mann-Whitney statistic: the probability that a random positive outscores a random negative.
    """
    scores, labels = scores.reshape(-1).double(), labels.reshape(-1)
    if scores.shape != labels.shape:
        raise ValueError(f"{scores.numel()} scores for {labels.numel()} labels")
    positive = labels == 1
    if not ((labels == 0) | positive).all():
        raise ValueError("roc_auc takes labels 0 and 1 only")
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("roc_auc needs both a positive and a negative item")
    rank_sum = _average_ranks(scores)[positive].sum().item()
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def mean_top1_top5(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Kinetics-700's figure in the paper: (top-1 + top-5) / 2."""
    top = topk_accuracy(logits, labels, (1, 5))
    return (top["top1"] + top["top5"]) / 2


def pool_by_label(logits: torch.Tensor, class_labels: tuple[int, ...]) -> torch.Tensor:
    """(N, C) logits of C classes -> (N, L): each label's highest logit over the classes that stand for it.

    ObjectNet's protocol: a prediction among the ImageNet classes counts for the ObjectNet class it belongs to.
    """
    index = torch.tensor(class_labels, device=logits.device).expand_as(logits)
    pooled = logits.new_full((logits.shape[0], max(class_labels) + 1), float("-inf"))
    return pooled.scatter_reduce(1, index, logits, reduce="amax")


def benchmark_metric(spec: BenchmarkSpec, logits: torch.Tensor, labels_or_targets: torch.Tensor) -> dict[str, float]:
    """The figures for one dataset, its headline under "score" (spec.metric), fractions in [0, 1].

    classification: `logits` (N, C), `labels` (N,) -> score, top1, top5 (when C > 5), mean_per_class_recall, and
    roc_auc for a binary task. If the logits cover the parent's classes (e.g. ImageNet's 1000 for ImageNet-R), the
    spec's class_subset columns are taken first; classes sharing a label (spec.class_labels) are max-pooled into it.
    multilabel: `logits` (N, C), `targets` (N, C) -> score (= map_11point).
    retrieval: `logits` = similarity (N_images, N_texts), `labels_or_targets` = each text's image (N_texts,) ->
    recall@1/5/10 both ways; score is image-to-text R@1 (Table 13's first column).
    """
    if spec.task == "retrieval":
        recalls = recall_at_k(logits, labels_or_targets)
        return {"score": recalls["image_to_text_R@1"], **recalls}
    if spec.class_subset and logits.shape[1] != len(spec.classnames):
        if logits.shape[1] <= max(spec.class_subset):
            raise ValueError(f"{spec.name}: {logits.shape[1]} logit columns, expected {len(spec.classnames)} "
                             f"or the parent's classes (> {max(spec.class_subset)})")
        logits = logits[:, list(spec.class_subset)]
    if logits.shape[1] != len(spec.classnames):
        raise ValueError(f"{spec.name}: {logits.shape[1]} logit columns for {len(spec.classnames)} classes")
    if spec.class_labels:
        logits = pool_by_label(logits, spec.class_labels)
    if spec.task == "multilabel":
        score = map_11point(logits, labels_or_targets)
        return {"score": score, "map_11point": score}
    labels = labels_or_targets.reshape(-1).long()
    n_classes = logits.shape[1]
    results = topk_accuracy(logits, labels, (1, 5) if n_classes > 5 else (1,))
    results["mean_per_class_recall"] = mean_per_class_recall(confusion_matrix(logits.argmax(dim=1), labels, n_classes))
    if n_classes == 2 and (spec.metric == "roc_auc" or labels.unique().numel() == 2):
        # The logit difference ranks items exactly as the softmax probability of class 1 does.
        results["roc_auc"] = roc_auc(logits[:, 1] - logits[:, 0], labels)
    headline = {"accuracy": "top1", "mean_per_class_recall": "mean_per_class_recall", "roc_auc": "roc_auc"}
    if spec.metric == "mean_top1_top5":
        results["mean_top1_top5"] = (results["top1"] + results["top5"]) / 2
        headline["mean_top1_top5"] = "mean_top1_top5"
    if spec.metric not in headline:
        raise ValueError(f"{spec.name}: metric {spec.metric!r} does not apply to a {spec.task} task")
    return {"score": results[headline[spec.metric]], **results}
