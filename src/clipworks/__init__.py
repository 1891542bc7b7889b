"""clipworks: CLIP (Radford et al., ICML 2021) — exact OpenAI-compatible models, training, evaluation."""

from .checkpoints import load, save_checkpoint
from .configs import MODELS, CLIPConfig, TextConfig, VisionConfig, get_config, list_models
from .inference import optimize_for_inference
from .model import CLIP, create_model
from .retrieval import recall_at_k
from .tokenizer import Tokenizer, decode, tokenize
from .transforms import image_transform
from .zeroshot import zero_shot_classifier

__all__ = ["CLIP", "CLIPConfig", "MODELS", "TextConfig", "Tokenizer", "VisionConfig", "create_model", "decode",
           "get_config", "image_transform", "list_models", "load", "optimize_for_inference", "recall_at_k",
           "save_checkpoint", "tokenize", "zero_shot_classifier"]
