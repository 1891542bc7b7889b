"""`clipworks train`, `recipes`, `demo`, and the data they run on: `world` (generated images) and `shards`."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from ..errors import ConfigError, DataError, counted
from ..training.recipes import RECIPES


def add_parsers(sub: argparse._SubParsersAction) -> None:
    from ..training.config import add_train_flags

    p = sub.add_parser("train", help="contrastive training on the built-in world or a CSV of image paths + captions")
    add_train_flags(p)  # one per TrainConfig field; the flags the user did not type stay out of the namespace
    p.add_argument("--config", metavar="FILE", help="a .toml or .json file of TrainConfig fields (flags override it)")
    p.add_argument("--recipe", choices=RECIPES, help="the paper's hyperparameters for --model (see `clipworks "
                   "recipes`); the config file and flags override it")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("recipes", help="the paper's training hyperparameters per model (for --recipe paper)")
    p.set_defaults(func=_cmd_recipes)

    p = sub.add_parser("world", help="write images of the built-in world to try the CLI on files")
    p.add_argument("--split", choices=("train", "val", "heldout"), default="heldout")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--task", default="combination", help="class folders by: colour, shape, size, count, position, "
                   "combination")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_cmd_world)

    p = sub.add_parser("shards", help="write the built-in world or a CSV of image paths + captions as webdataset "
                       "tar shards, for --data")
    p.add_argument("--from", dest="source", required=True, metavar="world|CSV",
                   help="'world', or a CSV/TSV of image paths and captions")
    p.add_argument("--out", required=True, help="folder for shard-00000.tar, shard-00001.tar, ...")
    p.add_argument("--n", type=int, default=None, help="samples to write (world: default 1000; CSV: default all)")
    p.add_argument("--split", choices=("train", "val", "heldout"), default="train", help="world split")
    p.add_argument("--samples-per-shard", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0, help="the world's seed")
    p.add_argument("--image-key", default="filepath", help="CSV column of image paths")
    p.add_argument("--caption-key", default="caption", help="CSV column of captions")
    p.set_defaults(func=_cmd_shards)

    p = sub.add_parser("demo", help="train a small CLIP on the built-in world and report zero-shot transfer")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (default: the demo's ~5-minute budget)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_demo)


def _cmd_train(args: argparse.Namespace) -> None:
    from ..training.config import TrainConfig, resolve_train_config
    from ..training.run import run_training

    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    cfg = resolve_train_config(given, config_file=args.config, recipe=args.recipe)
    result = run_training(cfg, progress=not args.quiet)
    data, listed = result.data or {}, f"(listed in {cfg.output_dir}/log.jsonl)"
    if data.get("streamed") and data.get("skipped"):
        unusable = counted(data["skipped"], "unusable sample or shard", "unusable samples or shards")
        print(f"trained on the shards; {unusable} skipped {listed}")
    elif data.get("skipped"):
        print(f"trained on {data['samples']} images; {counted(data['skipped'], 'unreadable one')} skipped {listed}")
    for part, done in (("val", "validated"), ("zeroshot", "zero-shot evaluated")):
        if data.get(part, {}).get("skipped"):
            print(f"{done} on {data[part]['samples']} images; {counted(data[part]['skipped'], 'unreadable one')} "
                  f"skipped {listed}")
    print(f"checkpoint: {result.checkpoint}")


def _cmd_recipes(args: argparse.Namespace) -> None:
    from ..training.recipes import PAPER_LR, paper_recipe

    print("--recipe paper (Radford et al. 2021, Tables 18-20); steps are yours to choose")
    print(f"{'model':<14} {'lr':>8} {'beta1':>6} {'beta2':>6} {'eps':>6} {'wd':>5} {'warmup':>6} {'batch':>6}")
    for name in PAPER_LR:
        r = paper_recipe(name)
        print(f"{name:<14} {r['lr']:>8.2g} {r['beta1']:>6} {r['beta2']:>6} {r['eps']:>6.0e} {r['weight_decay']:>5} "
              f"{r['warmup_steps']:>6} {r['batch_size']:>6}")


def _cmd_demo(args: argparse.Namespace) -> None:
    from ..demo import run_demo

    run_demo(args.out, steps=args.steps, progress=not args.quiet)


def _cmd_world(args: argparse.Namespace) -> None:
    from ..data.world import World, WorldConfig

    if args.n < 1:
        raise ConfigError(f"--n must be at least 1, got {args.n}")
    out = World(WorldConfig(seed=args.seed)).export(args.split, args.n, args.out, task=args.task)
    print(f"wrote {args.n} {args.split} images to {out}")


def _cmd_shards(args: argparse.Namespace) -> None:
    from ..data.datasets import resolve_path
    from ..data.images import check_image
    from ..data.shard_files import shard_pattern, write_shards
    from ..data.tables import read_table
    from ..data.world import World, WorldConfig

    skipped: list[str] = []
    if args.source == "world":
        world = World(WorldConfig(seed=args.seed))

        def samples():
            for i in range(args.n if args.n is not None else 1000):
                s = world.sample(args.split, i)
                yield s.image, s.caption, {"split": args.split, "index": i, **dataclasses.asdict(s.attributes)}
    else:
        rows = read_table(args.source, columns=(args.image_key, args.caption_key),
                          flags="--image-key/--caption-key")[:args.n]
        base = Path(args.source).parent

        def samples():
            for row in rows:
                path = resolve_path(row[args.image_key], base)
                if check_image(path) is not None:  # unreadable images are left out and counted, as in training
                    skipped.append(str(path))
                    continue
                yield path, row[args.caption_key], {"filepath": row[args.image_key]}
    paths = write_shards(samples(), args.out, samples_per_shard=args.samples_per_shard)
    if not paths:
        raise DataError(f"no readable samples in {args.source}; nothing written")
    if skipped:
        print(f"skipped {counted(len(skipped), 'unreadable image')} (first: {skipped[0]})")
    print(f"wrote {len(paths)} shards to {args.out}; train with --data '{shard_pattern(paths)}'")

