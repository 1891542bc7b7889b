"""Training data streamed from webdataset tar shards (img2dataset's layout) with Python's `tarfile`.

The shard files themselves (their layout, names and patterns, reading a tar's samples, writing shards) are
`shard_files.py`; this module streams them into training. At 400M pairs (Radford et al. 2021, Sec. 2.2) data must
stream sequentially from large files rather than open one image file per sample.

Deliberate differences from the `webdataset` package, which clipworks does not depend on: URLs are local paths only
(mount remote storage, or add a reader here). Damaged data is skipped
and counted as in `data.py`: a truncated or unreadable shard, an undecodable image, a sample without image or
caption. A run whose data is mostly bad stops with a `DataError` naming examples.

Splitting (non-resampled): each epoch the shard list is shuffled from (seed, epoch), the same on every process;
process r of W takes shards r, r+W, ...; DataLoader worker w of K takes every K-th of those. So every sample is read
exactly once an epoch across all processes and workers, provided there are at least W * K shards. Resampled mode
draws shards with replacement forever from a generator seeded by (seed, epoch, rank, worker); `samples_per_epoch`
(over all processes and workers, damaged samples included) then bounds an epoch.

Resume: a reader's sequence of samples, and each sample's random crop, depends only on (seed, epoch, rank, worker),
so `ShardStream` records how many batches it took from each DataLoader worker and a resumed run's workers pass over
that many samples undecoded: training continues with exactly the batch that would have come next.

Reporting: a stream meets its bad data as it reads, in DataLoader workers whose counts the training process never
sees. So each worker sends the problems it met with the batch it sends next, and `ShardStream` counts them when it
takes that batch: the count of a step is then a function of the data and the position alone (not of how far the
workers read ahead), it resumes with the position, and the training loop logs each step's new ones.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import tarfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ..distributed import Process, exit_with_parent
from ..errors import ConfigError, DataError
from .batches import Batch
from .datasets import MAX_BAD_FRACTION, Transform, collate_skip_bad
from .images import UnreadableImage, open_image
from .shard_files import IMAGE_SUFFIXES, expand_urls, missing_part, tar_samples

log = logging.getLogger(__name__)

_MIN_SEEN = 32  # samples seen before the bad fraction is judged
MAX_LISTED = 1000  # bad samples (and failed shard reads) kept by name: the first ones; all of them are counted

RawSample = tuple[str, str, dict[str, bytes]]  # (shard url, key, {suffix: bytes})
Problems = tuple[int, list[tuple[str, str]]]  # (how many, (where, reason) of the first MAX_LISTED of them)


def _process_rank() -> tuple[int, int]:
    """(rank, world size): from torch.distributed if initialised, else the RANK/WORLD_SIZE that torchrun sets."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK") or 0), int(os.environ.get("WORLD_SIZE") or 1)


