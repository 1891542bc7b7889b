"""clipworks against open_clip, OpenAI's tokenizer and HF's, both sides in one process, as ratios of median times.

Run with `make bench` (it builds .venv-bench with torch 2.14.1, torchvision, open_clip_torch 3.3.0 and clipworks).
Both libraries get the same random weights: open_clip's `-quickgelu` models have OpenAI's layout, which is ours.
Calls alternate between the two libraries so that load from elsewhere on the machine hits both alike.
Results are appended to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import copy
import functools
import importlib.util
import random
import statistics
import sysconfig
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import open_clip
import torch
from timing import append_results, cpu_line, median_time, paired, paired_blocks
from torch.utils.flop_counter import FlopCounterMode
from transformers import CLIPTokenizerFast

import clipworks
from clipworks import optimize_for_inference
from clipworks.data.world import World, WorldConfig
from clipworks.evaluation.prompts import IMAGENET_CLASSNAMES, IMAGENET_TEMPLATES
from clipworks.hardware import cpu, onednn_available, resolve_precision
from clipworks.io.export import export_onnx, write_tokenizer
from clipworks.models.tokenizer import Tokenizer


def matmul_peak(dtype: torch.dtype) -> float:
    """GFLOP/s of a 2048^3 matmul in `dtype` on this machine now (the denominator of model FLOP utilisation): the
    faster of eager `x @ x` and oneDNN with the weight prepacked, as `optimize_for_inference` runs it."""
    x = torch.randn(2048, 2048, dtype=dtype)
    ways = [lambda: x @ x]
    if onednn_available(x.device, dtype):
        packed = torch.ops.mkldnn._reorder_linear_weight(x)
        ways.append(lambda: torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], ""))
    return max(2 * 2048**3 / median_time(way, 5) / 1e9 for way in ways)


def flops(fn: Callable[[], object]) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def models(name: str) -> tuple[torch.nn.Module, clipworks.CLIP]:
    theirs = open_clip.create_model(f"{name}-quickgelu", pretrained=None).eval()
    ours = clipworks.create_model(name).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return theirs, ours


def bf16_models(name: str, theirs: torch.nn.Module, ours: clipworks.CLIP) -> tuple[torch.nn.Module, clipworks.CLIP]:
    """The same weights stored in bf16: open_clip's `precision="bf16"`, and ours as `load(..., dtype=bf16)` makes."""
    theirs_bf16 = open_clip.create_model(f"{name}-quickgelu", pretrained=None, precision="bf16").eval()
    theirs_bf16.load_state_dict(theirs.state_dict())
    return theirs_bf16, copy.deepcopy(ours).to(torch.bfloat16)


def autocast(bf16: bool) -> torch.autocast:
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)


# Each comparison: (label, open_clip's way of running, clipworks' way). A way is (model, input dtype, autocast);
# "optimized" is `clipworks.optimize_for_inference`. bf16 rows only where bf16 is native: elsewhere it is emulated and
# many times slower than fp32 for both libraries, and `auto` does not pick it.
def comparisons(theirs: torch.nn.Module, ours: clipworks.CLIP, name: str) -> list[tuple[str, tuple, tuple]]:
    fp32, bf16 = torch.float32, torch.bfloat16
    auto = resolve_precision("auto")
    rows = [
        ("fp32", (theirs, fp32, False), (ours, fp32, False)),
        ("fp32, ours optimized", (theirs, fp32, False), (optimize_for_inference(ours), fp32, False)),
        (f"**ours optimized, precision auto ({auto.name}), vs their default fp32**", (theirs, fp32, False),
         (optimize_for_inference(ours, "auto"), auto.dtype, False)),
        ("ours optimized int8 (opt-in) vs their default fp32", (theirs, fp32, False),
         (optimize_for_inference(ours, "int8"), fp32, False)),
    ]
    if cpu().native_bf16:
        theirs_bf16, ours_bf16 = bf16_models(name, theirs, ours)
        rows += [
            ("bf16 autocast", (theirs, fp32, True), (ours, fp32, True)),
            ("bf16 weights", (theirs_bf16, bf16, False), (ours_bf16, bf16, False)),
            ("bf16 weights, ours optimized", (theirs_bf16, bf16, False), (optimize_for_inference(ours, bf16), bf16,
                                                                           False)),
        ]
    return rows


def calls(repeats: int, batch: int) -> int:
    """Timed calls per engine: ten times as many at batch 1, whose calls take tens of milliseconds and vary by 10-20%
    from one to the next (three calls gave RN50 against ONNX Runtime 0.81x in one run and 0.97x with thirty)."""
    return repeats * 10 if batch == 1 else repeats


