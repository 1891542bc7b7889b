"""Parity with open_clip 3.3.0's own modules for the architectures of its LAION / DataComp / DFN / MetaCLIP weights.

Run in the bench venv (`make parity-open-clip`; it needs torchvision). For each architecture open_clip builds its model
with seeded random weights (its own initialisation, then every gain and bias perturbed so that none is a trivial 1 or
0); ours is built on the meta device and takes open_clip's tensors with `load_state_dict(assign=True)`, so the two
share storage (ViT-bigG-14 is 2.5 B parameters, 10 GB in fp32: two copies would not fit in 24 GiB). Both encode the
same 2 images and 2 captions in fp32; the table gives the largest absolute differences of the embeddings, and the
largest absolute value of open_clip's for scale. open_clip's eval transforms are compared with ours for its three
resize modes on PIL images of several shapes. Results are appended to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import gc
import time

import numpy as np
import open_clip
import torch
from PIL import Image
from timing import append_results

import clipworks
from clipworks.models.clip import CLIP
from clipworks.models.transforms import image_transform

ARCHITECTURES = ["ViT-B-32-256", "ViT-B-16-plus-240", "ViT-H-14", "ViT-H-14-378", "ViT-g-14", "ViT-bigG-14",
                 "ViT-H-14-quickgelu"]
TOL = 1e-5


def pair(name: str) -> tuple[torch.nn.Module, CLIP]:
    """open_clip's model with seeded weights, and ours sharing its tensors."""
    torch.manual_seed(0)
    theirs = open_clip.create_model(name, pretrained=None).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in theirs.parameters():
            if p.ndim == 1:  # LayerNorm gains and biases, linear biases: off their initial 1s and 0s
                p.add_(0.1 * torch.randn(p.shape, generator=g))
    with torch.device("meta"):
        ours = CLIP(clipworks.get_config(name))
    ours.load_state_dict(theirs.state_dict(), strict=True, assign=True)
    their_state = theirs.state_dict()
    unshared = [k for k, v in ours.state_dict().items() if v.data_ptr() != their_state[k].data_ptr()]
    assert not unshared, f"the two models should share every tensor: {unshared[:3]}"
    return theirs, ours.eval()


def inputs(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    images = torch.randn(2, 3, size, size, generator=g)
    text = torch.zeros(2, 77, dtype=torch.long)
    for row, eot in enumerate((6, 21)):  # two caption lengths; padding after the end of text, as tokenize gives
        text[row, 0], text[row, eot] = 49406, 49407
        text[row, 1:eot] = torch.randint(1, 49406, (eot - 1,), generator=g)
    return images, text


def architecture_rows(names: list[str]) -> list[str]:
    rows = ["| architecture | params | image max abs diff | text max abs diff | image / text max abs value | "
            "seconds |", "|---|---|---|---|---|---|"]
    for name in names:
        start = time.perf_counter()
        theirs, ours = pair(name)
        images, text = inputs(ours.image_size)
        with torch.no_grad():
            their_image, their_text = theirs.encode_image(images), theirs.encode_text(text)
            our_image, our_text = ours.encode_image(images), ours.encode_text(text)
        image_diff = (our_image - their_image).abs().max().item()
        text_diff = (our_text - their_text).abs().max().item()
        params = sum(p.numel() for p in ours.parameters())
        ok = "" if max(image_diff, text_diff) <= TOL else " (over 1e-5)"
        rows.append(f"| {name} ({ours.config.activation}) | {params:,} | {image_diff:.2e}{ok} | {text_diff:.2e} | "
                    f"{their_image.abs().max():.2f} / {their_text.abs().max():.2f} | "
                    f"{time.perf_counter() - start:.0f} |")
        print(rows[-1], flush=True)
        del theirs, ours
        gc.collect()
    return rows


def noise(w: int, h: int, seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


def transform_rows() -> list[str]:
    rows = ["| resize mode | interpolation | image sizes | max abs diff |", "|---|---|---|---|"]
    mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)  # not OpenAI's: the values must come through
    shapes = [(300, 200), (200, 300), (224, 224), (1000, 10), (97, 131)]
    for mode in ("shortest", "squash", "longest"):
        for interpolation in ("bicubic", "bilinear"):
            theirs = open_clip.image_transform(224, is_train=False, mean=mean, std=std, resize_mode=mode,
                                               interpolation=interpolation)
            ours = image_transform(224, mean=mean, std=std, resize_mode=mode, interpolation=interpolation)
            diff = max((ours(noise(w, h, i)) - theirs(noise(w, h, i))).abs().max().item()
                       for i, (w, h) in enumerate(shapes))
            rows.append(f"| {mode} | {interpolation} | {', '.join(f'{w}x{h}' for w, h in shapes)} | {diff:.2e} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=ARCHITECTURES)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    rows = architecture_rows(args.models) + [""] + transform_rows()
    append_results("Parity with open_clip's modules (bench/open_clip_parity.py)",
                   f"torch {torch.__version__}, open_clip {open_clip.__version__}",
                   "Seeded random weights (gains and biases perturbed) shared by both models, fp32, 2 images and 2 "
                   "captions (end of text at 6 and 21 of 77). Then open_clip's eval transforms against ours on PIL "
                   "images (mean and std 0.5).", rows)


if __name__ == "__main__":
    main()
