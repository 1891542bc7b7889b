"""Glue between the data sources and the training/evaluation functions, used by the CLI and the demo.

`run_training` turns a `TrainConfig` into batches (the built-in world, a CSV or tar shards) and an evaluator, then
calls `train.train`. `evaluate_world` is the built-in world's evaluation: zero-shot accuracy per attribute, zero-shot on
held-out colour-shape combinations, and retrieval recall@K. `run_zeroshot` is `clipworks zeroshot`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ..models.inference import load_for_inference
from ..models.configs import CLIPConfig
from ..data.datasets import CsvDataset, DataError, WorldDataset, collate_skip_bad
from ..models.clip import CLIP
from ..evaluation.retrieval import recall_at_k
from ..data.shards import is_shard_spec, shard_batches
from ..models.tokenizer import tokenize
from .distributed import Process
from ..evaluation.commands import FeatureCache, image_features, open_labelled
from .config import TrainConfig
from .loop import Batch, Batches, TrainResult, train
from ..models.transforms import image_transform
from ..data.world import World, WorldConfig
from ..evaluation.zeroshot import DEFAULT_TEMPLATES, encode_texts, topk_accuracy, zero_shot_classifier, zero_shot_logits


def cache_dir() -> Path:
    """Where rendered world data is cached: $CLIPWORKS_CACHE, else ~/.cache/clipworks."""
    return Path(os.environ.get("CLIPWORKS_CACHE", "~/.cache/clipworks")).expanduser()


def world_batches(data: WorldDataset, batch_size: int, seed: int) -> Batches:
    """Endless shuffled batches from any step; each epoch is a fresh permutation from (seed, epoch), so batch k is
    the same whether the run started at 0 or resumed at k, and whatever the number of processes: process r takes
    the r-th slice of each global batch. The last partial batch of an epoch is dropped so every step contrasts the
    same number of negatives."""
    if len(data) < batch_size:
        raise DataError(f"{len(data)} training samples are fewer than --batch-size {batch_size}")
    per_epoch = len(data) // batch_size

    def batches(start: int, process: Process) -> Iterator[Batch]:
        epoch, first = divmod(start, per_epoch)
        share = batch_size // process.world_size
        while True:
            order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
            for i in range(first, per_epoch):
                lo = i * batch_size + process.rank * share
                yield data.batch(order[lo:lo + share])
            epoch, first = epoch + 1, 0

    return batches


def loader_batches(dataset: CsvDataset, batch_size: int, workers: int, seed: int) -> Batches:
    """Endless batches from a DataLoader, skipping unreadable images (and batches with fewer than two left); each
    process reads its own part of the data. Batch k is the same whether the run started at 0 or resumed at k: the
    order of epoch e comes from (seed, e), the first epoch of a resumed run skips the batches already trained on,
    and random crops are seeded per sample (CsvDataset.crop_seed), not by the loader's RNG."""
    dataset.crop_seed = seed

    def batches(start: int, process: Process) -> Iterator[Batch]:
        sampler = torch.utils.data.DistributedSampler(dataset, num_replicas=process.world_size, rank=process.rank,
                                                      shuffle=True, seed=seed, drop_last=True)
        share = batch_size // process.world_size
        per_epoch = len(sampler) // share
        if per_epoch == 0:
            raise DataError(f"{len(dataset)} readable samples are fewer than one batch of {batch_size}")
        epoch, skip = divmod(start, per_epoch)
        while True:
            sampler.set_epoch(epoch)
            dataset.epoch = epoch  # workers start afresh each epoch and pickle the dataset with this value
            order = list(sampler)[skip * share:]
            loader = torch.utils.data.DataLoader(dataset, batch_size=share, sampler=order, drop_last=True,
                                                 num_workers=workers, collate_fn=collate_skip_bad,
                                                 generator=torch.Generator().manual_seed(seed))
            for batch in loader:
                if batch is not None and len(batch[0]) >= 2:
                    yield batch
            epoch, skip = epoch + 1, 0

    return batches


