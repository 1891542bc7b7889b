"""`clipworks eval report`: the paper's main evaluation findings, in miniature, on the built-in world.

For a checkpoint trained on the world (e.g. `clipworks demo`'s runs/demo):
- zero-shot vs a linear probe on all training labels vs k-shot probes, k = 1..16 (Radford et al. 2021, Sec. 3.1.5,
  Figures 6-7: how many labelled examples per class zero-shot transfer is worth);
- prompt ensembling vs the single prompt "a photo of a {}." (Sec. 3.1.4, Figure 4);
- zero-shot vs a linear probe fitted on the flat training style, both tested on shifted renderings of the same scenes
  (outline, texture, noise, unseen backgrounds; Sec. 3.3, Figure 14's direction: adapting to one distribution buys
  accuracy there and less, or none, under shift).
Writes report.md, report.json, fewshot.png and robustness.png under `out`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from tqdm import tqdm

from ..data.world import STYLES, World, WorldConfig
from ..errors import ConfigError
from ..hardware import default_device
from ..io.checkpoints import load_for_inference, resolve_checkpoint
from ..io.files import cache_dir as world_cache_dir
from ..io.files import write_made_in_memory, write_text_atomic
from ..models.clip import CLIP
from . import linear_probe as lp
from .evaluators import encode_world_images
from .features import FeatureCache, checkpoint_key, digest
from .prompts import DEFAULT_TEMPLATE
from .results import markdown_table
from .zeroshot import topk_accuracy, zero_shot_classifier, zero_shot_logits

SHOTS: tuple[int, ...] = (1, 2, 4, 8, 16)
PROBE_TASKS: tuple[str, ...] = ("shape", "colour")  # tasks whose classes all occur in the training split
PROMPT_TASKS: tuple[str, ...] = ("shape", "colour", "combination")


@torch.no_grad()
def _world_features(model: CLIP, world: World, split: str, n: int, *, checkpoint: str, cache: FeatureCache,
                    batch_size: int, progress: bool) -> tuple[np.ndarray, list]:
    """(features (n, E) L2-normalised, attributes) of samples 0..n-1 of `split` in `world`'s style."""
    images, _, attributes = world.arrays(split, n, cache_dir=world_cache_dir())
    key = "world-" + digest([checkpoint_key(checkpoint), dataclasses.asdict(world.config), split, n, str(model.dtype)])
    hit = cache.get(key)
    if hit is not None:
        return hit["features"], attributes
    features = encode_world_images(model, images, batch_size, desc=f"{world.config.style} {split}" if progress else None
                             ).numpy()
    cache.put(key, features=features)
    return features, attributes


def _zero_shot_top1(features: np.ndarray, labels: np.ndarray, classifier: torch.Tensor) -> float:
    logits = zero_shot_logits(torch.from_numpy(features), classifier)
    return topk_accuracy(logits, torch.from_numpy(labels), ks=(1,))["top1"]


