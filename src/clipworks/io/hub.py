"""`hf-hub:ORG/REPO[@REVISION]`: an open_clip or transformers CLIP repo on the Hugging Face Hub, as a local directory.

Through `huggingface_hub` (the extra `clipworks[hub]`), so its cache, revisions, tokens (HF_TOKEN), HF_ENDPOINT
(a mirror) and HF_HUB_OFFLINE behave as in every other library of the field. Both read at call time here, so they can
change inside one process. An open_clip repo is `open_clip_config.json` + `open_clip_model.safetensors` (or
`open_clip_pytorch_model.bin`); a transformers repo `config.json` + `model.safetensors` (or `pytorch_model.bin`) and,
if present, `preprocessor_config.json`. Only those files are fetched, never a whole repo; `.bin` files are read with
`weights_only=True` like every pickle (formats.py), so no code from the Hub ever runs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import CheckpointError
from .download import DownloadError, offline
from .formats import HF_WEIGHTS, OPEN_CLIP_CONFIG, OPEN_CLIP_WEIGHTS

INSTALL = "pip install 'clipworks[hub]'"


def _hf() -> Any:
    try:
        import huggingface_hub
    except ImportError:
        raise CheckpointError(f"loading from the Hugging Face Hub needs the huggingface_hub package: {INSTALL}") \
            from None
    return huggingface_hub


def parse(spec: str) -> tuple[str, str | None]:
    """'hf-hub:ORG/REPO@REV' -> ('ORG/REPO', 'REV'); the prefix is optional."""
    repo, _, revision = spec.removeprefix("hf-hub:").strip().partition("@")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise CheckpointError(f"{spec!r}: expected hf-hub:ORG/REPO (optionally @REVISION), e.g. "
                              "hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K")
    return repo, revision or None


def _endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def _get(repo: str, filename: str, revision: str | None) -> Path | None:
    """The file from the Hub (or its cache); None when the repo has no such file."""
    hf = _hf()
    errors = hf.errors
    try:
        return Path(hf.hf_hub_download(repo, filename, revision=revision, endpoint=_endpoint(),
                                       cache_dir=os.environ.get("HF_HUB_CACHE"), local_files_only=offline()))
    except errors.LocalEntryNotFoundError:  # offline, or the network is down, and the file is not cached
        if offline():
            return None  # the caller decides whether a missing file matters
        raise DownloadError(f"hf-hub:{repo}: could not reach {_endpoint()} and {filename} is not in the Hub cache; "
                            f"check the network (or HF_ENDPOINT), or fetch it on a connected machine with `hf download "
                            f"{repo} {filename}` and copy the cache (HF_HUB_CACHE)") from None
    except errors.EntryNotFoundError:
        return None
    except errors.RevisionNotFoundError:
        raise CheckpointError(f"hf-hub:{repo}: no revision {revision!r} at {_endpoint()}") from None
    except errors.RepositoryNotFoundError:
        raise CheckpointError(f"hf-hub:{repo}: no such repository at {_endpoint()} (or it is private or gated: log "
                              "in with `hf auth login` or set HF_TOKEN)") from None
    except (errors.HfHubHTTPError, OSError) as e:
        raise DownloadError(f"hf-hub:{repo}: could not download {filename} from {_endpoint()} "
                            f"({str(e).splitlines()[0]}); fetch it by hand with `hf download {repo} {filename}`") \
            from None


def _first(repo: str, names: tuple[str, ...], revision: str | None) -> Path | None:
    return next((path for name in names if (path := _get(repo, name, revision)) is not None), None)


def fetch_repo(spec: str, *, open_clip_only: bool = False) -> Path:
    """The repo's CLIP weights, local (downloaded when not cached): an open_clip repo's weights file, whose
    `open_clip_config.json` lands beside it, or a transformers repo's snapshot directory. The file, not the
    directory, for open_clip: a snapshot may also hold other libraries' files (timm's `config.json` and
    `model.safetensors`), which must not be taken for a transformers model."""
    repo, revision = parse(spec)
    _get(repo, OPEN_CLIP_CONFIG, revision)
    if (weights := _first(repo, OPEN_CLIP_WEIGHTS, revision)) is not None:
        return weights
    if not open_clip_only and _get(repo, "config.json", revision) is not None:
        if (weights := _first(repo, HF_WEIGHTS, revision)) is not None:
            _get(repo, "preprocessor_config.json", revision)
            return weights.parent
    wanted = " or ".join(OPEN_CLIP_WEIGHTS + (() if open_clip_only else HF_WEIGHTS))
    if offline():
        raise DownloadError(f"offline mode (CLIPWORKS_OFFLINE/HF_HUB_OFFLINE) and hf-hub:{repo} has no {wanted} in "
                            f"the Hub cache: fetch it on a connected machine (`hf download {repo}`) and copy the "
                            "cache (HF_HUB_CACHE), or pass a local directory")
    raise CheckpointError(f"hf-hub:{repo}: no CLIP weights in the repo (looked for {wanted})")


def cached_weights(spec: str) -> Path | None:
    """The repo's open_clip weights file when the Hub cache holds it (no network); None otherwise or without
    huggingface_hub."""
    try:
        import huggingface_hub
    except ImportError:
        return None
    repo, revision = parse(spec)
    for name in OPEN_CLIP_WEIGHTS:
        path = huggingface_hub.try_to_load_from_cache(repo, name, revision=revision,
                                                      cache_dir=os.environ.get("HF_HUB_CACHE"))
        if isinstance(path, str):
            return Path(path)
    return None
