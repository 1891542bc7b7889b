"""`clipworks models` (the registry) and `clipworks convert` (weights between formats)."""

from __future__ import annotations

import argparse

import torch

from ..hardware import DTYPES
from ..models.configs import MODELS


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the model registry")
    p.set_defaults(func=_cmd_models)

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


def _cmd_models(args: argparse.Namespace) -> None:
    from ..models.clip import create_model

    print(f"{'name':<14} {'kind':<7} {'image':>5} {'embed':>5} {'parameters':>13}")
    for name, cfg in MODELS.items():
        with torch.device("meta"):
            n = sum(p.numel() for p in create_model(name).parameters())
        print(f"{name:<14} {cfg.vision.kind:<7} {cfg.vision.image_size:>5} {cfg.embed_dim:>5} {n:>13,}")


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

