"""A training run from its configuration: `TrainConfig` -> batches and an evaluator -> `loop.train`.

This is what `clipworks train` runs. The data is the built-in world (`data="world"`, evaluated on its zero-shot tasks
and held-out colour-shape pairs), the user's CSV/TSV of image paths and captions (evaluated by retrieval on
`val_data`), or webdataset tar shards streamed as they are read.
"""

from __future__ import annotations

from ..data.batches import loader_batches, world_batches, world_data
from ..data.datasets import CsvDataset
from ..data.shards import is_shard_spec, shard_batches
from ..evaluation.evaluators import evaluate_captions, evaluate_world
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
            report = None  # a stream: bad samples are skipped and logged as they are met
        else:
            dataset = CsvDataset(cfg.data, transform=image_transform(size, train=True), tokenize_fn=tok,
                                 image_key=cfg.image_key, caption_key=cfg.caption_key)
            bad = dataset.scan()  # drops unreadable images up front; stops with a clear error when most are bad
            if bad:
                print(f"skipped {len(bad)} unreadable images of {len(bad) + len(dataset)} in {cfg.data} "
                      f"(first: {bad[0]}; all listed in log.jsonl)")
            report = {"source": cfg.data, "samples": len(dataset), "skipped": len(bad),
                      "skipped_images": [str(p) for p in bad]}
            batches = loader_batches(dataset, cfg.batch_size, cfg.workers, cfg.seed)
        evaluate = None
        if cfg.val_data:
            val = CsvDataset(cfg.val_data, transform=image_transform(size), tokenize_fn=tok,
                             image_key=cfg.image_key, caption_key=cfg.caption_key)
            val.scan()
            evaluate = evaluate_captions(val, cfg.batch_size)
    return train(cfg, batches, evaluate, progress=progress, data_report=report)
