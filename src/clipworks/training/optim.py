"""Optimizer and learning-rate schedule of the paper's recipe (Radford et al. 2021, Sec. 2.5 and Appendix F).

AdamW with decoupled weight decay on weight matrices only: gains, biases, embeddings' gains and the logit scale are not
decayed (1-D parameters and the scalar temperature). Cosine decay after a linear warm-up.

Per-tower learning rates (for fine-tuning): every group carries an `lr_scale`, the multiplier of the scheduled
learning rate for its tower (image: parameters under `visual.`; text: the rest except the temperature, which keeps 1).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def param_groups(model: nn.Module, weight_decay: float, *, lr_image_scale: float = 1.0,
                 lr_text_scale: float = 1.0) -> list[dict]:
    """AdamW groups by (tower, decay): decayed weights (ndim >= 2, except the temperature) and everything else,
    undecayed; each group's `lr_scale` multiplies the scheduled learning rate. Frozen parameters are left out."""
    scales = {"image": lr_image_scale, "text": lr_text_scale, "logit_scale": 1.0}
    groups: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        tower = "image" if name.startswith("visual.") else "logit_scale" if name == "logit_scale" else "text"
        # 1-D tensors are LayerNorm/BatchNorm gains and biases or embeddings-as-vectors (class_embedding).
        decay = p.ndim >= 2 and name != "logit_scale"
        groups.setdefault((tower, decay), []).append(p)
    return [{"params": params, "weight_decay": weight_decay if decay else 0.0, "lr_scale": scales[tower],
             "name": f"{tower}{'' if decay else '_no_decay'}"}
            for (tower, decay), params in groups.items()]


def create_optimizer(model: nn.Module, *, lr: float, weight_decay: float, betas: tuple[float, float],
                     eps: float, lr_image_scale: float = 1.0, lr_text_scale: float = 1.0) -> torch.optim.AdamW:
    """AdamW over `param_groups`, fused (the update in one pass over each parameter instead of foreach's dozen passes)
    when every parameter is on a CPU or CUDA device."""
    groups = param_groups(model, weight_decay, lr_image_scale=lr_image_scale, lr_text_scale=lr_text_scale)
    fused = all(p.device.type in ("cpu", "cuda") for group in groups for p in group["params"])
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=fused)


def cosine_lr(step: int, *, base_lr: float, warmup_steps: int, total_steps: int, min_lr: float = 0.0) -> float:
    """Linear warm-up from base_lr / warmup_steps to base_lr, then cosine decay to min_lr at total_steps."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Each group's learning rate = the schedule's `lr` times the group's tower scale."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