class ShardDataset(IterableDataset):
    """(image tensor, caption) pairs streamed from tar shards; caption is token ids if `tokenize_fn` is given.

    Call `set_epoch(e)` before each epoch (as with DistributedSampler): DataLoader workers get a copy of the
    dataset when the epoch starts, so the epoch must be set before iterating, with non-persistent workers.
    Counts of bad data (`n_seen`, `n_bad`, `n_bad_shards`) are per process, as in `data.py`; `bad` and `bad_shards`
    name the first MAX_LISTED only, so that a long run over broken shards (resampled, or with workers=0, where one
    dataset reads every epoch) keeps its memory bounded.
    """

    def __init__(self, urls: str | Sequence[str], *, transform: Transform,
                 tokenize_fn: Callable[[list[str]], torch.Tensor] | None = None, seed: int = 0,
                 shuffle_shards: bool = True, resampled: bool = False, samples_per_epoch: int | None = None,
                 shuffle_buffer: int = 1000, rank: int | None = None, world_size: int | None = None) -> None:
        self.urls = expand_urls(urls) if isinstance(urls, str) else list(urls)
        if not self.urls:
            raise ConfigError("ShardDataset needs at least one shard")
        if resampled and samples_per_epoch is None:
            raise ConfigError("resampled=True draws shards forever: give samples_per_epoch to bound an epoch")
        self.transform = transform
        self.tokenize_fn = tokenize_fn  # list[str] -> (N, context) ids, as clipworks.tokenize
        self.seed = seed
        self.shuffle_shards = shuffle_shards
        self.resampled = resampled
        self.samples_per_epoch = samples_per_epoch  # over all processes and workers; None = one pass over shards
        self.shuffle_buffer = shuffle_buffer  # samples held in memory to shuffle across shard boundaries; 0 = none
        self.rank, self.world_size = rank, world_size  # None: from torch.distributed or the environment
        self.epoch = 0
        self.n_seen = 0
        self.n_bad = 0  # bad samples met in this process
        self.bad: list[tuple[str, str]] = []  # (shard:key, reason) of the first MAX_LISTED of them
        self.n_bad_shards = 0  # shard reads that failed part-way or at once
        self.bad_shards: list[tuple[str, str]] = []  # (shard, reason) of the first MAX_LISTED of them
        self._n_new = 0  # bad samples and failed shard reads met since `new_problems` was last called
        self._new: list[tuple[str, str]] = []  # (where, reason) of the first MAX_LISTED of those

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def new_problems(self) -> Problems:
        """(how many bad samples and failed shard reads were met since the last call, in the order met: (shard:key,
        reason) of a sample, (shard, reason) of a shard, for the first MAX_LISTED of them)."""
        new = self._n_new, self._new
        self._n_new, self._new = 0, []
        return new

    def _problem(self, where: str, reason: str) -> None:
        self._n_new += 1
        if len(self._new) < MAX_LISTED:
            self._new.append((where, reason))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor | str]]:
        info = get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for item in self.stream(worker, n_workers):
            if item is not None:
                yield item

    def stream(self, worker: int, n_workers: int, *, skip: int = 0
               ) -> Iterator[tuple[torch.Tensor, torch.Tensor | str] | None]:
        """This reader's samples of the epoch in order, None where a complete sample would not decode.

        The sequence (and each sample's random crop, drawn from (seed, epoch, rank, worker, position)) depends only
        on the seed, the epoch and the reader, so the first `skip` samples can be passed over without decoding
        them: that is how a resumed run returns to its exact place in the stream.
        """
        rank, world_size = _process_rank() if self.rank is None or self.world_size is None else (
            self.rank, self.world_size)
        slot, n_slots = rank * n_workers + worker, world_size * n_workers  # this reader among all of the job's
        limit = None
        if self.samples_per_epoch is not None:
            limit = self.samples_per_epoch // n_slots + (slot < self.samples_per_epoch % n_slots)
        if self.resampled:
            picker = random.Random(f"clipworks-shards:{self.seed}:{self.epoch}:{rank}:{worker}")
            shards: Iterable[str] = iter(lambda: picker.choice(self.urls), None)
            judge_after: int | None = len(self.urls)
        else:
            if len(self.urls) < world_size:
                raise DataError(f"{len(self.urls)} shards cannot be split over {world_size} processes; write at "
                                "least one shard per process (clipworks shards --samples-per-shard N)")
            order = list(self.urls)
            if self.shuffle_shards:
                random.Random(f"clipworks-shards:{self.seed}:{self.epoch}").shuffle(order)
            shards = order[rank::world_size][worker::n_workers]
            # Only a reader holding every shard can tell that all are unreadable; with several readers, one whose
            # shards all fail yields nothing, and `shard_batches` stops if a whole epoch gives no batch.
            judge_after = len(shards) if n_slots == 1 else None
            if not shards:
                log.warning("DataLoader worker %d of process %d has no shard (%d shards, %d processes x %d workers)",
                            worker, rank, len(self.urls), world_size, n_workers)
        rng = random.Random(f"clipworks-shards-buffer:{self.seed}:{self.epoch}:{rank}:{worker}")
        samples = _shuffled(self._raw_samples(shards, judge_after), self.shuffle_buffer, rng)
        for position, (url, key, files) in enumerate(samples):
            if limit is not None and position >= limit:
                return
            if position >= skip:
                crop = hash((self.seed, self.epoch, rank, worker, position)) & (2**63 - 1)
                yield self._decode(url, key, files, crop)
            elif position == skip - 1:
                self.new_problems()  # met before the resumed place: the run that took those batches counted them

    # ---------------------------------------------------------------- reading
    def _raw_samples(self, shards: Iterable[str], judge_after: int | None) -> Iterator[RawSample]:
        """Complete samples with image and caption, shard after shard; bad ones are counted and left out.

        Stops with a DataError when the first `judge_after` shards (None: never) all failed without a good sample.
        """
        n_good = n_bad_shards = 0
        for url in shards:
            problems: list[str] = []
            try:
                for key, files in tar_samples(url):
                    reason = missing_part(files)
                    if reason is not None:
                        self.n_seen += 1  # complete samples are counted when decoded, after the shuffle buffer
                        self._record_bad(url, key, reason)
                        problems.append(f"{key}: {reason}")
                        continue
                    n_good += 1
                    yield url, key, files
            except (tarfile.TarError, EOFError, OSError) as e:
                # A truncated shard raises mid-stream; the samples before the damage were already used.
                reason = f"{type(e).__name__}: {e}"
                self.n_bad_shards += 1
                if len(self.bad_shards) < MAX_LISTED:
                    self.bad_shards.append((url, reason))
                self._problem(url, f"unreadable from there on ({reason})")
                n_bad_shards += 1
                problems.append(f"unreadable from there on ({reason})")
            if problems:
                log.warning("shard %s: skipped %d problem(s): %s", url, len(problems), "; ".join(problems[:3]))
            if judge_after is not None and n_good == 0 and n_bad_shards >= judge_after:
                examples = "; ".join(f"{u} ({r})" for u, r in self.bad_shards[:3])
                raise DataError(f"none of the {n_bad_shards} shards tried could be read, e.g. {examples}. Check "
                                "the --data pattern and that the files are tar archives (clipworks shards writes "
                                "them).")

    def _decode(self, url: str, key: str, files: dict[str, bytes], crop_seed: int
                ) -> tuple[torch.Tensor, torch.Tensor | str] | None:
        suffix = next(s for s in IMAGE_SUFFIXES if s in files)
        self.n_seen += 1
        transform = self.transform
        if dataclasses.is_dataclass(transform) and getattr(transform, "train", False):
            # A random crop drawn from the sample's place in the stream, not from the worker's RNG.
            transform = dataclasses.replace(transform, generator=torch.Generator().manual_seed(crop_seed))
        try:
            pixels = transform(open_image(files[suffix], name=f"{url}#{key}.{suffix}"))
            caption = files["txt"].decode("utf-8").strip()
        except Exception as e:  # an undecodable image, one the transform cannot take, a caption that is not UTF-8
            why = e.reason if isinstance(e, UnreadableImage) else f"{type(e).__name__}: {e}"
            reason = f"undecodable .{suffix} ({why})"
            self._record_bad(url, key, reason)
            log.warning("shard %s: skipped sample %s: %s", url, key, reason)
            return None
        return pixels, caption if self.tokenize_fn is None else self.tokenize_fn([caption])[0]

    def _record_bad(self, url: str, key: str, reason: str) -> None:
        self.n_bad += 1
        if len(self.bad) < MAX_LISTED:
            self.bad.append((f"{url}:{key}", reason))
        self._problem(f"{url}:{key}", reason)
        if self.n_seen >= _MIN_SEEN and self.n_bad > MAX_BAD_FRACTION * self.n_seen:
            examples = "; ".join(f"{where} ({why})" for where, why in self.bad[:3])
            raise DataError(f"{self.n_bad} of {self.n_seen} samples in the shards could not be used, e.g. "
                            f"{examples}. Each sample needs an image (.{'/.'.join(IMAGE_SUFFIXES)}) and a .txt "
                            "caption under the same key; check how the shards were written.")


