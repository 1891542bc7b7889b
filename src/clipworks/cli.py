"""The `clipworks` command line: models, train, zeroshot, convert, world, shards, demo, eval, index, search, serve.

Flags of `clipworks train` are generated from `TrainConfig`'s fields, so the CLI and the Python API cannot drift;
`--config FILE` and `--recipe paper` (listed by `clipworks recipes`) supply values that explicit flags override.
A user's mistake (unknown flag or model, missing file, corrupt data) ends with one line on stderr and exit code 2;
only a bug in clipworks shows a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from .errors import ClipworksError, ConfigError, DataError
from .evaluation.prompts import DEFAULT_TEMPLATE
from .hardware import DTYPES, PRECISIONS
from .models.configs import MODELS
from .training.recipes import RECIPES


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:
        # argparse's default prints the whole usage block; one line with the way forward is enough.
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _cmd_models(args: argparse.Namespace) -> None:
    from .models.clip import create_model

    print(f"{'name':<14} {'kind':<7} {'image':>5} {'embed':>5} {'parameters':>13}")
    for name, cfg in MODELS.items():
        with torch.device("meta"):
            n = sum(p.numel() for p in create_model(name).parameters())
        print(f"{name:<14} {cfg.vision.kind:<7} {cfg.vision.image_size:>5} {cfg.embed_dim:>5} {n:>13,}")


def _cmd_train(args: argparse.Namespace) -> None:
    from .training.config import TrainConfig, resolve_train_config
    from .training.run import run_training

    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    cfg = resolve_train_config(given, config_file=args.config, recipe=args.recipe)
    result = run_training(cfg, progress=not args.quiet)
    print(f"checkpoint: {result.checkpoint}")


def _cmd_recipes(args: argparse.Namespace) -> None:
    from .training.recipes import PAPER_LR, paper_recipe

    print("--recipe paper (Radford et al. 2021, Tables 18-20); steps are yours to choose")
    print(f"{'model':<14} {'lr':>8} {'beta1':>6} {'beta2':>6} {'eps':>6} {'wd':>5} {'warmup':>6} {'batch':>6}")
    for name in PAPER_LR:
        r = paper_recipe(name)
        print(f"{name:<14} {r['lr']:>8.2g} {r['beta1']:>6} {r['beta2']:>6} {r['eps']:>6.0e} {r['weight_decay']:>5} "
              f"{r['warmup_steps']:>6} {r['batch_size']:>6}")


def _cmd_zeroshot(args: argparse.Namespace) -> None:
    from .evaluation.commands import run_zeroshot
    from .evaluation.prompts import classnames

    names = None
    if args.classes:
        names = [c.strip() for c in args.classes.split(",") if c.strip()]
    elif args.classes_file:
        names = classnames(args.classes_file)
    report = run_zeroshot(args.checkpoint, args.data, images=args.images, classnames=names,
                          templates=args.template or [DEFAULT_TEMPLATE], top=args.top, device="cpu",
                          batch_size=args.batch_size, precision=args.precision, progress=False)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    if "accuracy" in report:
        acc = report["accuracy"]
        print(f"{report['n_images']} images, {report['n_classes']} classes: top-1 {acc['top1']:.3f}  "
              f"top-5 {acc['top5']:.3f}  (chance {1 / report['n_classes']:.3f})"
              + (f"; skipped {report['n_skipped']} unreadable" if report.get("n_skipped") else ""))
    for item in report.get("predictions", []):
        labels = ", ".join(f"{p['label']} {p['prob']:.2f}" for p in item["top"])
        print(f"{item['image']}: {labels}")


def _cmd_world(args: argparse.Namespace) -> None:
    from .data.world import World, WorldConfig

    if args.n < 1:
        raise ConfigError(f"--n must be at least 1, got {args.n}")
    out = World(WorldConfig(seed=args.seed)).export(args.split, args.n, args.out, task=args.task)
    print(f"wrote {args.n} {args.split} images to {out}")


def _cmd_shards(args: argparse.Namespace) -> None:
    from .data.datasets import read_table, resolve_path
    from .data.images import check_image
    from .data.shards import shard_pattern, write_shards
    from .data.world import World, WorldConfig

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
        print(f"skipped {len(skipped)} unreadable images (first: {skipped[0]})")
    print(f"wrote {len(paths)} shards to {args.out}; train with --data '{shard_pattern(paths)}'")


def _cmd_demo(args: argparse.Namespace) -> None:
    from .demo import run_demo

    run_demo(args.out, steps=args.steps, progress=not args.quiet)


def _cmd_convert(args: argparse.Namespace) -> None:
    from .io.checkpoints import load, save_checkpoint
    from .io.export import export_onnx, save_hf

    model, _ = load(args.src, dtype=DTYPES[args.dtype], image_size=args.image_size,
                    context_length=args.context_length, activation=args.activation, trust_code=args.trust_code)
    if args.to == "native":
        save_checkpoint(args.dst, model, metadata={"converted_from": str(args.src)})
    elif args.to == "hf":
        save_hf(model, args.dst)
    else:
        export_onnx(model, args.dst)
    print(f"wrote {args.to} {args.dtype if args.to != 'onnx' else 'fp32'} model to {args.dst}")


def _eval_common(p: argparse.ArgumentParser, *, out: str) -> None:
    p.add_argument("--checkpoint", required=True, help="a clipworks checkpoint (directory, training run or weights)")
    p.add_argument("--out", default=out, help="where the JSON and markdown results go")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes for reading images")
    p.add_argument("--cache-dir", default=None, help="image-feature cache (default: <out>/cache)")
    _precision_flag(p, "embeds")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _precision_flag(p: argparse.ArgumentParser, what: str, *, default: str | None = "auto") -> None:
    p.add_argument("--precision", choices=PRECISIONS, default=default, help=f"the precision the model {what} in; "
                   "auto: bf16 where this CPU (or GPU) computes it natively, else fp32 (default: "
                   f"{default or 'the one the index was built at'})")


def _eval_kwargs(args: argparse.Namespace) -> dict:
    return dict(out=args.out, device=args.device, precision=args.precision, batch_size=args.batch_size,
                workers=args.workers,
                cache_dir=args.cache_dir, progress=not args.quiet)


def _eval_prompts(args: argparse.Namespace) -> tuple[list[str] | None, list[str]]:
    from .evaluation import prompts

    names = args.classnames or args.classes_file
    return (prompts.classnames(names) if names else None), prompts.templates(args.templates)


def _cmd_eval_zeroshot(args: argparse.Namespace) -> None:
    from .evaluation.commands import run_zeroshot

    classnames, templates = _eval_prompts(args)
    r = run_zeroshot(args.checkpoint, args.data, classnames=classnames, templates=templates, **_eval_kwargs(args))
    for name, m in r["prompts"].items():
        print(f"{name:<16} top-1 {m['top1']:.4f}  top-5 {m['top5']:.4f}  mean per-class recall "
              f"{m['mean_per_class_recall']:.4f}")
    print(f"{r['n_images']} images, {len(r['classes'])} classes; results in {args.out}/zeroshot.{{json,md}}")


def _cmd_eval_linear_probe(args: argparse.Namespace) -> None:
    from .evaluation.commands import run_linear_probe

    r = run_linear_probe(args.checkpoint, args.train, args.test, val_fraction=args.val_fraction, shots=args.shots,
                         seeds=args.seeds, **_eval_kwargs(args))
    if args.shots:
        f = r["few_shot"]
        print(f"{args.shots}-shot linear probe ({args.seeds} seeds): top-1 {f['mean']:.4f} ± {f['std']:.4f}")
    else:
        print(f"linear probe: top-1 {r['top1']:.4f} (C = {r['c']:.3g}, validation top-1 {r['val_top1']:.4f})")
    print(f"results in {args.out}/linear_probe.{{json,md}}")


def _cmd_eval_retrieval(args: argparse.Namespace) -> None:
    from .evaluation.commands import run_retrieval

    r = run_retrieval(args.checkpoint, args.data, image_key=args.image_key, caption_key=args.caption_key,
                      **_eval_kwargs(args))
    for direction in ("image_to_text", "text_to_image"):
        print(f"{direction.replace('_', ' '):<14} " + "  ".join(f"R@{k} {r[f'{direction}_R@{k}']:.4f}"
                                                             for k in (1, 5, 10)))
    print(f"{r['n_images']} images, {r['n_captions']} captions; results in {args.out}/retrieval.{{json,md}}")


def _cmd_eval_robustness(args: argparse.Namespace) -> None:
    from .evaluation.commands import run_robustness

    datasets = {}
    for item in args.data:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--data {item!r}: expected NAME=DIR (e.g. --data flat=world/flat)")
        datasets[name] = path
    classnames, templates = _eval_prompts(args)
    r = run_robustness(args.checkpoint, datasets, classnames=classnames, templates=templates,
                       probe_train=args.probe_train, **_eval_kwargs(args))
    for name, m in r["datasets"].items():
        probe = f"  linear probe {m['linear_probe_top1']:.4f}" if "linear_probe_top1" in m else ""
        print(f"{name:<20} zero-shot top-1 {m['zeroshot_top1']:.4f}{probe}")
    print(f"results in {args.out}/robustness.{{json,md}}")


def _cmd_eval_report(args: argparse.Namespace) -> None:
    from .evaluation.report import run_report

    run_report(args.checkpoint, out=args.out, n_train=args.n_train, n_test=args.n_test, seeds=args.seeds,
               world_seed=args.world_seed, device=args.device, precision=args.precision, batch_size=args.batch_size,
               cache_dir=args.cache_dir, progress=not args.quiet)
    print((Path(args.out) / "report.md").read_text())


def _cmd_index_build(args: argparse.Namespace) -> None:
    from .search.index import Index, IndexSpec

    spec = IndexSpec(kind=args.kind, nlist=args.nlist, nprobe=args.nprobe, hnsw_m=args.hnsw_m,
                     ef_search=args.ef_search)
    index, report = Index.build(args.src, checkpoint=args.checkpoint, out=args.out, spec=spec,
                                batch_size=args.batch_size, workers=args.workers, precision=args.precision,
                                device=args.device,
                                image_key=args.image_key, caption_key=args.caption_key, chunk=args.chunk,
                                progress=not args.quiet)
    if report.skipped:
        print(f"skipped {len(report.skipped)} unreadable images (first: {report.skipped[0][0]}: "
              f"{report.skipped[0][1]})")
    print(f"embedded {report.embedded} new or changed, {report.unchanged} unchanged, {report.removed} removed; "
          f"{args.out}: {index.describe()}")


def _cmd_search(args: argparse.Namespace) -> None:
    from .data.images import open_image
    from .search.index import Index, iter_hits_table

    if (args.query is None) == (args.image is None):
        raise ConfigError("give a text query or --image PATH (one of them)")
    index = Index.load(args.index, checkpoint=args.checkpoint, precision=args.precision)
    if args.image is not None:
        query = open_image(args.image)
    else:
        query = args.query
    hits = index.search(query, args.k)
    if args.json:
        print(json.dumps({"query": args.query or args.image, "k": args.k, "results": [h.to_dict() for h in hits]},
                         indent=2))
    else:
        print("\n".join(iter_hits_table(hits)))


def _cmd_serve(args: argparse.Namespace) -> None:
    from .search.index import Index
    from .search.serve import Limits, import_web, run

    import_web()  # the missing-extra message before any model loading
    index = Index.load(args.index, checkpoint=args.checkpoint, precision=args.precision)
    index.model  # noqa: B018 -- load (and check against the index) before accepting requests
    limits = Limits(max_upload_bytes=int(args.max_upload_mb * 2**20), max_pixels=args.max_pixels, max_k=args.max_k)
    run(index, host=args.host, port=args.port, limits=limits)


def _add_search_parsers(sub: argparse._SubParsersAction) -> None:
    """`clipworks index build`, `clipworks search`, `clipworks serve`: search an image collection by text or image."""
    group = sub.add_parser("index", help="build a search index of an image folder, a CSV or webdataset shards")
    commands = group.add_subparsers(dest="index_command", required=True, parser_class=_Parser)
    p = commands.add_parser("build", help="embed new or changed images of SRC into the index at --out (resumable)")
    p.add_argument("src", help="an image folder, a CSV/TSV of image paths and captions, or shards (data/{00..09}.tar)")
    p.add_argument("--checkpoint", required=True, help="the model that embeds the images (any supported format)")
    p.add_argument("--out", required=True, help="the index directory (created, or updated incrementally)")
    p.add_argument("--kind", choices=("flat", "ivf", "hnsw"), default="flat", help="flat: exact (default); ivf, "
                   "hnsw: approximate, for millions of images (recall and speed in the README)")
    p.add_argument("--nlist", type=int, default=None, help="ivf cells (default 2*sqrt(N))")
    p.add_argument("--nprobe", type=int, default=32, help="ivf cells searched per query")
    p.add_argument("--hnsw-m", type=int, default=32, help="hnsw neighbours per vector")
    p.add_argument("--ef-search", type=int, default=128, help="hnsw candidates per query")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=0, help="DataLoader processes that decode images")
    _precision_flag(p, "embeds images and queries")
    p.add_argument("--device", default="cpu")
    p.add_argument("--chunk", type=int, default=1024, help="images per committed chunk (what a crash can lose)")
    p.add_argument("--image-key", default="filepath", help="CSV column of image paths")
    p.add_argument("--caption-key", default="caption", help="CSV column of captions")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_index_build)

    p = sub.add_parser("search", help="the images of an index most similar to a text or an image")
    p.add_argument("index", help="an index directory from `clipworks index build`")
    p.add_argument("query", nargs="?", help="what to look for, e.g. 'a red circle'")
    p.add_argument("--image", help="search by this image instead of a text")
    p.add_argument("-k", type=int, default=10, help="number of results")
    p.add_argument("--checkpoint", help="the model (default: the one the index was built with)")
    p.add_argument("--json", action="store_true", help="print results as JSON")
    _precision_flag(p, "embeds the query", default=None)
    p.set_defaults(func=_cmd_search)

    p = sub.add_parser("serve", help="HTTP JSON API and web page: text and image search, zero-shot labels")
    p.add_argument("index", help="an index directory from `clipworks index build`")
    p.add_argument("--checkpoint", help="the model (default: the one the index was built with)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only; 0.0.0.0 exposes "
                   "it to the network)")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port (printed)")
    p.add_argument("--max-upload-mb", type=float, default=10.0, help="largest request body")
    p.add_argument("--max-pixels", type=int, default=40_000_000, help="largest uploaded image, width x height")
    p.add_argument("--max-k", type=int, default=100, help="most results per search")
    _precision_flag(p, "embeds queries", default=None)
    p.set_defaults(func=_cmd_serve)


def _add_eval_parsers(sub: argparse._SubParsersAction) -> None:
    """`clipworks eval {zeroshot,linear-probe,retrieval,robustness,report}`: the paper's evaluations."""
    group = sub.add_parser("eval", help="the paper's evaluations: zero-shot, linear probe, few-shot, retrieval, "
                           "robustness, and a report on the built-in world")
    evals = group.add_subparsers(dest="eval_command", required=True, parser_class=_Parser)

    def prompt_flags(p: argparse.ArgumentParser) -> None:
        names = p.add_mutually_exclusive_group()
        names.add_argument("--classnames", choices=("imagenet", "cifar10", "cifar100"),
                           help="built-in class names (in sorted-folder or label order)")
        names.add_argument("--classes-file", help="one class name per line (default: the folder names or labels)")
        p.add_argument("--templates", default="default", help="imagenet80, imagenet7, cifar, default "
                       f"({DEFAULT_TEMPLATE!r}) or a file with one template per line")

    p = evals.add_parser("zeroshot", help="top-1/top-5, per-class recall, confusion matrix; one prompt vs ensemble")
    _eval_common(p, out="runs/eval/zeroshot")
    p.add_argument("--data", required=True, help="a folder of class folders, or a CSV of filepath,label")
    prompt_flags(p)
    p.set_defaults(func=_cmd_eval_zeroshot)

    p = evals.add_parser("linear-probe", help="logistic regression on frozen features; --shots k for few-shot")
    _eval_common(p, out="runs/eval/linear_probe")
    p.add_argument("--train", required=True, help="labelled training set (class folders or filepath,label CSV)")
    p.add_argument("--test", required=True, help="labelled test set with the same classes")
    p.add_argument("--val-fraction", type=float, default=0.2, help="share of --train held out to choose C")
    p.add_argument("--shots", type=int, default=None, help="k examples per class (few-shot probe)")
    p.add_argument("--seeds", type=int, default=5, help="few-shot draws to average")
    p.set_defaults(func=_cmd_eval_linear_probe)

    p = evals.add_parser("retrieval", help="recall@1/5/10 image->text and text->image on a caption CSV")
    _eval_common(p, out="runs/eval/retrieval")
    p.add_argument("--data", required=True, help="CSV of filepath,caption; repeated filepaths = several captions")
    p.add_argument("--image-key", default="filepath")
    p.add_argument("--caption-key", default="caption")
    p.set_defaults(func=_cmd_eval_retrieval)

    p = evals.add_parser("robustness", help="one zero-shot classifier on several datasets with the same classes")
    _eval_common(p, out="runs/eval/robustness")
    p.add_argument("--data", required=True, action="append", metavar="NAME=DIR", help="repeat for each dataset")
    p.add_argument("--probe-train", default=None, help="also fit a linear probe on this set and test it on each")
    prompt_flags(p)
    p.set_defaults(func=_cmd_eval_robustness)

    p = evals.add_parser("report", help="the paper's findings in miniature on the built-in world (PNG/markdown/JSON)")
    _eval_common(p, out="runs/eval/report")
    p.add_argument("--n-train", type=int, default=2000, help="world training images for the probes")
    p.add_argument("--n-test", type=int, default=1000, help="world images per test set")
    p.add_argument("--seeds", type=int, default=5, help="few-shot draws per k")
    p.add_argument("--world-seed", type=int, default=None, help="the world's seed (default: the one the checkpoint "
                   "was trained on, from its config.json)")
    p.set_defaults(func=_cmd_eval_report)


