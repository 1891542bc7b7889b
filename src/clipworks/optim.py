"""Optimizer and learning-rate schedule of the paper's recipe (Radford et al. 2021, Sec. 2.5 and Appendix F).

AdamW with decoupled weight decay on weight matrices only: gains, biases, embeddings' gains and the logit scale are not
decayed (1-D parameters and the scalar temperature). Cosine decay after a linear warm-up.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: decayed weights (ndim >= 2, except the temperature) and everything else, undecayed."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        # 1-D tensors are LayerNorm/BatchNorm gains and biases or embeddings-as-vectors (class_embedding).
        (no_decay if p.ndim < 2 or name == "logit_scale" else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def create_optimizer(model: nn.Module, *, lr: float, weight_decay: float, betas: tuple[float, float],
                     eps: float) -> torch.optim.AdamW:
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=betas, eps=eps)


def cosine_lr(step: int, *, base_lr: float, warmup_steps: int, total_steps: int, min_lr: float = 0.0) -> float:
    """Linear warm-up from base_lr / warmup_steps to base_lr, then cosine decay to min_lr at total_steps."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
