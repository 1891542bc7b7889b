"""The paper's training hyperparameters, by architecture (Radford et al. 2021, Appendix F, Tables 18-20).

Common to every model (Table 18): batch 32,768; weight decay 0.2; 2,000 warm-up iterations of a cosine schedule;
Adam beta1 0.9, beta2 0.999 and eps 1e-8 for the ResNets, beta2 0.98 and eps 1e-6 for the ViTs. Peak learning rates
(Tables 19-20): RN50, RN101, RN50x4 5e-4; RN50x16 4e-4; RN50x64 3.6e-4; ViT-B/32, ViT-B/16 5e-4; ViT-L/14 4e-4;
ViT-L/14@336px 2e-5 (that model is ViT-L/14 trained one more epoch at 336 px, Sec. 2.5, hence its small rate).
(RN50, RN50x16, RN50x64 and ViT-L/14 as also quoted in the project's design brief.)

Deliberately not set: the number of steps (the paper's 32 epochs of 400M pairs are 390,625 steps at this batch; the
length of a run depends on your data) and memory/speed settings (mixed precision, gradient checkpointing), which
change how a step is computed, not what it computes.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from ..models.configs import get_config, registry_name

RECIPES = ("paper",)  # names accepted by `--recipe`

_COMMON = {"batch_size": 32_768, "weight_decay": 0.2, "warmup_steps": 2_000, "beta1": 0.9}
_RESNET = {"beta2": 0.999, "eps": 1e-8}
_VIT = {"beta2": 0.98, "eps": 1e-6}
PAPER_LR = {  # peak learning rate per architecture (Tables 19 and 20)
    "RN50": 5e-4, "RN101": 5e-4, "RN50x4": 5e-4, "RN50x16": 4e-4, "RN50x64": 3.6e-4,
    "ViT-B-32": 5e-4, "ViT-B-16": 5e-4, "ViT-L-14": 4e-4, "ViT-L-14-336": 2e-5,
}


def paper_recipe(model_name: str) -> dict[str, Any]:
    """TrainConfig overrides with the paper's hyperparameters for one of its nine models (OpenAI spellings such
    as "ViT-B/32" accepted)."""
    name = registry_name(get_config(model_name))  # canonical registry spelling; unknown names raise clearly
    if name not in PAPER_LR:
        raise ConfigError(f"--recipe paper: the paper trained no {model_name}; its recipes exist for "
                          f"{', '.join(PAPER_LR)} (set --lr, --beta2, --eps, ... yourself for other models)")
    family = _VIT if get_config(name).vision.kind == "vit" else _RESNET
    return {**_COMMON, **family, "lr": PAPER_LR[name]}


def recipe(name: str, model_name: str) -> dict[str, Any]:
    """The overrides of recipe `name` for `model_name`."""
    if name != "paper":
        raise ConfigError(f"unknown recipe {name!r}; known recipes: {', '.join(RECIPES)}")
    return paper_recipe(model_name)