def run_report(checkpoint: str, *, out: str | os.PathLike, n_train: int = 2000, n_test: int = 1000, seeds: int = 5,
               shots: tuple[int, ...] = SHOTS, world_seed: int | None = None, device: str | None = None,
               precision: str = "auto", batch_size: int = 256, cache_dir: str | os.PathLike | None = None,
               progress: bool = True) -> dict[str, Any]:
    """The report for `checkpoint`; `world_seed` defaults to the one it was trained on (its config.json), else 0."""
    for name, value in (("n-train", n_train), ("n-test", n_test), ("seeds", seeds), ("batch-size", batch_size)):
        if value < 1:
            raise ConfigError(f"--{name} must be at least 1, got {value}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    trained = json.loads((resolve_checkpoint(checkpoint) / "config.json").read_text()).get("train_config") or {}
    if world_seed is None:
        world_seed = int(trained.get("world_seed", 0))
    model, _ = load_for_inference(checkpoint, device=device or default_device(), dtype=precision)
    base = WorldConfig(seed=world_seed, image_size=model.image_size)
    cache = FeatureCache(cache_dir if cache_dir is not None else out / "cache")
    tasks = World(base).zero_shot_tasks()

    def features(split: str, n: int, style: str = "flat") -> tuple[np.ndarray, list]:
        return _world_features(model, World(dataclasses.replace(base, style=style)), split, n, checkpoint=checkpoint,
                               cache=cache, batch_size=batch_size, progress=progress)

    classifiers = {name: zero_shot_classifier(model, tasks[name].classnames, tasks[name].templates).cpu()
                   for name in PROMPT_TASKS}
    results: dict[str, Any] = {"checkpoint": str(checkpoint), "n_train": n_train, "n_test": n_test, "seeds": seeds,
                               "world": dataclasses.asdict(base), "trained_on": trained.get("data", "unknown")}

    # ---- prompt ensembling vs one prompt
    prompts = {}
    for name in PROMPT_TASKS:
        task = tasks[name]
        x, attributes = features(task.split, n_test)
        y = np.array([task.label(a) for a in attributes])
        single = zero_shot_classifier(model, task.classnames, [DEFAULT_TEMPLATE]).cpu()
        prompts[name] = {"single_prompt": _zero_shot_top1(x, y, single),
                         "ensemble": _zero_shot_top1(x, y, classifiers[name]),
                         "n_templates": len(task.templates), "chance": 1 / len(task.classnames)}
    results["prompt_ensembling"] = prompts

    # ---- zero-shot vs linear probe vs k-shot probes; the flat probe is kept for the robustness section
    train_x, train_attributes = features("train", n_train)
    fewshot, probes = {}, {}
    for name in PROBE_TASKS:
        task = tasks[name]
        train_y = np.array([task.label(a) for a in train_attributes])
        test_x, test_attributes = features("val", n_test)
        test_y = np.array([task.label(a) for a in test_attributes])
        full = lp.probe(train_x, train_y, test_x, test_y)
        probes[name] = full.model
        curve = {}
        for k in tqdm(shots, desc=f"{name} k-shot probes", disable=not progress, leave=False):
            if np.bincount(train_y, minlength=len(task.classnames)).min() >= k:
                curve[k] = lp.few_shot_probe(train_x, train_y, test_x, test_y, k=k, seeds=seeds)
        zero = prompts[name]["ensemble"]
        fewshot[name] = {"zero_shot": zero, "linear_probe": full.test_accuracy, "linear_probe_c": full.c,
                         "k_shot": {str(k): {"mean": r["mean"], "std": r["std"]} for k, r in curve.items()},
                         "zero_shot_matches_k": lp.shots_matching(zero, {k: r["mean"] for k, r in curve.items()}),
                         "chance": 1 / len(task.classnames)}
    results["few_shot"] = fewshot
    _plot_fewshot(fewshot, out / "fewshot.png")

    # ---- robustness: the same scenes in shifted styles
    robustness: dict[str, dict[str, dict[str, float]]] = {}
    for style in STYLES:
        x, attributes = features("val", n_test, style)
        robustness[style] = {}
        for name in PROBE_TASKS:
            y = np.array([tasks[name].label(a) for a in attributes])
            robustness[style][name] = {"zero_shot": _zero_shot_top1(x, y, classifiers[name]),
                                       "linear_probe": lp.accuracy(probes[name], x, y)}
    results["robustness"] = robustness
    _plot_robustness(robustness, out / "robustness.png")

    write_text_atomic(out / "report.json", json.dumps(results, indent=2))
    write_text_atomic(out / "report.md", _markdown(results))
    return results


def _plot_fewshot(fewshot: dict[str, Any], path: Path) -> None:
    fig = Figure(figsize=(5 * len(fewshot), 3.6))
    axes = fig.subplots(1, len(fewshot), squeeze=False)
    for ax, (name, r) in zip(axes[0], fewshot.items()):
        ks = [int(k) for k in r["k_shot"]]
        means = np.array([r["k_shot"][str(k)]["mean"] for k in ks])
        stds = np.array([r["k_shot"][str(k)]["std"] for k in ks])
        ax.errorbar(ks, means, yerr=stds, marker="o", capsize=3, label="k-shot linear probe (mean ± std)")
        ax.axhline(r["zero_shot"], color="C3", linestyle="--", label="zero-shot")
        ax.axhline(r["linear_probe"], color="C2", linestyle=":", label="linear probe, all labels")
        ax.axhline(r["chance"], color="gray", linewidth=0.8, label="chance")
        ax.set_xscale("log", base=2)
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set(title=f"{name}", xlabel="labelled examples per class", ylabel="top-1", ylim=(0, 1.02))
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    _write_png(fig, path)


def _plot_robustness(robustness: dict[str, dict[str, dict[str, float]]], path: Path) -> None:
    styles = list(robustness)
    tasks = list(next(iter(robustness.values())))
    fig = Figure(figsize=(5.5 * len(tasks), 3.6))
    axes = fig.subplots(1, len(tasks), squeeze=False)
    x = np.arange(len(styles))
    for ax, task in zip(axes[0], tasks):
        for offset, (key, label) in zip((-0.2, 0.2), (("zero_shot", "zero-shot"),
                                                      ("linear_probe", "linear probe fitted on flat"))):
            ax.bar(x + offset, [robustness[s][task][key] for s in styles], width=0.4, label=label)
        ax.set_xticks(x, styles, rotation=20)
        ax.set(title=task, ylabel="top-1", ylim=(0, 1.02))
        ax.legend(fontsize=7)
    fig.tight_layout()
    _write_png(fig, path)


def _write_png(fig: Figure, path: Path) -> None:
    write_made_in_memory(path, lambda f: fig.savefig(f, dpi=110, format="png"))


def _markdown(r: dict[str, Any]) -> str:
    md = ["# clipworks eval report: the paper's findings in miniature", "",
          f"Checkpoint `{r['checkpoint']}`; built-in world (seed {r['world']['seed']}); probes trained on "
          f"{r['n_train']} training-split images; {r['n_test']} test images per set; k-shot means over "
          f"{r['seeds']} draws."
          + ("" if r["trained_on"] == "world" else f" Note: the checkpoint was trained on {r['trained_on']}, not the "
             "world, so its zero-shot numbers here are not the paper's setting."), "",
          "## Prompt ensembling vs one prompt (Sec. 3.1.4)", "",
          markdown_table(["task", repr(DEFAULT_TEMPLATE), "ensemble", "templates", "chance"],
                         [(t, p["single_prompt"], p["ensemble"], p["n_templates"], p["chance"])
                          for t, p in r["prompt_ensembling"].items()]), "",
          "## Zero-shot vs linear probes (Sec. 3.1.5, Figures 6-7)", "", "![few-shot](fewshot.png)", ""]
    shots = sorted({k for f in r["few_shot"].values() for k in f["k_shot"]}, key=int)
    rows = []
    for task, f in r["few_shot"].items():
        match = f["zero_shot_matches_k"]
        if match is None:
            worth = f"> {shots[-1]}" if shots else "-"
        elif shots and match == int(shots[0]):
            worth = f"≤ {shots[0]}"  # the smallest probe already matches zero-shot
        else:
            worth = f"{match:.1f}"
        rows.append((task, f["zero_shot"], *[f"{f['k_shot'][k]['mean']:.4f} ± {f['k_shot'][k]['std']:.4f}"
                                             if k in f["k_shot"] else "-" for k in shots],
                     f["linear_probe"], worth))
    header = ["task", "zero-shot", *[f"{k}-shot" for k in shots], "all labels", "zero-shot = k-shot at k ≈"]
    md += [markdown_table(header, rows), "",
           "## Robustness: zero-shot vs a probe fitted on flat images, on shifted styles (Sec. 3.3, Figure 14)", "",
           "![robustness](robustness.png)", ""]
    tasks = list(next(iter(r["robustness"].values())))
    md += [markdown_table(["style", *[f"{t} {k}" for t in tasks for k in ("zero-shot", "probe")]],
                          [(s, *[v[t][k] for t in tasks for k in ("zero_shot", "linear_probe")])
                           for s, v in r["robustness"].items()]), ""]
    return "\n".join(md)