def _shuffled(samples: Iterable[RawSample], size: int, rng: random.Random) -> Iterator[RawSample]:
    """Samples in a locally shuffled order: each is swapped into a buffer of `size` for a random earlier one."""
    if size <= 1:
        yield from samples
        return
    buffer: list[RawSample] = []
    for sample in samples:
        if len(buffer) < size:
            buffer.append(sample)
            continue
        i = rng.randrange(size)
        yield buffer[i]
        buffer[i] = sample
    rng.shuffle(buffer)
    yield from buffer


# ---------------------------------------------------------------- training batches
def _identity(item: Any) -> Any:
    return item


class _WorkerBatches(IterableDataset):
    """Each DataLoader worker's part of the epoch as batches: every `share` consecutive samples of its stream,
    collated without the bad ones, as (worker, batch, False, problems met since its last batch); then
    (worker, None, True, problems) marks its end. A partial last batch is dropped. `skip[w]` batches of worker w are
    passed over without decoding (a resumed epoch)."""

    def __init__(self, dataset: ShardDataset, share: int) -> None:
        self.dataset, self.share = dataset, share
        self.skip: list[int] = []

    def __iter__(self) -> Iterator[tuple[int, Batch | None, bool, Problems]]:
        info = get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        skip = self.skip[worker] * self.share if self.skip else 0
        chunk: list[Any] = []
        for item in self.dataset.stream(worker, n_workers, skip=skip):
            chunk.append(item)
            if len(chunk) == self.share:
                yield worker, collate_skip_bad(chunk), False, self.dataset.new_problems()
                chunk = []
        yield worker, None, True, self.dataset.new_problems()