@torch.no_grad()
def onnx_rows(repeats: int) -> list[str]:
    """clipworks' own ONNX export run by ONNX Runtime (2 intra-op threads, all graph optimisations) against
    clipworks' optimize_for_inference at precision auto, and at int8: the second anchor, beside open_clip."""
    import onnxruntime as ort

    rows = []
    for name in ("ViT-B-32", "RN50"):
        _, ours = models(name)
        fast = {"auto": optimize_for_inference(ours, "auto"), "int8": optimize_for_inference(ours, "int8")}
        if resolve_precision("auto").name != "fp32":  # both engines in fp32 on the same kernels' ISA as well
            fast["fp32"] = optimize_for_inference(ours, "fp32")
        with tempfile.TemporaryDirectory() as directory:
            path = export_onnx(ours, directory)["image"]
            options = ort.SessionOptions()
            options.intra_op_num_threads, options.inter_op_num_threads = 2, 1
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for batch in (1, 32):
            x = torch.randn(batch, 3, 224, 224)
            feed = {"images": x.numpy()}
            reference = ours.encode_image(x)
            for label, model in fast.items():
                dtype = resolve_precision("auto").dtype if label == "auto" else torch.float32
                t_ort, t_ours = paired_blocks(lambda: session.run(None, feed),
                                              lambda: model.encode_image(x.to(dtype)), calls(repeats, batch))
                cos = torch.nn.functional.cosine_similarity(model.encode_image(x.to(dtype)).float(), reference).min()
                rows.append(f"| image {name} | {batch} | ONNX Runtime fp32 vs ours optimized {label} | "
                            f"{batch / t_ort:.1f} | {batch / t_ours:.1f} | **{t_ort / t_ours:.2f}×** | | {cos:.5f} |")
                print(rows[-1], flush=True)
    return rows


@torch.no_grad()
def image_rows(repeats: int, peaks: dict[str, float]) -> list[str]:
    rows = []
    for name in ("ViT-B-32", "RN50"):
        theirs, ours = models(name)
        ways = comparisons(theirs, ours, name)
        for batch in (1, 32):
            x = torch.randn(batch, 3, 224, 224)
            # FLOPs of the architecture, counted on open_clip's plain modules (the counter does not see the oneDNN
            # ops clipworks calls directly).
            gflop = flops(lambda: theirs.encode_image(x)) / 1e9
            for label, (their_model, their_dtype, their_autocast), (our_model, our_dtype, our_autocast) in ways:

                def run_theirs():
                    with autocast(their_autocast):
                        return their_model.encode_image(x.to(their_dtype))

                def run_ours():
                    with autocast(our_autocast):
                        return our_model.encode_image(x.to(our_dtype))

                t_theirs, t_ours = paired(run_theirs, run_ours, calls(repeats, batch))
                cos = torch.nn.functional.cosine_similarity(run_ours().float(), theirs.encode_image(x)).min()
                peak = peaks["bf16" if our_autocast or our_dtype == torch.bfloat16 else "fp32"]
                mfu = gflop / t_ours / peak
                rows.append(f"| image {name} | {batch} | {label} | {batch / t_theirs:.1f} | {batch / t_ours:.1f} | "
                            f"**{t_theirs / t_ours:.2f}×** | {mfu:.0%} | {cos:.5f} |")
                print(rows[-1], flush=True)
    return rows


