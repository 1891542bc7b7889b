"""Pretrained weights by name: OpenAI's nine releases and open_clip's pretrained tags for plain-CLIP architectures.

Names, in the spellings users bring from OpenAI's `clip.load` and from open_clip:
    ViT-B/32, ViT-B-32, openai/ViT-B-32, ViT-B-32:openai      OpenAI's release, from OpenAI's server
    ViT-L/14@336px, ViT-L-14-336                               (a bare architecture name means its OpenAI weights)
    ViT-B-32:laion2b_s34b_b79k, ViT-B-32-quickgelu:metaclip_400m   open_clip's ARCH + pretrained tag, from the HF Hub
    hf-hub:ORG/REPO[@REVISION]                                  any open_clip or transformers CLIP repo on the Hub
The facts carried over: OpenAI's URLs, whose path holds each file's SHA-256 (openai/CLIP `clip/clip.py`), and open_clip
3.3.0's tags with their Hub repos, activations and preprocessing (`open_clip/pretrained.py`). ViT-B-16-plus-240's
laion400m_e32 tag is left out: open_clip 3.3.0 points it at the e31 repo.

`locate(name)` turns a name into local files (downloading them into the cache, `download.py` / `hub.py`) plus what
the weights alone do not say: the architecture (head widths, activation) and the image preprocessing.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import CheckpointError
from ..models.configs import CLIPConfig, get_config
from ..models.transforms import Preprocess
from .download import fetch
from .files import cache_dir

OPENAI_SERVER = "https://openaipublic.azureedge.net/clip/models"
HUB_PREFIX = "hf-hub:"

# OpenAI's releases: registry name -> (SHA-256, file name on OpenAI's server).
_OPENAI = {
    "RN50": ("afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762", "RN50.pt"),
    "RN101": ("8fa8567bab74a42d41c5915025a8e4538c3bdbe8804a470a72f30b0d94fab599", "RN101.pt"),
    "RN50x4": ("7e526bd135e493cef0776de27d5f42653e6b4c8bf9e0f653bb11773263205fdd", "RN50x4.pt"),
    "RN50x16": ("52378b407f34354e150460fe41077663dd5b39c54cd0bfd2b27167a4a06ec9aa", "RN50x16.pt"),
    "RN50x64": ("be1cfb55d75a9666199fb2206c106743da0f6468c9d327f3e0d0a543a9919d9c", "RN50x64.pt"),
    "ViT-B-32": ("40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af", "ViT-B-32.pt"),
    "ViT-B-16": ("5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f", "ViT-B-16.pt"),
    "ViT-L-14": ("b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836", "ViT-L-14.pt"),
    "ViT-L-14-336": ("3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02", "ViT-L-14-336px.pt"),
}

# open_clip's tags: (architecture, tag, Hub repo, flags). Flags: Q = trained with QuickGELU (else GELU); H = mean and
# std 0.5 (else OpenAI's); S = "squash" resize (the image resized to a square, no crop; else shorter side + crop).
_OPEN_CLIP = [
    ("RN50", "yfcc15m", "timm/resnet50_clip.yfcc15m", "Q"),
    ("RN50", "cc12m", "timm/resnet50_clip.cc12m", "Q"),
    ("RN101", "yfcc15m", "timm/resnet101_clip.yfcc15m", "Q"),
    ("ViT-B-32", "laion400m_e31", "timm/vit_base_patch32_clip_224.laion400m_e31", "Q"),
    ("ViT-B-32", "laion400m_e32", "timm/vit_base_patch32_clip_224.laion400m_e32", "Q"),
    ("ViT-B-32", "laion2b_e16", "timm/vit_base_patch32_clip_224.laion2b_e16", ""),
    ("ViT-B-32", "laion2b_s34b_b79k", "laion/CLIP-ViT-B-32-laion2B-s34B-b79K", ""),
    ("ViT-B-32", "datacomp_xl_s13b_b90k", "laion/CLIP-ViT-B-32-DataComp.XL-s13B-b90K", ""),
    ("ViT-B-32", "datacomp_m_s128m_b4k", "laion/CLIP-ViT-B-32-DataComp.M-s128M-b4K", ""),
    ("ViT-B-32", "commonpool_m_clip_s128m_b4k", "laion/CLIP-ViT-B-32-CommonPool.M.clip-s128M-b4K", ""),
    ("ViT-B-32", "commonpool_m_laion_s128m_b4k", "laion/CLIP-ViT-B-32-CommonPool.M.laion-s128M-b4K", ""),
    ("ViT-B-32", "commonpool_m_image_s128m_b4k", "laion/CLIP-ViT-B-32-CommonPool.M.image-s128M-b4K", ""),
    ("ViT-B-32", "commonpool_m_text_s128m_b4k", "laion/CLIP-ViT-B-32-CommonPool.M.text-s128M-b4K", ""),
    ("ViT-B-32", "commonpool_m_basic_s128m_b4k", "laion/CLIP-ViT-B-32-CommonPool.M.basic-s128M-b4K", ""),
    ("ViT-B-32", "commonpool_m_s128m_b4k", "laion/CLIP-ViT-B-32-CommonPool.M-s128M-b4K", ""),
    ("ViT-B-32", "datacomp_s_s13m_b4k", "laion/CLIP-ViT-B-32-DataComp.S-s13M-b4K", ""),
    ("ViT-B-32", "commonpool_s_clip_s13m_b4k", "laion/CLIP-ViT-B-32-CommonPool.S.clip-s13M-b4K", ""),
    ("ViT-B-32", "commonpool_s_laion_s13m_b4k", "laion/CLIP-ViT-B-32-CommonPool.S.laion-s13M-b4K", ""),
    ("ViT-B-32", "commonpool_s_image_s13m_b4k", "laion/CLIP-ViT-B-32-CommonPool.S.image-s13M-b4K", ""),
    ("ViT-B-32", "commonpool_s_text_s13m_b4k", "laion/CLIP-ViT-B-32-CommonPool.S.text-s13M-b4K", ""),
    ("ViT-B-32", "commonpool_s_basic_s13m_b4k", "laion/CLIP-ViT-B-32-CommonPool.S.basic-s13M-b4K", ""),
    ("ViT-B-32", "commonpool_s_s13m_b4k", "laion/CLIP-ViT-B-32-CommonPool.S-s13M-b4K", ""),
    ("ViT-B-32", "metaclip_400m", "timm/vit_base_patch32_clip_224.metaclip_400m", "Q"),
    ("ViT-B-32", "metaclip_fullcc", "timm/vit_base_patch32_clip_224.metaclip_2pt5b", "Q"),
    ("ViT-B-32-256", "datacomp_s34b_b86k", "laion/CLIP-ViT-B-32-256x256-DataComp-s34B-b86K", ""),
    ("ViT-B-16", "laion400m_e31", "timm/vit_base_patch16_clip_224.laion400m_e31", ""),
    ("ViT-B-16", "laion400m_e32", "timm/vit_base_patch16_clip_224.laion400m_e32", ""),
    ("ViT-B-16", "laion2b_s34b_b88k", "laion/CLIP-ViT-B-16-laion2B-s34B-b88K", ""),
    ("ViT-B-16", "datacomp_xl_s13b_b90k", "laion/CLIP-ViT-B-16-DataComp.XL-s13B-b90K", ""),
    ("ViT-B-16", "datacomp_l_s1b_b8k", "laion/CLIP-ViT-B-16-DataComp.L-s1B-b8K", ""),
    ("ViT-B-16", "commonpool_l_clip_s1b_b8k", "laion/CLIP-ViT-B-16-CommonPool.L.clip-s1B-b8K", ""),
    ("ViT-B-16", "commonpool_l_laion_s1b_b8k", "laion/CLIP-ViT-B-16-CommonPool.L.laion-s1B-b8K", ""),
    ("ViT-B-16", "commonpool_l_image_s1b_b8k", "laion/CLIP-ViT-B-16-CommonPool.L.image-s1B-b8K", ""),
    ("ViT-B-16", "commonpool_l_text_s1b_b8k", "laion/CLIP-ViT-B-16-CommonPool.L.text-s1B-b8K", ""),
    ("ViT-B-16", "commonpool_l_basic_s1b_b8k", "laion/CLIP-ViT-B-16-CommonPool.L.basic-s1B-b8K", ""),
    ("ViT-B-16", "commonpool_l_s1b_b8k", "laion/CLIP-ViT-B-16-CommonPool.L-s1B-b8K", ""),
    ("ViT-B-16", "dfn2b", "apple/DFN2B-CLIP-ViT-B-16", "Q"),
    ("ViT-B-16", "metaclip_400m", "timm/vit_base_patch16_clip_224.metaclip_400m", "Q"),
    ("ViT-B-16", "metaclip_fullcc", "timm/vit_base_patch16_clip_224.metaclip_2pt5b", "Q"),
    ("ViT-B-16-plus-240", "laion400m_e31", "timm/vit_base_patch16_plus_clip_240.laion400m_e31", ""),
    ("ViT-L-14", "laion400m_e31", "timm/vit_large_patch14_clip_224.laion400m_e31", ""),
    ("ViT-L-14", "laion400m_e32", "timm/vit_large_patch14_clip_224.laion400m_e32", ""),
    ("ViT-L-14", "laion2b_s32b_b82k", "laion/CLIP-ViT-L-14-laion2B-s32B-b82K", "H"),
    ("ViT-L-14", "datacomp_xl_s13b_b90k", "laion/CLIP-ViT-L-14-DataComp.XL-s13B-b90K", ""),
    ("ViT-L-14", "commonpool_xl_clip_s13b_b90k", "laion/CLIP-ViT-L-14-CommonPool.XL.clip-s13B-b90K", ""),
    ("ViT-L-14", "commonpool_xl_laion_s13b_b90k", "laion/CLIP-ViT-L-14-CommonPool.XL.laion-s13B-b90K", ""),
    ("ViT-L-14", "commonpool_xl_s13b_b90k", "laion/CLIP-ViT-L-14-CommonPool.XL-s13B-b90K", ""),
    ("ViT-L-14", "metaclip_400m", "timm/vit_large_patch14_clip_224.metaclip_400m", "Q"),
    ("ViT-L-14", "metaclip_fullcc", "timm/vit_large_patch14_clip_224.metaclip_2pt5b", "Q"),
    ("ViT-L-14", "dfn2b", "apple/DFN2B-CLIP-ViT-L-14", "Q"),
    ("ViT-L-14", "dfn2b_s39b", "apple/DFN2B-CLIP-ViT-L-14-39B", ""),
    ("ViT-H-14", "laion2b_s32b_b79k", "laion/CLIP-ViT-H-14-laion2B-s32B-b79K", ""),
    ("ViT-H-14", "metaclip_fullcc", "timm/vit_huge_patch14_clip_224.metaclip_2pt5b", "Q"),
    ("ViT-H-14", "metaclip_altogether", "timm/vit_huge_patch14_clip_224.metaclip_altogether", ""),
    ("ViT-H-14", "dfn5b", "apple/DFN5B-CLIP-ViT-H-14", "QS"),
    ("ViT-H-14-378", "dfn5b", "apple/DFN5B-CLIP-ViT-H-14-378", "QS"),
    ("ViT-g-14", "laion2b_s12b_b42k", "laion/CLIP-ViT-g-14-laion2B-s12B-b42K", ""),
    ("ViT-g-14", "laion2b_s34b_b88k", "laion/CLIP-ViT-g-14-laion2B-s34B-b88K", ""),
    ("ViT-bigG-14", "laion2b_s39b_b160k", "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k", ""),
    ("ViT-bigG-14", "metaclip_fullcc", "timm/vit_gigantic_patch14_clip_224.metaclip_2pt5b", "Q"),
]


@dataclass(frozen=True)
class Pretrained:
    """One named set of weights: where it comes from and what the weights alone do not say."""

    arch: str  # registry model name
    tag: str  # "openai", or open_clip's pretrained tag
    activation: str  # what the weights were trained with
    url: str = ""  # a direct download (OpenAI's server), verified against sha256
    sha256: str = ""
    hub: str = ""  # or an HF Hub repo holding open_clip's files
    preprocess: Preprocess = Preprocess()  # how its training prepared images (OpenAI's unless the tag says)

    @property
    def name(self) -> str:
        return f"{self.arch}:{self.tag}"

    @property
    def source(self) -> str:
        return self.url or f"{HUB_PREFIX}{self.hub}"

    @property
    def config(self) -> CLIPConfig:
        return dataclasses.replace(get_config(self.arch), activation=self.activation)

    @property
    def path(self) -> Path:
        """Where a direct download is cached."""
        return cache_dir() / "pretrained" / "openai" / Path(self.url).name

    @property
    def cached_file(self) -> Path | None:
        """The weights file when the cache holds it (no network, no hashing)."""
        if self.url:
            return self.path if self.path.is_file() else None
        from .hub import cached_weights  # huggingface_hub is optional: only Hub entries need it

        return cached_weights(self.hub)


def _openai(arch: str) -> Pretrained:
    sha, file = _OPENAI[arch]
    return Pretrained(arch, "openai", "quick_gelu", url=f"{OPENAI_SERVER}/{sha}/{file}", sha256=sha)


def _open_clip(arch: str, tag: str, hub: str, flags: str) -> Pretrained:
    half = {"mean": 0.5, "std": 0.5} if "H" in flags else {}
    preprocess = Preprocess(**half, resize_mode="squash" if "S" in flags else "shortest")
    return Pretrained(arch, tag, "quick_gelu" if "Q" in flags else "gelu", hub=hub, preprocess=preprocess)


PRETRAINED: dict[str, Pretrained] = {p.name: p for p in [*map(_openai, _OPENAI), *(_open_clip(*t) for t in _OPEN_CLIP)]}


def list_pretrained() -> list[Pretrained]:
    return list(PRETRAINED.values())


def _key(name: str) -> str | None:
    """The PRETRAINED key a user's spelling means, or None. Case does not matter."""
    name = name.strip()
    if name.lower().startswith("openai/"):
        name = name[len("openai/"):] + ":openai"
    arch, _, tag = name.partition(":")
    arch = re.sub(r"@336px$", "-336", arch.replace("/", "-"), flags=re.I)
    quick = arch.lower().endswith("-quickgelu")
    arch = arch[: -len("-quickgelu")] if quick else arch
    key = f"{arch}:{tag or 'openai'}".lower()
    entry = next((p for name, p in PRETRAINED.items() if name.lower() == key), None)
    if entry is None or (quick and entry.activation != "quick_gelu"):
        return None
    return entry.name


