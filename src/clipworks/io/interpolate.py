"""Weight-space interpolation of two CLIP models: WiSE-FT (Wortsman et al., "Robust fine-tuning of zero-shot models",
CVPR 2022). θ = (1 - α)·θ_A + α·θ_B, tensor by tensor, for two models of the same architecture: typically A the
zero-shot model and B its fine-tune, where a mixing coefficient α around 0.5 keeps most of the fine-tune's gain on its
task and most of the zero-shot model's robustness to distribution shift.

The formula is written as (1 - α)·a + α·b rather than torch.lerp's a + α·(b - a), so that α = 0 and α = 1 give back
A and B bit for bit. Integer buffers (ResNet BatchNorm's step counters) cannot be mixed: the nearer model's are kept
(A's for α ≤ 0.5).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import ConfigError
from ..models.clip import CLIP
from ..models.configs import registry_name
from .checkpoints import load_model, save_checkpoint


def interpolate(a: str | os.PathLike | CLIP, b: str | os.PathLike | CLIP, alpha: float = 0.5, *,
                out: str | os.PathLike | None = None) -> CLIP:
    """The model with weights (1 - alpha)·A + alpha·B (fp32, eval mode); saved as a clipworks checkpoint at `out`
    when given. A and B are models or anything `clipworks.load` reads (paths, pretrained names)."""
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"--alpha must be in [0, 1] (0 gives A, 1 gives B), got {alpha}")
    model_a = a if isinstance(a, CLIP) else load_model(a)
    model_b = b if isinstance(b, CLIP) else load_model(b)
    if model_a.config != model_b.config:
        name = lambda m: registry_name(m.config) or "a custom architecture"  # noqa: E731
        raise ConfigError(f"{_describe(a)} is {name(model_a)} but {_describe(b)} is {name(model_b)}"
                          f"{' (they differ in configuration)' if name(model_a) == name(model_b) else ''}; WiSE-FT "
                          "interpolates two models of the same architecture, e.g. a zero-shot model and its fine-tune")
    state_b = model_b.state_dict()
    mixed = {}
    for key, wa in model_a.state_dict().items():
        wb = state_b[key]
        if wa.is_floating_point():
            mixed[key] = (1.0 - alpha) * wa.float() + alpha * wb.float()
        else:
            mixed[key] = (wa if alpha <= 0.5 else wb).clone()
    with torch.device("meta"):  # shapes only: the mixed tensors become the parameters
        model = CLIP(model_a.config)
    model.load_state_dict(mixed, strict=True, assign=True)
    model.eval()
    if out is not None:
        save_checkpoint(out, model, metadata={"interpolated": {"a": _describe(a), "b": _describe(b),
                                                               "alpha": alpha}})
    return model


def _describe(model: str | os.PathLike | CLIP) -> str:
    return "a model object" if isinstance(model, CLIP) else str(Path(model)) if Path(model).exists() else str(model)
