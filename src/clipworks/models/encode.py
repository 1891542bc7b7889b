"""Embedding many images or texts with a model, a batch at a time: the one encoding loop behind the evaluations,
the training-time evaluators and the search index.

Embeddings leave here as float32 on the CPU, L2-normalised in float32: a bf16 model's own normalisation leaves
norms visibly off 1, which cosine scores and faiss inner products would inherit.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

import torch
import torch.nn.functional as F

from .clip import CLIP
from .tokenizer import tokenize

Extra = TypeVar("Extra")


def _device(model: CLIP) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def embed_images(model: CLIP, batches: Iterable[tuple[torch.Tensor, Extra] | None]
                 ) -> Iterator[tuple[torch.Tensor, Extra]]:
    """For each (pixels (B, 3, H, W), extra) of `batches`: (embeddings (B, E), extra), `extra` passed through
    untouched (indices, tokens, metadata). A None batch (a loader's batch of unreadable images) is skipped."""
    device = _device(model)
    for batch in batches:
        if batch is None:
            continue
        pixels, extra = batch
        yield F.normalize(model.encode_image(pixels.to(device)).float(), dim=-1).cpu(), extra


@torch.no_grad()
def encode_tokens(model: CLIP, tokens: torch.Tensor, *, batch_size: int = 256) -> torch.Tensor:
    """(N, L) token ids -> (N, E) embeddings, `batch_size` rows at a time."""
    device = _device(model)
    chunks = [F.normalize(model.encode_text(tokens[i:i + batch_size].to(device)).float(), dim=-1).cpu()
              for i in range(0, len(tokens), batch_size)]
    return torch.cat(chunks) if chunks else torch.zeros(0, model.config.embed_dim)


def encode_texts(model: CLIP, texts: Sequence[str], *, batch_size: int = 256) -> torch.Tensor:
    """(N, E) embeddings of `texts`, tokenized to the model's context length (longer texts truncated)."""
    return encode_tokens(model, tokenize(list(texts), model.context_length, truncate=True), batch_size=batch_size)