def find(name: str, pretrained: str | None = None) -> Pretrained | None:
    """The pretrained weights `name` (and open_clip's `pretrained=` tag) name, or None when it names none."""
    if pretrained:
        name = f"{name}:{pretrained}"
    key = _key(name)
    return PRETRAINED[key] if key else None


def closest(name: str, n: int = 3) -> list[str]:
    """The pretrained names nearest to `name` (a bare architecture for OpenAI's), for a 'did you mean' hint."""
    names = [entry.arch if entry.tag == "openai" else key for key, entry in PRETRAINED.items()]
    by_lower = {spelling.lower(): spelling for spelling in names}
    matches = difflib.get_close_matches(name.replace("/", "-").lower(), by_lower, n=n, cutoff=0.6)
    return [by_lower[m] for m in matches]


def unknown(name: str) -> CheckpointError:
    near = closest(name)
    hint = f" Did you mean {', '.join(near)}?" if near else ""
    return CheckpointError(f"{name}: no such file or directory, and not a pretrained name.{hint} `clipworks "
                           "pretrained` lists every name; a checkpoint path must exist")


def download(entry: Pretrained, *, progress: bool = True) -> Path:
    """The entry's local weights file (OpenAI) or repo directory (Hub), fetched into the cache if needed."""
    if entry.url:
        return fetch(entry.url, entry.path, sha256=entry.sha256, progress=progress)
    from .hub import fetch_repo

    return fetch_repo(entry.hub, open_clip_only=True)


def locate(spec: str | Path, *, pretrained: str | None = None, progress: bool = True) -> tuple[Path, Pretrained | None]:
    """The local file or directory a checkpoint argument means, and the pretrained entry when it was a name.

    An existing path wins; then `hf-hub:ORG/REPO`; then a pretrained name (downloaded into the cache on first use).
    """
    text = str(spec)
    if pretrained is None and Path(text).exists():
        return Path(text), None
    if pretrained is None and text.startswith(HUB_PREFIX):
        from .hub import fetch_repo

        return fetch_repo(text), None
    entry = find(text, pretrained)
    if entry is None:
        raise unknown(f"{text}:{pretrained}" if pretrained else text)
    return download(entry, progress=progress), entry


def is_name(spec: str | Path) -> bool:
    """True when `spec` is a pretrained name or hf-hub repo rather than an existing path."""
    text = str(spec)
    return not Path(text).exists() and (text.startswith(HUB_PREFIX) or find(text) is not None)