class ShardStream:
    """Endless batches of one process from tar shards, with `position`: where in the stream the last batch came
    from, {"epoch", "consumed": batches taken from each DataLoader worker this epoch, "next": the worker whose batch
    comes next, "skipped": problems in the batches taken so far}. Given that position back, a new stream continues
    with exactly the batch that would have followed, and counts on from there.

    Workers' batches are taken in a fixed rotation (0, 1, ..., K-1, 0, ...; a finished worker drops out), whatever
    order the DataLoader delivers them in, so the sequence depends on the data alone, not on timing.
    """

    def __init__(self, dataset: ShardDataset, *, share: int, workers: int, position: dict[str, Any] | None,
                 description: str, rank: int, skipped: int = 0) -> None:
        self.dataset, self.batched = dataset, _WorkerBatches(dataset, share)
        self.n_workers = max(workers, 1)
        self.loader = DataLoader(self.batched, batch_size=None, num_workers=workers, collate_fn=_identity,
                                 worker_init_fn=exit_with_parent)
        self.position = position or {"epoch": 0, "consumed": [0] * self.n_workers, "next": 0}
        self.description, self.rank, self.share = description, rank, share
        self.n_skipped = skipped  # bad samples and shards in the batches taken, by this stream and before it
        # (where, reason) of those not yet returned by `take_skipped`, the first MAX_LISTED of them
        self._untaken: list[tuple[str, str]] = []
        self._batches = self._generate()

    def __iter__(self) -> ShardStream:
        return self

    def __next__(self) -> Batch:
        return next(self._batches)

    def take_skipped(self) -> Problems:
        """(bad samples and shards in the batches taken so far, this run's and any it resumed; (where, reason) of
        those taken since the last call, at most MAX_LISTED): what the training loop logs each step."""
        new, self._untaken = self._untaken, []
        return self.n_skipped, new

    def close(self) -> None:
        """Stop the DataLoader workers now: closing the generator shuts them down in ~0.1 s, while an abandoned
        stream's loader, finalised by the garbage collector, waited ~5 s per worker for them to time out."""
        self._batches.close()

    def _generate(self) -> Iterator[Batch]:
        epoch, consumed, turn = self.position["epoch"], list(self.position["consumed"]), self.position["next"]
        while True:
            fresh = not any(consumed)
            self.dataset.set_epoch(epoch)  # before the workers start, so their copies see it
            self.batched.skip = consumed
            delivered = self._delivered()
            waiting: list[list[tuple[Batch | None, bool, Problems]]] = [[] for _ in range(self.n_workers)]
            finished: set[int] = set()
            n = 0
            while len(finished) < self.n_workers:
                worker, turn = turn, (turn + 1) % self.n_workers
                if worker in finished:
                    continue
                while not waiting[worker]:
                    w, batch, end, problems = next(delivered)
                    waiting[w].append((batch, end, problems))
                batch, end, (n_problems, listed) = waiting[worker].pop(0)
                # Counted as their batch is taken, however far the workers read ahead.
                self._untaken += listed[:MAX_LISTED - len(self._untaken)]
                self.n_skipped += n_problems
                if end:
                    finished.add(worker)
                    continue
                consumed[worker] += 1
                if batch is not None and len(batch[0]) >= 2:
                    n += 1
                    self.position = {"epoch": epoch, "consumed": list(consumed), "next": turn,
                                     "skipped": self.n_skipped}
                    yield batch
            if n == 0 and fresh:
                raise DataError(f"the shards {self.description} gave process {self.rank} no batch of {self.share} "
                                "readable samples in an epoch (see the warnings above for unreadable shards): write "
                                "more or smaller shards, or lower --batch-size or --workers (each worker reads whole "
                                "shards)")
            epoch, consumed, turn = epoch + 1, [0] * self.n_workers, 0

    def _delivered(self) -> Iterator[tuple[int, Batch | None, bool, Problems]]:
        try:
            yield from self.loader
        except DataError as e:
            # From a worker, DataLoader appends the worker's traceback; the last line is the message.
            raise DataError(str(e).strip().splitlines()[-1].removeprefix(f"{DataError.__module__}.DataError: ")
                            ) from None


