"""The contrastive objective of CLIP (Radford et al. 2021, Sec. 2.3 and Figure 3's pseudocode).

A pure function of tensors: symmetric cross-entropy over the image->text and text->image logits
`scale * norm(I) @ norm(T).T`, where the i-th image and the i-th text are the positive pair.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

MAX_LOGIT_SCALE = math.log(100.0)  # the paper clips the learned temperature so that exp(scale) <= 100


def clip_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Mean of the two cross-entropies. `image_emb`, `text_emb`: (B, E), not necessarily normalised;
    `logit_scale`: the learned log-temperature (a scalar), exponentiated here."""
    if image_emb.shape != text_emb.shape:
        raise ValueError(f"image and text embeddings differ in shape: {tuple(image_emb.shape)} vs "
                         f"{tuple(text_emb.shape)}")
    image_emb = F.normalize(image_emb.float(), dim=-1)
    text_emb = F.normalize(text_emb.float(), dim=-1)
    return local_clip_loss(image_emb, text_emb, image_emb, text_emb, logit_scale, offset=0)


def local_clip_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, all_image_emb: torch.Tensor,
                    all_text_emb: torch.Tensor, logit_scale: torch.Tensor, *, offset: int) -> torch.Tensor:
    """One rank's share of the sharded loss: its B normalised rows against all N gathered normalised columns.

    Row i of this rank is pair `offset + i` of the global batch. The mean of this over ranks equals `clip_loss` of
    the global batch, and it never builds the N x N matrix: each rank holds (B, N).
    """
    scale = logit_scale.float().exp()
    labels = torch.arange(image_emb.shape[0], device=image_emb.device) + offset
    image_to_text = scale * image_emb @ all_text_emb.t()  # (B, N)
    text_to_image = scale * text_emb @ all_image_emb.t()  # (B, N)
    return (F.cross_entropy(image_to_text, labels) + F.cross_entropy(text_to_image, labels)) / 2


@torch.no_grad()
def clamp_logit_scale_(logit_scale: torch.Tensor) -> None:
    """In place, after each optimizer step: keep exp(logit_scale) in [1, 100] as OpenAI's training did."""
    logit_scale.clamp_(0, MAX_LOGIT_SCALE)


class _TiledCrossEntropy(torch.autograd.Function):
    """mean_i [logsumexp_j(s q_i.k_j) - s q_i.k_(offset+i)], computed `tile` rows at a time in forward AND backward,
    so memory is O(tile * N) instead of the O(b * N) logit matrix that autograd would keep."""

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, scale: torch.Tensor, offset: int, tile: int) -> torch.Tensor:
        lse = torch.cat([torch.logsumexp(scale * q[i:i + tile] @ k.t(), dim=1) for i in range(0, len(q), tile)])
        positive = scale * (q * k[offset:offset + len(q)]).sum(dim=1)  # (b,)
        ctx.save_for_backward(q, k, scale, lse)
        ctx.offset, ctx.tile = offset, tile
        return (lse - positive).mean()

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        q, k, scale, lse = ctx.saved_tensors
        offset, tile, b = ctx.offset, ctx.tile, len(q)
        grad_q, grad_k = torch.empty_like(q), torch.zeros_like(k)
        grad_scale = torch.zeros((), dtype=q.dtype)
        own = k[offset:offset + b]
        for i in range(0, b, tile):
            cos = q[i:i + tile] @ k.t()  # (t, N)
            p = torch.exp(scale * cos - lse[i:i + tile, None])  # softmax over the N keys
            grad_q[i:i + tile] = scale * (p @ k - own[i:i + tile])
            grad_k += scale * (p.t() @ q[i:i + tile])
            grad_scale += (p * cos).sum() - (q[i:i + tile] * own[i:i + tile]).sum()
        grad_k[offset:offset + b] -= scale * q
        g = grad_out / b
        return g * grad_q, g * grad_k, g * grad_scale, None, None


def tiled_local_clip_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, all_image_emb: torch.Tensor,
                          all_text_emb: torch.Tensor, logit_scale: torch.Tensor, *, offset: int,
                          tile: int = 1024) -> torch.Tensor:
    """`local_clip_loss` (same value and gradients, up to float rounding) without ever holding a (b, N) matrix:
    peak memory grows with tile * N, not b * N. Inputs are normalised embeddings, as for `local_clip_loss`."""
    scale = logit_scale.float().exp()
    image_to_text = _TiledCrossEntropy.apply(image_emb.float(), all_text_emb.float(), scale, offset, tile)
    text_to_image = _TiledCrossEntropy.apply(text_emb.float(), all_image_emb.float(), scale, offset, tile)
    return (image_to_text + text_to_image) / 2
