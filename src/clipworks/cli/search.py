"""`clipworks index build`, `clipworks search`, `clipworks serve`: search an image collection by text or image."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields

from ..errors import ConfigError, counted
from .parsing import Parser, precision_flag


def add_parsers(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("index", help="build a search index of an image folder, a CSV or webdataset shards")
    commands = group.add_subparsers(dest="index_command", required=True, parser_class=Parser)
    p = commands.add_parser("build", help="embed new or changed images of SRC into the index at --out (resumable)")
    p.add_argument("src", nargs="?", help="an image folder, a CSV/TSV of image paths and captions, or shards "
                   "(data/{00..09}.tar); or none, with --from-embeddings")
    p.add_argument("--checkpoint", help="the model that embeds the images (any supported format, or a pretrained "
                   "name); with --from-embeddings, optional: the model that made them, recorded for text queries")
    p.add_argument("--from-embeddings", metavar="DIR", help="index precomputed embeddings instead (clip-retrieval's "
                   "layout, as `clipworks embed` writes: DIR/img_emb/*.npy, DIR/metadata/*.parquet, and "
                   "DIR/text_emb/*.npy with --text), of the kind that fits --max-index-memory")
    p.add_argument("--max-index-memory", metavar="SIZE", help="with --from-embeddings: the largest index to build, "
                   "e.g. 4GB (powers of 1000) or 4GiB; chooses flat, HNSW, IVF-Flat, IVF-PQ or OPQ+IVF-PQ")
    p.add_argument("--target-recall", type=float, default=0.95, help="with --from-embeddings: the recall@10 the "
                   "search setting (nprobe, efSearch) is chosen to reach on held-out rows and, if DIR has "
                   "text_emb/, on their captions (default 0.95)")
    p.add_argument("--out", required=True, help="the index directory (created, or updated incrementally)")
    p.add_argument("--kind", choices=("flat", "ivf", "hnsw"), default="flat", help="flat: exact (default); ivf, "
                   "hnsw: approximate, for millions of images (recall and speed in the README)")
    p.add_argument("--nlist", type=int, default=None, help="ivf cells (default 2*sqrt(N))")
    p.add_argument("--nprobe", type=int, default=32, help="ivf cells searched per query")
    p.add_argument("--hnsw-m", type=int, default=32, help="hnsw neighbours per vector")
    p.add_argument("--ef-search", type=int, default=128, help="hnsw candidates per query")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=0, help="DataLoader processes that decode images")
    precision_flag(p, "embeds images and queries")
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
    precision_flag(p, "embeds the query", default=None)
    p.set_defaults(func=_cmd_search)

    from ..search.serve import Limits

    limits = Limits()
    p = sub.add_parser("serve", help="HTTP JSON API and web page: text and image search, zero-shot labels")
    p.add_argument("index", help="an index directory from `clipworks index build`")
    p.add_argument("--checkpoint", help="the model (default: the one the index was built with)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only; 0.0.0.0 exposes "
                   "it to the network)")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port (printed)")
    p.add_argument("--max-upload-mb", type=float, default=limits.max_upload_bytes / 2**20,
                   help=f"largest request body, in MiB (default {limits.max_upload_bytes / 2**20:g})")
    # Each flag below sets the Limits field of the same name (max_k for --max-k, ...).
    for flag, default, what in (
            ("--max-pixels", limits.max_pixels, "largest uploaded image, width x height"),
            ("--max-k", limits.max_k, "most results per search"),
            ("--max-query-chars", limits.max_query_chars, "longest text search query"),
            ("--max-labels", limits.max_labels, "most labels per classification"),
            ("--max-templates", limits.max_templates, "most templates per classification"),
            ("--max-label-chars", limits.max_label_chars, "longest label"),
            ("--max-template-chars", limits.max_template_chars, "longest template"),
            ("--max-prompts", limits.max_prompts, "most labels x templates per classification (the prompts its "
                                                  "text encoder runs on)")):
        p.add_argument(flag, type=int, default=default, help=f"{what} (default {default:,})")
    p.add_argument("--model-threads", type=int, default=None, help="intra-op threads of the one thread that runs "
                   "every model call (default: all cores but one, at least 1; more makes a lone request faster, "
                   "fewer leaves cores to the requests' own work under load)")
    precision_flag(p, "embeds queries", default=None)
    p.set_defaults(func=_cmd_serve)


def _cmd_index_build(args: argparse.Namespace) -> None:
    from ..search.index import Index, IndexSpec

    if args.from_embeddings is not None:
        _build_from_embeddings(args)
        return
    if args.src is None or args.checkpoint is None:
        raise ConfigError("give SRC and --checkpoint (images to embed), or --from-embeddings DIR "
                          "--max-index-memory SIZE (embeddings already made)")
    if args.max_index_memory is not None:
        raise ConfigError("--max-index-memory applies to --from-embeddings only; with SRC choose --kind")
    spec = IndexSpec(kind=args.kind, nlist=args.nlist, nprobe=args.nprobe, hnsw_m=args.hnsw_m,
                     ef_search=args.ef_search)
    index, report = Index.build(args.src, checkpoint=args.checkpoint, out=args.out, spec=spec,
                                batch_size=args.batch_size, workers=args.workers, precision=args.precision,
                                device=args.device,
                                image_key=args.image_key, caption_key=args.caption_key, chunk=args.chunk,
                                progress=not args.quiet)
    if report.skipped:
        print(f"skipped {counted(len(report.skipped), 'unreadable image')} (first: {report.skipped[0][0]}: "
              f"{report.skipped[0][1]})")
    print(f"embedded {report.embedded} new or changed, {report.unchanged} unchanged, {report.removed} removed; "
          f"{args.out}: {index.describe()}")


def _build_from_embeddings(args: argparse.Namespace) -> None:
    from ..search.budget import parse_size
    from ..search.from_embeddings import build_from_embeddings

    if args.src is not None:
        raise ConfigError(f"give SRC ({args.src}) or --from-embeddings, not both")
    if args.max_index_memory is None:
        raise ConfigError("--from-embeddings needs --max-index-memory SIZE (e.g. 4GB): the index is chosen to fit it")
    if not 0 < args.target_recall <= 1:
        raise ConfigError(f"--target-recall {args.target_recall}: between 0 and 1")
    build_from_embeddings(args.from_embeddings, out=args.out, max_memory=parse_size(args.max_index_memory),
                          checkpoint=args.checkpoint, target_recall=args.target_recall, progress=not args.quiet)


def _cmd_search(args: argparse.Namespace) -> None:
    from ..data.images import open_image
    from ..search.index import Index, iter_hits_table

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
    from ..search.index import Index
    from ..search.serve import Limits, import_web, run

    import_web()  # the missing-extra message before any model loading
    if args.model_threads is not None and args.model_threads < 1:
        raise ConfigError(f"--model-threads {args.model_threads}: at least 1")
    limits = Limits(max_upload_bytes=int(args.max_upload_mb * 2**20),
                    **{f.name: getattr(args, f.name) for f in fields(Limits) if f.name != "max_upload_bytes"})
    index = Index.load(args.index, checkpoint=args.checkpoint, precision=args.precision)
    index.model  # noqa: B018 -- load (and check against the index) before accepting requests
    run(index, host=args.host, port=args.port, limits=limits, model_threads=args.model_threads)

