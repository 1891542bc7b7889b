"""The forward and backward of one training step: the symmetric contrastive loss over the global batch (Radford et al.
2021, Sec. 2.3 and Fig. 3), each process computing the rows of its own samples against every process's embeddings
(Sec. 2.5), with optional GradCache micro-batches (Gao et al. 2021) that keep every negative in a fraction of the
activation memory.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.parallel import DistributedDataParallel as DDP

from ..distributed import Process, gather_with_grad
from ..models.clip import CLIP

_ALL_SDPA = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION,
             SDPBackend.MATH]


class Towers(nn.Module):
    """Both encoders behind one forward, so DistributedDataParallel sees (and synchronises) the whole graph."""

    def __init__(self, clip: CLIP, *, lock_image: bool = False):
        super().__init__()
        self.clip = clip
        self.lock_image = lock_image

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # A locked (frozen) image tower needs no graph: its embeddings are constants of the loss (LiT).
        with torch.no_grad() if self.lock_image else contextlib.nullcontext():
            image_emb = self.clip.encode_image(images)
        return image_emb, self.clip.encode_text(tokens)


def forward_context(autocast: torch.autocast, device: torch.device) -> contextlib.ExitStack:
    """The run's autocast and the attention kernels its forward passes use."""
    stack = contextlib.ExitStack()
    stack.enter_context(autocast)
    # On CPU the math SDPA backend trains at least as fast as the flash kernel at these short sequence lengths, and
    # faster in bf16; on GPU torch picks its fused kernels.
    stack.enter_context(sdpa_kernel([SDPBackend.MATH] if device.type == "cpu" else _ALL_SDPA))
    return stack


def _sharded_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor, loss_fn: Callable,
                  process: Process) -> torch.Tensor:
    image_emb, text_emb = F.normalize(image_emb.float(), dim=-1), F.normalize(text_emb.float(), dim=-1)
    # The explicit gather: every process's embeddings, with gradients, so the whole global batch serves as
    # negatives; this process computes the loss of its own rows only (Sec. 2.5: sharded similarity).
    all_image_emb, all_text_emb = gather_with_grad(image_emb, process), gather_with_grad(text_emb, process)
    return loss_fn(image_emb, text_emb, all_image_emb, all_text_emb, logit_scale,
                   offset=process.rank * image_emb.shape[0])


def contrastive_backward(towers: nn.Module, logit_scale: nn.Parameter, images: torch.Tensor, tokens: torch.Tensor, *,
                         loss_fn: Callable, process: Process, micro_batches: int,
                         context: Callable[[], contextlib.AbstractContextManager],
                         scale_loss: Callable[[torch.Tensor], torch.Tensor] = lambda loss: loss) -> torch.Tensor:
    """Forward and backward of one step on this process's batch; returns its (detached) loss.

    With micro_batches = K > 1 (the GradCache idea, Gao et al. 2021): embed all K micro-batches without a graph,
    compute the loss over the whole batch on those cached embeddings and its gradient with respect to them, then
    re-forward each micro-batch with a graph and back-propagate the cached gradient. Every negative of the full
    batch is kept and the update equals one pass over the full batch; activation memory is that of one micro-batch.
    (ResNet BatchNorm statistics are per micro-batch, as they would be per process.) `scale_loss` is the fp16
    gradient scaler's multiplication; the cached gradients carry the scale into the re-forward.
    """
    if micro_batches == 1:
        with context():
            image_emb, text_emb = towers(images, tokens)
        loss = _sharded_loss(image_emb, text_emb, logit_scale, loss_fn, process)
        scale_loss(loss).backward()
        return loss.detach()
    chunks = list(zip(images.chunk(micro_batches), tokens.chunk(micro_batches)))
    with torch.no_grad(), context():
        cached = [towers(x, t) for x, t in chunks]
    image_emb = torch.cat([c[0] for c in cached]).float().requires_grad_()
    text_emb = torch.cat([c[1] for c in cached]).float().requires_grad_()
    scale = logit_scale.detach().requires_grad_()
    loss = _sharded_loss(image_emb, text_emb, scale, loss_fn, process)
    scale_loss(loss).backward()
    image_grads = image_emb.grad.split([len(c[0]) for c in cached])
    text_grads = text_emb.grad.split([len(c[1]) for c in cached])
    for i, (x, t) in enumerate(chunks):
        last = i == len(chunks) - 1
        # DDP synchronises gradients once, on the last micro-batch; the others accumulate locally.
        sync = contextlib.nullcontext() if last or not isinstance(towers, DDP) else towers.no_sync()
        with sync:
            with context():
                image_part, text_part = towers(x, t)
            surrogate = (image_part.float() * image_grads[i]).sum() + (text_part.float() * text_grads[i]).sum()
            if last:  # the temperature's gradient joins the synchronised backward, so DDP averages it too
                surrogate = surrogate + logit_scale * scale.grad
            surrogate.backward()
    return loss.detach()