def build_parser() -> argparse.ArgumentParser:
    from .training.config import add_train_flags

    parser = _Parser(prog="clipworks", description="CLIP models: train, zero-shot, demo.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("models", help="list the model registry")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("train", help="contrastive training on the built-in world or a CSV of image paths + captions")
    add_train_flags(p)  # one per TrainConfig field; the flags the user did not type stay out of the namespace
    p.add_argument("--config", metavar="FILE", help="a .toml or .json file of TrainConfig fields (flags override it)")
    p.add_argument("--recipe", choices=RECIPES, help="the paper's hyperparameters for --model (see `clipworks "
                   "recipes`); the config file and flags override it")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("recipes", help="the paper's training hyperparameters per model (for --recipe paper)")
    p.set_defaults(func=_cmd_recipes)

    p = sub.add_parser("zeroshot", help="zero-shot labels for images, or top-1/top-5 on a labelled image set")
    p.add_argument("--checkpoint", required=True, help="a clipworks checkpoint (directory or training run)")
    p.add_argument("--classes", help="comma-separated class names")
    p.add_argument("--classes-file", help="a text file with one class name per line")
    p.add_argument("--template", action="append", help="prompt with '{}' for the class (repeat to ensemble); "
                   f"default {DEFAULT_TEMPLATE!r}")
    p.add_argument("--data", help="labelled set: a folder with one sub-folder per class, or a CSV of filepath,label")
    p.add_argument("--top", type=int, default=3, help="labels shown per image")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    _precision_flag(p, "embeds")
    p.add_argument("images", nargs="*", help="image files to label")
    p.set_defaults(func=_cmd_zeroshot)

    p = sub.add_parser("convert", help="convert OpenAI / open_clip / HF / clipworks weights to native, HF or ONNX")
    p.add_argument("src", help="weights file or directory in any supported format")
    p.add_argument("dst", help="output directory")
    p.add_argument("--to", choices=("native", "hf", "onnx"), required=True)
    p.add_argument("--dtype", choices=tuple(DTYPES), default="fp32", help="weights dtype (ONNX is always fp32)")
    p.add_argument("--image-size", type=int, help="interpolate the image positional embedding to this size")
    p.add_argument("--context-length", type=int, help="shorten, or extend with untrained positions, the text context")
    p.add_argument("--activation", choices=("quick_gelu", "gelu"), help="override the (possibly assumed) activation")
    p.add_argument("--trust-code", action="store_true", help="allow torch.jit.load of TorchScript archives (runs "
                   "code from the file; the default reads their tensors without it)")
    p.set_defaults(func=_cmd_convert)

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

    _add_eval_parsers(sub)
    _add_search_parsers(sub)
    return parser


def _one_line_warning(message: Warning | str, category: type[Warning], *args: object, **kwargs: object) -> None:
    print(f"clipworks: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning  # a warning for the user (e.g. emulated bf16), not a source line
            args.func(args)
    except (ClipworksError, FileNotFoundError) as e:  # the user's input; anything else is a bug: a traceback
        print(f"clipworks {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"clipworks {args.command}: interrupted; checkpoints already written are intact", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