def world_data(cfg: TrainConfig, split: str, n: int, model_cfg: CLIPConfig) -> tuple[World, WorldDataset]:
    """The world rendered at `model_cfg`'s image size, captions tokenized to its context length."""
    world = World(WorldConfig(seed=cfg.world_seed, image_size=model_cfg.vision.image_size))
    length = model_cfg.text.context_length
    data = WorldDataset.from_world(world, split, n, lambda caps: tokenize(caps, length, truncate=True),
                                   cache_dir=cache_dir())
    return world, data


@torch.no_grad()
def encode_images(model: CLIP, images: np.ndarray, batch_size: int = 256, *, desc: str | None = None
                  ) -> torch.Tensor:
    """(N, E) L2-normalised float32 embeddings, on the model's device, of uint8 world images (N, H, W, 3),
    converted a batch at a time; `desc` shows a progress bar."""
    data = WorldDataset(images, torch.zeros(len(images), 1, dtype=torch.long))
    device = next(model.parameters()).device
    chunks = []
    for i in tqdm(range(0, len(data), batch_size), desc=desc, disable=desc is None, leave=False):
        pixels = data.batch(range(i, min(i + batch_size, len(data))))[0].to(device)
        chunks.append(model.encode_image(pixels, normalize=True).float())
    return torch.cat(chunks)


def evaluate_world(world: World, n: int = 1000) -> Callable[[CLIP], dict[str, float]]:
    """An evaluator over `n` validation and `n` held-out samples (rendered once, reused every call)."""
    splits = {}
    for split in ("val", "heldout"):
        images, captions, attributes = world.arrays(split, n, cache_dir=cache_dir())
        splits[split] = (images, captions, attributes)
    tasks = world.zero_shot_tasks()

    def evaluate(model: CLIP) -> dict[str, float]:
        features = {split: encode_images(model, images) for split, (images, _, _) in splits.items()}
        metrics: dict[str, float] = {}
        for name, task in tasks.items():
            _, _, attributes = splits[task.split]
            labels = torch.tensor([task.label(a) for a in attributes])
            classifier = zero_shot_classifier(model, task.classnames, task.templates).float()
            acc = topk_accuracy(zero_shot_logits(features[task.split], classifier), labels, ks=(1,))
            metrics[f"zeroshot_{name}"] = acc["top1"]
        _, captions, _ = splits["val"]
        text = encode_texts(model, captions).float()
        for key, value in recall_at_k(features["val"] @ text.t(), range(len(captions))).items():
            metrics[key] = value
        return metrics

    return evaluate


def evaluate_captions(dataset: CsvDataset, batch_size: int) -> Callable[[CLIP], dict[str, float]]:
    """Retrieval recall@K on a held-out CSV of image paths and captions."""

    def evaluate(model: CLIP) -> dict[str, float]:
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=collate_skip_bad)
        device = next(model.parameters()).device
        image_features, text_features = [], []
        for batch in loader:
            if batch is None:
                continue
            images, tokens = batch
            image_features.append(model.encode_image(images.to(device), normalize=True).float())
            text_features.append(model.encode_text(tokens.to(device), normalize=True).float())
        image_features, text_features = torch.cat(image_features), torch.cat(text_features)
        return recall_at_k(image_features @ text_features.t(), range(len(text_features)))

    return evaluate


