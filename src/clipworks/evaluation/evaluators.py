"""Evaluators that training runs every `eval_every` steps: functions model -> metrics.

`evaluate_world` is the built-in world's evaluation: zero-shot accuracy per attribute (Sec. 3.1), zero-shot on
colour-shape combinations held out of training, and retrieval recall@K (Table 13's metric). `evaluate_captions` is
retrieval recall@K on the user's held-out CSV of image paths and captions. `evaluate_zeroshot` is zero-shot top-1 and
top-5 on a labelled image set (`--zeroshot-data`): a fine-tune that forgets what the model knew shows it as it runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from ..data.datasets import CsvDataset, LabelledImages, WorldDataset, collate_skip_bad
from ..data.world import World
from ..distributed import exit_with_parent
from ..io.files import cache_dir
from ..models.clip import CLIP
from ..models.encode import embed_images, encode_texts, encode_tokens
from .retrieval import recall_at_k
from .zeroshot import topk_accuracy, zero_shot_classifier, zero_shot_logits

Evaluator = Callable[[CLIP], dict[str, float]]


def encode_world_images(model: CLIP, images: np.ndarray, batch_size: int = 256, *, desc: str | None = None
                        ) -> torch.Tensor:
    """(N, E) embeddings of uint8 world images (N, H, W, 3), converted a batch at a time; `desc` shows a progress
    bar."""
    data = WorldDataset(images, torch.zeros(len(images), 1, dtype=torch.long))
    starts = tqdm(range(0, len(data), batch_size), desc=desc, disable=desc is None, leave=False)
    batches = ((data.batch(range(i, min(i + batch_size, len(data))))[0], None) for i in starts)
    return torch.cat([embeddings for embeddings, _ in embed_images(model, batches)])


def evaluate_world(world: World, n: int = 1000) -> Evaluator:
    """An evaluator over `n` validation and `n` held-out samples (rendered once, reused every call)."""
    splits = {split: world.arrays(split, n, cache_dir=cache_dir()) for split in ("val", "heldout")}
    tasks = world.zero_shot_tasks()

    def evaluate(model: CLIP) -> dict[str, float]:
        features = {split: encode_world_images(model, images) for split, (images, _, _) in splits.items()}
        metrics: dict[str, float] = {}
        for name, task in tasks.items():
            _, _, attributes = splits[task.split]
            labels = torch.tensor([task.label(a) for a in attributes])
            classifier = zero_shot_classifier(model, task.classnames, task.templates)
            acc = topk_accuracy(zero_shot_logits(features[task.split], classifier), labels, ks=(1,))
            metrics[f"zeroshot_{name}"] = acc["top1"]
        _, captions, _ = splits["val"]
        text = encode_texts(model, captions)
        metrics.update(recall_at_k(features["val"] @ text.t(), range(len(captions))))
        return metrics

    return evaluate


def evaluate_captions(dataset: CsvDataset, batch_size: int) -> Evaluator:
    """Retrieval recall@K on a held-out CSV of image paths and captions (unreadable images leave with their
    captions)."""

    def evaluate(model: CLIP) -> dict[str, float]:
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=collate_skip_bad)
        image_features, text_features = [], []
        for embeddings, tokens in embed_images(model, loader):
            image_features.append(embeddings)
            text_features.append(encode_tokens(model, tokens))
        image_features, text_features = torch.cat(image_features), torch.cat(text_features)
        return recall_at_k(image_features @ text_features.t(), range(len(text_features)))

    return evaluate


def evaluate_zeroshot(dataset: LabelledImages, classnames: Sequence[str], templates: Sequence[str], *,
                      batch_size: int, workers: int = 0,
                      weights: Callable[[CLIP], torch.Tensor] | None = None,
                      pool: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Evaluator:
    """Zero-shot top-1/top-5 (`zeroshot_top1`, `zeroshot_top5`) on `dataset`, whose transform is set, with a
    classifier of `classnames` x `templates` built from the model being trained (or `weights(model)`, (E, C)), its
    logits mapped onto the dataset's labels by `pool` where several classes share one (ObjectNet)."""

    def evaluate(model: CLIP) -> dict[str, float]:
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                                             collate_fn=collate_skip_bad, worker_init_fn=exit_with_parent)
        features, labels = zip(*embed_images(model, loader))  # per batch: (B, E) embeddings, (B,) labels
        classifier = weights(model) if weights is not None else zero_shot_classifier(model, classnames, templates)
        logits = zero_shot_logits(torch.cat(features), classifier)
        logits = pool(logits) if pool is not None else logits
        accuracy = topk_accuracy(logits, torch.cat([torch.as_tensor(y) for y in labels]), ks=(1, 5))
        return {f"zeroshot_{k}": v for k, v in accuracy.items()}

    return evaluate
