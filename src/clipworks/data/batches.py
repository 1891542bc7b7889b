"""Endless training batches from a dataset, resumable at any step and split across processes.

`Batches` is what the training loop consumes: `batches(start_step, process)` gives an endless iterator of this
process's share (batch_size / world_size) of each global batch, beginning at `start_step`, so a resumed run continues
from its data position. An iterator whose place in its data cannot be derived from the step (tar shards,
`shards.shard_batches`) has a `position` attribute; it is saved with each checkpoint and a resumed run calls
`batches(start_step, process, position)`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from ..distributed import Process, exit_with_parent
from ..errors import DataError
from ..io.files import cache_dir
from ..models.configs import CLIPConfig
from ..models.tokenizer import tokenize
from .datasets import CsvDataset, WorldDataset, collate_skip_bad
from .world import World, WorldConfig

Batch = tuple[torch.Tensor, torch.Tensor]  # (images (B, 3, H, W) normalised, token ids (B, L))
Batches = Callable[..., Iterator[Batch]]


def world_data(world_seed: int, split: str, n: int, model_cfg: CLIPConfig) -> tuple[World, WorldDataset]:
    """`n` samples of the world's `split`, rendered at `model_cfg`'s image size (cached on disk), captions tokenized
    to its context length."""
    world = World(WorldConfig(seed=world_seed, image_size=model_cfg.vision.image_size))
    length = model_cfg.text.context_length
    data = WorldDataset.from_world(world, split, n, lambda caps: tokenize(caps, length, truncate=True),
                                   cache_dir=cache_dir())
    return world, data


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
                                                 generator=torch.Generator().manual_seed(seed),
                                                 worker_init_fn=exit_with_parent)
            for batch in loader:
                if batch is not None and len(batch[0]) >= 2:
                    yield batch
            epoch, skip = epoch + 1, 0

    return batches
