"""Time to accuracy of the demo recipe on this CPU's class: zero-shot accuracy on the world's held-out colour-shape
pairs (among all 48), colour and shape, against minutes of training (evaluation time excluded), from one run of
`clipworks.demo.DEMO_CONFIG` at the precision `auto` picks here. Results are appended to bench/RESULTS.md.
Run it on both classes (AVX2 on an AVX-512 machine: see bench/timing.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time

import torch
from timing import append_results

from clipworks.data.batches import world_batches, world_data
from clipworks.demo import DEMO_CONFIG, EVAL_SAMPLES
from clipworks.evaluation.evaluators import evaluate_world
from clipworks.hardware import resolve_precision
from clipworks.training.loop import train

MARKS = (1.0, 2.0, 3.0, 4.0, 5.0)  # minutes of training at which the table reports the latest evaluation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--evals", type=int, default=15, help="evaluations spread over the run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        cfg = dataclasses.replace(DEMO_CONFIG, output_dir=out, eval_every=max(1, DEMO_CONFIG.steps // args.evals),
                                  save_every=0, tensorboard=False)
        world, data = world_data(cfg.world_seed, "train", cfg.world_samples, cfg.model_config())
        evaluate_fn = evaluate_world(world, EVAL_SAMPLES)
        clock = {"start": time.perf_counter(), "eval": 0.0}
        minutes = []  # of training (evaluations excluded) at each evaluation

        def evaluate(model: torch.nn.Module) -> dict[str, float]:
            t = time.perf_counter()
            minutes.append((t - clock["start"] - clock["eval"]) / 60)
            metrics = evaluate_fn(model)
            clock["eval"] += time.perf_counter() - t
            return metrics

        clock["start"] = time.perf_counter()
        result = train(cfg, world_batches(data, cfg.batch_size, cfg.seed), evaluate, progress=False)
    curve = list(zip(minutes, result.evals))
    rows = ["| minutes of training | step | held-out pairs (of 48) | colour | shape |", "|---|---|---|---|---|"]
    for minutes, metrics in curve:
        rows.append(f"| {minutes:.2f} | {metrics['step']} | {metrics['zeroshot_combination']:.1%} | "
                    f"{metrics['zeroshot_colour']:.1%} | {metrics['zeroshot_shape']:.1%} |")
    at = []
    for mark in MARKS:
        done = [m for t, m in curve if t <= mark + 1e-9]
        if done:
            at.append(f"{mark:.0f} min: {done[-1]['zeroshot_combination']:.1%}")
        if curve[-1][0] <= mark:  # the run ended before this mark
            at[-1] += f" (the run's end, at {curve[-1][0]:.2f} min)"
            break
    precision = resolve_precision(cfg.precision)
    append_results("Time to accuracy, demo recipe", f"torch {torch.__version__}",
                   f"{cfg.model}, batch {cfg.batch_size}, {cfg.steps} steps, precision {precision}; evaluation on "
                   f"{EVAL_SAMPLES} images per split, its time excluded. Held-out pairs after "
                   f"{'; '.join(at)}.", rows)


if __name__ == "__main__":
    main()
