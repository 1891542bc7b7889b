"""`clipworks models` (the registry), `clipworks pretrained` (weights by name), `clipworks convert` (weights
between formats) and `clipworks interpolate` (WiSE-FT: weights between two models)."""

from __future__ import annotations

import argparse

import torch

from ..hardware import DTYPES
from ..models.configs import MODELS


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the model registry")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("pretrained", help="list the pretrained weights loadable by name (and whether cached); "
                       "--download fetches some into the cache")
    p.add_argument("--download", nargs="+", metavar="NAME", help="fetch these names into the cache (e.g. to carry "
                   "the cache to an air-gapped machine)")
    p.add_argument("--cached", action="store_true", help="list only the weights already in the cache")
    p.set_defaults(func=_cmd_pretrained)

    p = sub.add_parser("convert", help="convert OpenAI / open_clip / HF / clipworks weights to native, HF or ONNX")
    p.add_argument("src", help="weights file or directory in any supported format, or a pretrained name "
                   "(`clipworks pretrained`)")
    p.add_argument("dst", help="output directory")
    p.add_argument("--to", choices=("native", "hf", "onnx"), required=True)
    p.add_argument("--dtype", choices=tuple(DTYPES), default="fp32", help="weights dtype (ONNX is always fp32)")
    p.add_argument("--image-size", type=int, help="interpolate the image positional embedding to this size")
    p.add_argument("--context-length", type=int, help="shorten, or extend with untrained positions, the text context")
    p.add_argument("--activation", choices=("quick_gelu", "gelu"), help="override the (possibly assumed) activation")
    p.add_argument("--trust-code", action="store_true", help="allow torch.jit.load of TorchScript archives (runs "
                   "code from the file; the default reads their tensors without it)")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("interpolate", help="WiSE-FT: a checkpoint with weights (1 - alpha) * A + alpha * B of two "
                       "models of the same architecture (e.g. zero-shot and fine-tuned)")
    p.add_argument("a", help="model A (alpha 0): checkpoint, weights in any supported format, or pretrained name")
    p.add_argument("b", help="model B (alpha 1), e.g. A fine-tuned")
    p.add_argument("--alpha", type=float, default=0.5, help="B's share, in [0, 1] (default: 0.5)")
    p.add_argument("--out", required=True, help="output checkpoint directory")
    p.set_defaults(func=_cmd_interpolate)


def _cmd_models(args: argparse.Namespace) -> None:
    from ..models.clip import create_model

    print(f"{'name':<14} {'kind':<7} {'image':>5} {'embed':>5} {'parameters':>13}")
    for name, cfg in MODELS.items():
        with torch.device("meta"):
            n = sum(p.numel() for p in create_model(name).parameters())
        print(f"{name:<14} {cfg.vision.kind:<7} {cfg.vision.image_size:>5} {cfg.embed_dim:>5} {n:>13,}")


def _parameters(arch: str, cache: dict[str, int] = {}) -> int:  # noqa: B006 (a deliberate per-process memo)
    from ..models.clip import create_model

    if arch not in cache:
        with torch.device("meta"):
            cache[arch] = sum(p.numel() for p in create_model(arch).parameters())
    return cache[arch]


def _cmd_pretrained(args: argparse.Namespace) -> None:
    from ..io.pretrained import download, find, list_pretrained, unknown

    if args.download:
        entries = [find(name) or (name.startswith("hf-hub:") and name) for name in args.download]
        if missing := [n for n, e in zip(args.download, entries) if not e]:
            raise unknown(missing[0])
        for entry in entries:
            if isinstance(entry, str):
                from ..io.hub import fetch_repo

                print(f"{entry}: {fetch_repo(entry)}")
            else:
                print(f"{entry.name}: {download(entry)}")
        return
    print(f"{'name':<42} {'size':>9} {'cached':<6} {'sha256':<64} source")
    for entry in list_pretrained():
        file = entry.cached_file
        if args.cached and file is None:
            continue
        # Until downloaded, the size is estimated from the parameter count: OpenAI ships fp16, open_clip fp32.
        size = f"{file.stat().st_size / 1e6:,.0f} MB" if file else \
            f"~{_parameters(entry.arch) * (2 if entry.url else 4) / 1e6:,.0f} MB"
        print(f"{entry.name:<42} {size:>9} {'yes' if file else 'no':<6} {entry.sha256 or '-':<64} {entry.source}")


def _cmd_convert(args: argparse.Namespace) -> None:
    from ..io.checkpoints import load, save_checkpoint
    from ..io.export import export_onnx, save_hf

    model, _ = load(args.src, dtype=DTYPES[args.dtype], image_size=args.image_size,
                    context_length=args.context_length, activation=args.activation, trust_code=args.trust_code)
    if args.to == "native":
        save_checkpoint(args.dst, model, metadata={"converted_from": str(args.src)})
    elif args.to == "hf":
        save_hf(model, args.dst)
    else:
        export_onnx(model, args.dst)
    print(f"wrote {args.to} {args.dtype if args.to != 'onnx' else 'fp32'} model to {args.dst}")



def _cmd_interpolate(args: argparse.Namespace) -> None:
    from ..io.interpolate import interpolate

    interpolate(args.a, args.b, args.alpha, out=args.out)
    print(f"wrote {args.out}: (1 - {args.alpha:g}) * {args.a} + {args.alpha:g} * {args.b}")
