"""`clipworks embed`: a collection's image (and caption) embeddings in clip-retrieval's layout, on one process or
under torchrun / SLURM (see `clipworks.embedding`)."""

from __future__ import annotations

import argparse
import json

from .parsing import precision_flag


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("embed", help="embed an image folder, a CSV or webdataset tars into img_emb/*.npy + "
                       "metadata/*.parquet (clip-retrieval's layout; resumable; torchrun for several processes)")
    p.add_argument("src", help="an image folder, a CSV/TSV of image paths and captions, or tars (data/{00..09}.tar)")
    p.add_argument("--checkpoint", required=True, help="the model (any supported format, or a pretrained name)")
    p.add_argument("--out", required=True, help="the output directory (created; a rerun resumes it)")
    p.add_argument("--text", action="store_true", help="also embed the captions into text_emb/")
    p.add_argument("--dtype", choices=("fp16", "fp32"), default="fp16", help="of the stored embeddings (default fp16)")
    p.add_argument("--shard-size", type=int, default=10_000, help="rows per output shard (a tar is one shard)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=0, help="DataLoader processes that decode images")
    precision_flag(p, "embeds in")
    p.add_argument("--device", default="cpu", help="cpu, or cuda (one GPU per process under torchrun)")
    p.add_argument("--image-key", default="filepath", help="CSV column of image paths")
    p.add_argument("--caption-key", default="caption", help="CSV column of captions")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=_cmd_embed)


def _cmd_embed(args: argparse.Namespace) -> None:
    from ..embedding import embed

    summary = embed(args.src, checkpoint=args.checkpoint, out=args.out, text=args.text, dtype=args.dtype,
                    shard_size=args.shard_size, batch_size=args.batch_size, workers=args.workers,
                    precision=args.precision, device=args.device, image_key=args.image_key,
                    caption_key=args.caption_key, progress=not args.quiet)
    if summary is not None:  # the main process: the summary without the list of damaged images (in summary.json)
        print(json.dumps({k: v for k, v in summary.items() if k != "damaged"}))
