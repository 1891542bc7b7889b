"""What the opt-in int8 inference path (`optimize_for_inference(model, "int8")`) costs in accuracy, on a model trained
on the built-in world (default: the `make demo` checkpoint): zero-shot top-1 on each world task and retrieval R@1 of
the int8 copy against the fp32 copy, and the cosine of their image embeddings. Appended to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json

import torch
from timing import append_results

import clipworks
from clipworks import optimize_for_inference
from clipworks.data.world import World, WorldConfig
from clipworks.demo import EVAL_SAMPLES
from clipworks.evaluation.evaluators import encode_world_images, evaluate_world
from clipworks.io.checkpoints import resolve_checkpoint
from clipworks.io.files import cache_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", default="runs/demo", help="a model trained on the world (make demo)")
    args = parser.parse_args()
    model, _ = clipworks.load(args.checkpoint)
    trained = json.loads((resolve_checkpoint(args.checkpoint) / "config.json").read_text()).get("train_config", {})
    world = World(WorldConfig(seed=trained.get("world_seed", 0), image_size=model.image_size))
    evaluate = evaluate_world(world, EVAL_SAMPLES)
    copies = {"fp32": optimize_for_inference(model, torch.float32), "int8": optimize_for_inference(model, "int8")}
    with torch.no_grad():
        metrics = {name: evaluate(copy) for name, copy in copies.items()}
        images, _, _ = world.arrays("val", EVAL_SAMPLES, cache_dir=cache_dir())
        cosine = (encode_world_images(copies["fp32"], images) * encode_world_images(copies["int8"], images)).sum(-1)
    rows = ["| metric | fp32 | int8 | int8 - fp32 (points) |", "|---|---|---|---|"]
    for key in metrics["fp32"]:
        if key.startswith("zeroshot_") or key.endswith("R@1"):
            a, b = metrics["fp32"][key], metrics["int8"][key]
            rows.append(f"| {key} | {a:.1%} | {b:.1%} | {100 * (b - a):+.1f} |")
    append_results("int8 inference accuracy on the world", f"torch {torch.__version__}",
                   f"Checkpoint {args.checkpoint} ({model.config.vision.kind}); {EVAL_SAMPLES} images per split. Image "
                   f"embedding cosine int8 vs fp32: min {cosine.min():.4f}, mean {cosine.mean():.4f}.", rows)


if __name__ == "__main__":
    main()
