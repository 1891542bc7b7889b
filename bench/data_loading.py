"""Training data from tar shards: clipworks' ShardStream against the webdataset pipeline open_clip trains from.

Both read the same JPEG shards (built-in world images at 256 px, re-encoded as JPEG like web images) with 2
DataLoader workers, decode, random-crop to 224 px, normalise, tokenize the caption and batch. open_clip's side is
its `get_wds_dataset` pipeline in miniature: `webdataset.WebDataset` -> decode("pilrgb") -> open_clip's training
transform (RandomResizedCrop) and tokenizer -> batched -> `WebLoader`. Reported: images/s over whole epochs (median
of the repeats, alternating). Results are appended to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path

import open_clip
import torch
import webdataset as wds
from open_clip.transform import image_transform as open_clip_transform
from timing import append_results

from clipworks.data.shard_files import shard_pattern, write_shards
from clipworks.data.shards import shard_batches
from clipworks.data.world import World, WorldConfig
from clipworks.distributed import Process
from clipworks.models.tokenizer import tokenize
from clipworks.models.transforms import image_transform


def jpeg(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def epoch_ours(pattern: str, n: int, batch: int, workers: int) -> float:
    factory = shard_batches(pattern, transform=image_transform(224, train=True),
                            tokenize_fn=lambda caps: tokenize(caps, truncate=True), batch_size=batch,
                            workers=workers, seed=0)
    stream = factory(0, Process())
    t = time.perf_counter()
    seen = 0
    while seen < n - batch * workers * 2:  # one epoch, less what the final partial batches drop
        images, _ = next(stream)
        seen += len(images)
    return seen / (time.perf_counter() - t)


def epoch_theirs(pattern: str, n: int, batch: int, workers: int) -> float:
    transform = open_clip_transform(224, is_train=True)
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    pipeline = (wds.WebDataset(pattern, shardshuffle=100, nodesplitter=wds.split_by_node, empty_check=False)
                .shuffle(1000).decode("pilrgb").rename(image="jpg;png;jpeg;webp", text="txt")
                .map_dict(image=transform, text=lambda text: tokenizer(text)[0]).to_tuple("image", "text")
                .batched(batch, partial=False))
    loader = wds.WebLoader(pipeline, batch_size=None, shuffle=False, num_workers=workers)
    t = time.perf_counter()
    seen = sum(len(images) for images, _ in loader)
    return seen / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    world = World(WorldConfig(image_size=256))
    with tempfile.TemporaryDirectory() as tmp:
        samples = ((jpeg(s.image), s.caption, {}) for i in range(args.samples) for s in [world.sample("train", i)])
        pattern = shard_pattern(write_shards(samples, Path(tmp), samples_per_shard=500))
        rates: dict[str, list[float]] = {"theirs": [], "ours": []}
        for _ in range(args.repeats):
            rates["theirs"].append(epoch_theirs(pattern, args.samples, args.batch_size, args.workers))
            rates["ours"].append(epoch_ours(pattern, args.samples, args.batch_size, args.workers))
            print({k: f"{v[-1]:.0f}" for k, v in rates.items()}, flush=True)
    theirs, ours = statistics.median(rates["theirs"]), statistics.median(rates["ours"])
    versions = f"torch {torch.__version__}, webdataset {wds.__version__}, open_clip {open_clip.__version__}"
    append_results("Data loading from shards", versions,
                   f"{args.samples:,} JPEG samples (256 px) in shards of 500, {args.workers} DataLoader workers, "
                   f"batch {args.batch_size}, random crop to 224 px, tokenized captions; median of {args.repeats} "
                   "epochs each, alternating.",
                   ["| pipeline | images/s |", "|---|---|",
                    f"| webdataset + open_clip transform/tokenizer | {theirs:.0f} |",
                    f"| clipworks ShardStream | {ours:.0f} |", f"| speed-up | **{ours / theirs:.2f}×** |"])


if __name__ == "__main__":
    main()
