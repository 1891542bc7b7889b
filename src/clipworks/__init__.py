"""clipworks: CLIP (Radford et al., ICML 2021) — exact OpenAI-compatible models, training, evaluation."""

from .embedding import embed
from .evaluation.retrieval import recall_at_k
from .evaluation.zeroshot import zero_shot_classifier
from .io.checkpoints import load, save_checkpoint
from .io.interpolate import interpolate
from .io.pretrained import list_pretrained
from .models.clip import CLIP, create_model
from .models.configs import MODELS, CLIPConfig, TextConfig, VisionConfig, get_config, list_models
from .models.inference import optimize_for_inference
from .models.tokenizer import Tokenizer, decode, tokenize
from .models.transforms import image_transform

__all__ = ["CLIP", "CLIPConfig", "MODELS", "TextConfig", "Tokenizer", "VisionConfig", "create_model", "decode",
           "embed", "get_config", "image_transform", "interpolate", "list_models", "list_pretrained", "load",
           "optimize_for_inference", "recall_at_k", "save_checkpoint", "tokenize", "zero_shot_classifier"]