def run_training(cfg: TrainConfig, *, progress: bool = True) -> TrainResult:
    cfg.validate()
    model_cfg = cfg.model_config()  # --init's architecture when fine-tuning
    length, size = model_cfg.text.context_length, model_cfg.vision.image_size
    if cfg.data == "world":
        world, data = world_data(cfg, "train", cfg.world_samples, model_cfg)
        batches = world_batches(data, cfg.batch_size, cfg.seed)
        evaluate = evaluate_world(world)
    else:
        tok = lambda caps: tokenize(caps, length, truncate=True)  # noqa: E731
        if is_shard_spec(cfg.data):  # webdataset tar shards: streamed, bad samples skipped as they are met
            batches = shard_batches(cfg.data, transform=image_transform(size, train=True), tokenize_fn=tok,
                                    batch_size=cfg.batch_size, workers=cfg.workers, seed=cfg.seed,
                                    resampled=cfg.resampled, samples_per_epoch=cfg.samples_per_epoch)
        else:
            dataset = CsvDataset(cfg.data, transform=image_transform(size, train=True), tokenize_fn=tok,
                                 image_key=cfg.image_key, caption_key=cfg.caption_key)
            bad = dataset.scan()  # drops unreadable images up front; stops with a clear error when most are bad
            if bad:
                print(f"skipped {len(bad)} unreadable images of {len(bad) + len(dataset)} in {cfg.data} "
                      f"(first: {bad[0]})")
            batches = loader_batches(dataset, cfg.batch_size, cfg.workers, cfg.seed)
        evaluate = None
        if cfg.val_data:
            val = CsvDataset(cfg.val_data, transform=image_transform(size), tokenize_fn=tok,
                             image_key=cfg.image_key, caption_key=cfg.caption_key)
            val.scan()
            evaluate = evaluate_captions(val, cfg.batch_size)
    return train(cfg, batches, evaluate, progress=progress)


@torch.no_grad()
def run_zeroshot(checkpoint: str, *, classes: str | None = None, classes_file: str | None = None,
                 templates: Sequence[str] | None = None, data: str | None = None, images: Sequence[str] = (),
                 top: int = 3, batch_size: int = 64, precision: str = "auto") -> dict[str, Any]:
    """Labels for `images` and/or top-1/top-5 accuracy on a labelled set `data` (class folders or filepath,label CSV).

    Class names come from `classes` (comma-separated), `classes_file` (one per line) or, for `data`, the folder names
    (read as `clipworks eval zeroshot` reads them). `clipworks eval zeroshot` is the full report (prompt ensembles,
    per-class recall, confusion matrix, feature cache); this is the quick answer.
    """
    if not data and not images:
        raise ValueError("give image files to label, or --data with a labelled image set")
    model, preprocess = load_for_inference(checkpoint, dtype=precision)
    names: list[str] | None = None
    if classes:
        names = [c.strip() for c in classes.split(",") if c.strip()]
    elif classes_file:
        names = [line.strip() for line in Path(classes_file).read_text().splitlines() if line.strip()]
    templates = list(templates or DEFAULT_TEMPLATES)
    report: dict[str, Any] = {"checkpoint": str(checkpoint), "templates": templates}
    if data:  # the labelled-set reading and image features of `clipworks eval zeroshot`, without its cache
        dataset = open_labelled(data, preprocess, names)
        features, kept = image_features(model, dataset, cache=FeatureCache(None), checkpoint=checkpoint,
                                        batch_size=batch_size, progress=False)
        names = list(dataset.classes)
        labels = torch.tensor(dataset.labels)[torch.from_numpy(kept)]
        logits = zero_shot_logits(torch.from_numpy(features), zero_shot_classifier(model, names, templates).float())
        report.update(n_images=len(kept), n_classes=len(names), n_skipped=len(dataset) - len(kept),
                      accuracy=topk_accuracy(logits, labels, ks=(1, 5)))
    if images:
        if not names:
            raise ValueError("labelling images needs class names: pass --classes 'cat,dog' or --classes-file")
        classifier = zero_shot_classifier(model, names, templates)
        predictions = []
        for path in images:
            try:
                with Image.open(path) as im:
                    x = preprocess(im).unsqueeze(0)
            except FileNotFoundError:
                raise FileNotFoundError(f"image {path} does not exist") from None
            except (OSError, SyntaxError, ValueError) as e:
                raise DataError(f"{path} is not a readable image ({e})") from None
            probs = zero_shot_logits(model.encode_image(x), classifier).softmax(dim=-1)[0]
            best = probs.topk(min(top, len(names)))
            predictions.append({"image": str(path), "top": [{"label": names[i], "prob": p}
                                                             for p, i in zip(best.values.tolist(),
                                                                             best.indices.tolist())]})
        report["predictions"] = predictions
    return report