@torch.no_grad()
def text_rows(repeats: int, n_classes: int) -> list[str]:
    theirs, ours = models("ViT-B-32")
    prompts = [t.format(c) for c in IMAGENET_CLASSNAMES[:n_classes] for t in IMAGENET_TEMPLATES]
    their_tokens = open_clip.tokenize(prompts)
    our_tokens = clipworks.tokenize(prompts)
    assert torch.equal(their_tokens, our_tokens)

    def encode(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
        return torch.cat([model.encode_text(tokens[i:i + 256]) for i in range(0, len(tokens), 256)])

    n = len(prompts)
    rows = []
    for label, model in (("fp32", ours), ("fp32, ours optimized", optimize_for_inference(ours))):
        exact = (encode(model, our_tokens) - encode(theirs, their_tokens)).abs().max().item()
        t_theirs, t_ours = paired(lambda: encode(theirs, their_tokens), lambda: encode(model, our_tokens), repeats)
        rows.append(f"| text ViT-B-32 ({n:,} ImageNet prompts) | 256 | {label} | {n / t_theirs:.1f} | {n / t_ours:.1f} "
                    f"| **{t_theirs / t_ours:.2f}×** | | max abs diff {exact:.1e} |")
        print(rows[-1], flush=True)
    return rows


def tokenizer_rows(n: int, repeats: int) -> list[str]:
    """clipworks' tokenizer against OpenAI's SimpleTokenizer, open_clip's and HF's Rust CLIPTokenizerFast."""
    path = Path(sysconfig.get_paths()["purelib"]) / "clip" / "simple_tokenizer.py"
    spec = importlib.util.spec_from_file_location("openai_simple_tokenizer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    reference = module.SimpleTokenizer()
    with tempfile.TemporaryDirectory() as directory:  # HF tokenizer files written from our merges (no hub here)
        write_tokenizer(Path(directory), 77)
        hf = CLIPTokenizerFast.from_pretrained(directory)
    world = World(WorldConfig())
    # World captions (a small vocabulary, like prompts) with a unique number each: every caption has one chunk
    # that no cache has seen (the worst case for our chunk cache), and the same captions without the number.
    plain = [world.caption(world.sample("train", i).attributes, random.Random(i)) for i in range(n)]
    captions = [caption + f" #{i}" for i, caption in enumerate(plain)]
    ours = Tokenizer()

    def row(what: str, theirs: Callable[[], object], mine: Callable[[], object], same: bool, *,
            first_pass: bool = False) -> str:
        t_theirs, t_mine = (first_passes if first_pass else paired)(theirs, mine, repeats)
        line = (f"| tokenizer: {what} | | | {n / t_theirs:,.0f} | {n / t_mine:,.0f} | **{t_theirs / t_mine:.1f}×** | | "
                f"ids identical: {same} |")
        print(line, flush=True)
        return line

    def first_passes(theirs: Callable[[], object], mine: Callable[[], object], repeats: int) -> tuple[float, float]:
        """Median times of one pass each with fresh tokenizers (empty caches), alternating; building them untimed."""
        times: tuple[list[float], list[float]] = ([], [])
        for _ in range(repeats):
            for make, out in ((theirs, times[0]), (mine, times[1])):
                run = make()
                t = time.perf_counter()
                run()
                out.append(time.perf_counter() - t)
        return statistics.median(times[0]), statistics.median(times[1])

    def reference_ids(texts: list[str], tokenizer: object = reference) -> list[list[int]]:
        return [tokenizer.encode(text) for text in texts]

    same = reference_ids(captions) == ours.encode_batch(captions)
    framed = clipworks.tokenize(captions)
    return [
        row(f"OpenAI SimpleTokenizer.encode vs encode_batch, first pass over {n:,} captions with a unique number",
            lambda: functools.partial(reference_ids, captions, module.SimpleTokenizer()),
            lambda: functools.partial(Tokenizer().encode_batch, captions),
            same, first_pass=True),
        row("same, repeated passes (caches warm from earlier passes; ours is bounded at 65,536 chunks)",
            lambda: reference_ids(captions), lambda: ours.encode_batch(captions), same),
        row(f"same without the numbers ({len(set(plain)):,} distinct captions)",
            lambda: reference_ids(plain), lambda: ours.encode_batch(plain),
            reference_ids(plain) == ours.encode_batch(plain)),
        row("open_clip.tokenize vs clipworks.tokenize, (N, 77) tensor, captions with numbers",
            lambda: open_clip.tokenize(captions), lambda: clipworks.tokenize(captions),
            torch.equal(open_clip.tokenize(captions), framed)),
        # HF pads with <|endoftext|> rather than 0, so its ids are compared before padding.
        row("HF CLIPTokenizerFast (Rust) vs clipworks.tokenize, padded tensor, captions with numbers",
            lambda: hf(captions, padding="max_length", max_length=77, truncation=True, return_tensors="pt"),
            lambda: clipworks.tokenize(captions),
            hf(captions)["input_ids"] == [ids[: int(ids.argmax()) + 1].tolist() for ids in framed]),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--text-classes", type=int, default=4, help="ImageNet classes x 80 templates to encode")
    parser.add_argument("--captions", type=int, default=100_000, help="captions to tokenize")
    args = parser.parse_args()
    torch.manual_seed(0)
    print(cpu_line(), flush=True)
    # bf16's peak only where it is native (emulated, a 2048^3 matmul takes seconds and no row uses it).
    peaks = {"fp32": matmul_peak(torch.float32),
             "bf16": matmul_peak(torch.bfloat16) if cpu().native_bf16 else float("nan")}
    print(f"matmul peak: fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s", flush=True)
    header = ["| what | batch | how | open_clip /s | clipworks /s | speed-up | clipworks MFU | agreement |",
              "|---|---|---|---|---|---|---|---|"]
    rows = image_rows(args.repeats, peaks) + onnx_rows(args.repeats) + text_rows(args.repeats, args.text_classes)
    rows += tokenizer_rows(args.captions, args.repeats)
    versions = f"torch {torch.__version__}, open_clip {open_clip.__version__}, {torch.get_num_threads()} threads"
    append_results("clipworks vs open_clip", versions,
                   f"Median of {args.repeats} alternating calls after a warm-up ({calls(args.repeats, 1)} at batch "
                   f"1); random weights shared by both; matmul peak measured in the same run: fp32 "
                   f"{peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s. Agreement: minimum cosine "
                   "similarity of our embeddings to open_clip's fp32 ones (image rows).", [*header, *rows])


if __name__ == "__main__":
    main()