def shard_batches(urls: str, *, transform: Transform, tokenize_fn: Callable[[list[str]], torch.Tensor],
                  batch_size: int, workers: int, seed: int, resampled: bool = False,
                  samples_per_epoch: int | None = None) -> Callable[..., ShardStream]:
    """The `train.Batches` factory for shards: endless (images, token ids) batches of this process's share of
    `batch_size`, as a `ShardStream`. Given the `position` a stream reported, the new stream resumes exactly there
    (the same batches, crops included); without one, a run resumed at step k > 0 reshuffles from (seed, k)."""

    def batches(start: int, process: Process, position: dict[str, Any] | None = None) -> ShardStream:
        skipped = position.get("skipped", 0) if position is not None else 0  # counted in the batches trained on
        if position is not None and len(position["consumed"]) != max(workers, 1):
            log.warning("the checkpoint's data position is for %d DataLoader workers, this run has %d: the data "
                        "order restarts from (seed, step) instead of the exact position",
                        len(position["consumed"]), workers)
            position = None
        stream_seed = seed if position is not None or start == 0 else seed * 100_003 + start
        dataset = ShardDataset(urls, transform=transform, tokenize_fn=tokenize_fn, seed=stream_seed,
                               rank=process.rank, world_size=process.world_size, resampled=resampled,
                               samples_per_epoch=samples_per_epoch)
        return ShardStream(dataset, share=batch_size // process.world_size, workers=workers, position=position,
                           description=urls, rank=process.rank, skipped=skipped)

    return batches


