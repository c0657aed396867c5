"""Models: deep-linear ("LinNet") heads and the standard few-shot CNN backbones; `MODELS`,
those a config names (`model.name`)."""
from .backbones import CNN4, cifarfs_cnn4, mini_imagenet_cnn4, omniglot_cnn4
from .deep_linear import DeepLinear, linnet
from .registry import MODELS, ModelSpec, TaskShape

__all__ = ["CNN4", "MODELS", "DeepLinear", "ModelSpec", "TaskShape", "cifarfs_cnn4", "linnet",
           "mini_imagenet_cnn4", "omniglot_cnn4"]
