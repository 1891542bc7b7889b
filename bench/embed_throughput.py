"""`clipworks embed` throughput per process on this CPU (issue 17): RN-Tiny, ViT-B-32 or RN50 with random weights,
one process (all cores, then one thread) and two processes under torchrun (one core each), at the precision `auto`
picks and at fp32 (or the precisions given). Appends a table to bench/RESULTS.md.

Images are the world's 64x64 PNGs (cheap to decode; resized to the model's input size by the transform), so the
figures are the model's embedding speed plus a small decode cost, not a photo-decoding benchmark.

    python bench/embed_throughput.py [--images 512] [--models RN-Tiny ViT-B-32 RN50] [--precisions auto fp32]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from clipworks import create_model, save_checkpoint
from clipworks.data.world import World, WorldConfig
from clipworks.hardware import cpu, resolve_precision

RESULTS = Path(__file__).parent / "RESULTS.md"


def run(command: list[str], **env: str) -> dict:
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **env})
    if result.returncode != 0:
        sys.exit(result.stderr[-2000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--models", nargs="+", default=["RN-Tiny", "ViT-B-32"])
    parser.add_argument("--precisions", nargs="+", default=["auto", "fp32"])
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    load_before = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        images = World(WorldConfig(seed=0)).export("heldout", args.images, Path(tmp) / "world") / "images"
        for name in args.models:
            torch.manual_seed(0)
            checkpoint = save_checkpoint(Path(tmp) / name, create_model(name))
            for precision in args.precisions:
                common = ["embed", str(images), "--checkpoint", str(checkpoint), "--precision", precision,
                          "--batch-size", str(args.batch_size), "--shard-size", "64", "--quiet"]
                one = run([sys.executable, "-m", "clipworks.cli", *common, "--out", f"{tmp}/{name}-{precision}-1"])
                single = run([sys.executable, "-m", "clipworks.cli", *common, "--out", f"{tmp}/{name}-{precision}-t1"],
                             OMP_NUM_THREADS="1")
                two = run([torchrun, "--standalone", "--nproc-per-node", "2", "-m", "clipworks.cli", *common,
                           "--out", f"{tmp}/{name}-{precision}-2"])
                per = ", ".join(f"{r:.1f}" for r in two["images_per_s_per_process"])
                rows.append(f"| {name} | {one['precision']} | {one['images_per_s']:.1f} | "
                            f"{single['images_per_s']:.1f} | {per} | {two['images_per_s']:.1f} |")
                print(rows[-1], flush=True)
    date = datetime.date.today().isoformat()
    header = (f"\n## clipworks embed throughput — {date}, {cpu().label}, {platform.machine()}, torch "
              f"{torch.__version__}, {torch.get_num_threads()} threads\n\n"
              f"`bench/embed_throughput.py`: {args.images} world images (64x64 PNG), batch {args.batch_size}, "
              f"shards of 64, random weights; `auto` is {resolve_precision('auto').name} here. One process uses "
              "every core (or one thread with OMP_NUM_THREADS=1); under torchrun each of two processes gets one "
              "thread. "
              f"Load average (other jobs on the machine) {load_before:.1f} before, {os.getloadavg()[0]:.1f} after."
              "\n\n| model | precision | 1 process, all cores img/s | 1 process, 1 thread img/s | 2 processes: img/s "
              "each | 2 processes total img/s |\n|---|---|---|---|---|---|\n")
    with open(RESULTS, "a") as f:
        f.write(header + "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
