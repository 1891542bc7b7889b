"""A training run from its configuration: `TrainConfig` -> batches and an evaluator -> `loop.train`.

This is what `clipworks train` runs. The data is the built-in world (`data="world"`, evaluated on its zero-shot tasks
and held-out colour-shape pairs), the user's CSV/TSV of image paths and captions (evaluated by retrieval on
`val_data`), or webdataset tar shards streamed as they are read. Any of them can also be evaluated zero-shot on a
labelled set or benchmark dataset (`zeroshot_data`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..data.batches import loader_batches, world_batches, world_data
from ..data.datasets import CsvDataset, LabelledImages, open_labelled
from ..data.shard_files import is_shard_spec
from ..data.shards import shard_batches
from ..errors import ConfigError, counted
from ..evaluation.evaluators import Evaluator, evaluate_captions, evaluate_world, evaluate_zeroshot
from ..models.tokenizer import tokenize
from ..models.transforms import image_transform
from .config import TrainConfig
from .loop import TrainResult, refuse_to_overwrite, train


def run_training(cfg: TrainConfig, *, progress: bool = True) -> TrainResult:
    """Train as `cfg` says: its data as batches (the built-in world, a CSV/TSV, or tar shards) and its evaluator
    (the world's own, or retrieval on --val-data), then `loop.train`."""
    cfg.validate()
    refuse_to_overwrite(cfg)  # before the data is read or rendered, which can take minutes
    model_cfg = cfg.model_config()  # --init's architecture when fine-tuning
    length, size = model_cfg.text.context_length, model_cfg.vision.image_size
    if cfg.data == "world":
        world, data = world_data(cfg.world_seed, "train", cfg.world_samples, model_cfg)
        batches = world_batches(data, cfg.batch_size, cfg.seed)
        evaluate = evaluate_world(world)
        report = None  # generated data: nothing to report
    else:
        tok = lambda caps: tokenize(caps, length, truncate=True)  # noqa: E731
        if is_shard_spec(cfg.data):  # webdataset tar shards: streamed, bad samples skipped as they are met
            batches = shard_batches(cfg.data, transform=image_transform(size, train=True), tokenize_fn=tok,
                                    batch_size=cfg.batch_size, workers=cfg.workers, seed=cfg.seed,
                                    resampled=cfg.resampled, samples_per_epoch=cfg.samples_per_epoch)
            # A stream: bad samples are skipped as they are met, and each step's log record counts them.
            report = {"source": cfg.data, "streamed": True}
        else:
            dataset = CsvDataset(cfg.data, transform=image_transform(size, train=True), tokenize_fn=tok,
                                 image_key=cfg.image_key, caption_key=cfg.caption_key)
            report = _scan(dataset, cfg.data, progress)
            batches = loader_batches(dataset, cfg.batch_size, cfg.workers, cfg.seed)
        evaluate = None
        if cfg.val_data:
            val = CsvDataset(cfg.val_data, transform=image_transform(size), tokenize_fn=tok,
                             image_key=cfg.image_key, caption_key=cfg.caption_key)
            report["val"] = _scan(val, cfg.val_data, progress)
            evaluate = evaluate_captions(val, cfg.batch_size)
    zeroshot = None
    if cfg.zeroshot_data:
        zeroshot, scanned = zeroshot_evaluator(cfg, size, progress=progress)
        report = {**(report or {}), "zeroshot": scanned}
    return train(cfg, batches, evaluate, zeroshot=zeroshot, progress=progress, data_report=report)


def _scan(dataset: CsvDataset | LabelledImages, source: str, progress: bool) -> dict[str, Any]:
    """Drop `dataset`'s unreadable images up front (a clear error when most are bad), say how many, and return
    what log.jsonl's first record and the run's last lines report of them."""
    bad = dataset.scan(progress=progress)
    if bad:
        print(f"skipped {counted(len(bad), 'unreadable image')} of {len(bad) + len(dataset)} in {source} "
              f"(first: {bad[0]}; all listed in log.jsonl)")
    return {"source": source, "samples": len(dataset), "skipped": len(bad), "skipped_images": [str(p) for p in bad]}


def zeroshot_evaluator(cfg: TrainConfig, image_size: int, *, progress: bool = False
                       ) -> tuple[Evaluator, dict[str, Any]]:
    """Zero-shot top-1/top-5 on --zeroshot-data: a folder or CSV (its class names, --zeroshot-templates), or a
    benchmark dataset key (its test split under --zeroshot-root/<key>, its spec's names and templates); and the
    report of the set's unreadable images, dropped up front as --val-data's are (`_scan`)."""
    from ..evaluation.prompts import templates

    data = cfg.zeroshot_data
    if Path(data).exists():
        dataset = open_labelled(data, image_transform(image_size))
        report = _scan(dataset, data, progress)
        return evaluate_zeroshot(dataset, dataset.classes, templates(cfg.zeroshot_templates),
                                 batch_size=cfg.batch_size, workers=cfg.workers), report
    from ..data.benchmarks import open_benchmark
    from ..evaluation import benchmark, specs

    if data not in specs.SPECS:
        raise ConfigError(f"--zeroshot-data {data}: no such file or folder, and not a benchmark dataset key "
                          "(`clipworks benchmark --help`)")
    root = Path(cfg.zeroshot_root) / data
    dataset = open_benchmark(data, root, "test")
    dataset.transform = image_transform(image_size)
    spec = specs.spec(data)
    names, prompts = benchmark.prompts(spec)
    benchmark.check_classes(dataset, spec, names, root)
    report = _scan(dataset, str(root), progress)
    return evaluate_zeroshot(dataset, names, prompts, batch_size=cfg.batch_size, workers=cfg.workers,
                             weights=lambda model: benchmark.classifier(model, spec, names, prompts),
                             pool=benchmark.label_pool(spec)), report
