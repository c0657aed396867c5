"""Models: deep-linear ("LinNet") heads and the standard few-shot CNN backbones."""
from .backbones import CNN4, cifarfs_cnn4, mini_imagenet_cnn4, omniglot_cnn4
from .deep_linear import DeepLinear, linnet

__all__ = ["DeepLinear", "linnet", "CNN4", "omniglot_cnn4", "mini_imagenet_cnn4", "cifarfs_cnn4"]
