"""The standard 4-layer CNNs of the few-shot literature, built from learn2learn's ConvBase."""
from __future__ import annotations

from typing import Optional

import learn2learn as l2l
import torch
from torch import nn

__all__ = ["CNN4", "cifarfs_cnn4", "mini_imagenet_cnn4", "omniglot_cnn4"]


class CNN4(nn.Module):
    """Conv(3x3) → BatchNorm → ReLU (→ 2x2 max-pool) blocks, then a Linear classifier.

    Without max-pooling each conv has stride 2. Batch-norm always uses the current batch's
    statistics and keeps no running averages ("transductive", as in MAML's reference code and
    learn2learn's examples): that keeps the model a pure function of its parameters, which the
    batched meta-batch path needs.

    `features` is the body and `classifier` the head, the split ANIL uses.

    Arguments:
        ways: number of output classes.
        in_channels: image channels.
        hidden: filters per conv layer.
        layers: number of conv blocks.
        max_pool: max-pool after each block (else strided convs).
        max_pool_factor: learn2learn's ConvBlock knob: pooling window (with max_pool) or conv
            stride (without) is int(2 * max_pool_factor); 1.0 gives 2x2 pooling or stride 2,
            0.5 gives stride 1 (the KFO code's CIFAR-FS network), 2 gives 4x4 pooling.
        pool: "flatten" the last feature map, or "mean" (global average pooling).
        image_size: input height = width, to size the classifier when flattening.

    Example:
        >>> net = CNN4(ways=5, in_channels=1, hidden=64, max_pool=False, pool="mean")
        >>> net(torch.randn(10, 1, 28, 28)).shape
        torch.Size([10, 5])
    """

    def __init__(self, ways: int, in_channels: int = 3, hidden: int = 32, layers: int = 4,
                 max_pool: bool = True, pool: str = "flatten", image_size: int = 84,
                 max_pool_factor: float = 1.0):
        super().__init__()
        if pool not in ("flatten", "mean"):
            raise ValueError(f"CNN4 pool must be 'flatten' or 'mean', got {pool!r}.")
        body = l2l.vision.models.ConvBase(hidden=hidden, channels=in_channels, max_pool=max_pool,
                                          layers=layers, max_pool_factor=max_pool_factor)
        for module in body.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.track_running_stats = False
                module.running_mean = module.running_var = module.num_batches_tracked = None
        self.features = nn.Sequential(body, _GlobalMean() if pool == "mean" else nn.Flatten())
        with torch.no_grad():
            n_features = self.features(torch.zeros(2, in_channels, image_size, image_size)).shape[1]
        self.classifier = nn.Linear(n_features, ways)
        nn.init.xavier_uniform_(self.classifier.weight)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class _GlobalMean(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


def omniglot_cnn4(ways: int, hidden: int = 64, layers: int = 4,
                  max_pool_factor: float = 1.0) -> CNN4:
    """Omniglot CNN (Finn et al. 2017): 28×28×1 inputs, 64 filters, stride-2 convs, mean pool.

    Arguments:
        ways: number of output classes.
        hidden: filters per conv layer.
        layers: number of conv blocks.
        max_pool_factor: conv stride int(2 * max_pool_factor) (`CNN4`).

    Returns:
        a `CNN4` mapping images (batch, 1, 28, 28) to logits (batch, ways).

    Example:
        >>> net = omniglot_cnn4(ways=5, hidden=4)
        >>> net(torch.randn(2, 1, 28, 28)).shape
        torch.Size([2, 5])
    """
    return CNN4(ways, in_channels=1, hidden=hidden, layers=layers, max_pool=False, pool="mean",
                image_size=28, max_pool_factor=max_pool_factor)


def mini_imagenet_cnn4(ways: int, hidden: int = 32, layers: int = 4,
                       max_pool_factor: Optional[float] = None) -> CNN4:
    """mini-ImageNet CNN (Ravi & Larochelle 2017; Finn et al. 2017): 84×84×3, 32 filters,
    max-pooling, flattened features. As in learn2learn's CNN4, the pooling window defaults to
    `4 // layers` halvings (2×2 with 4 layers: 32·5·5 features; 4×4 with 2 layers: 32·5·5).

    Arguments:
        ways: number of output classes.
        hidden: filters per conv layer.
        layers: number of conv blocks.
        max_pool_factor: pooling window int(2 * max_pool_factor); None: `4 // layers`.

    Returns:
        a `CNN4` mapping images (batch, 3, 84, 84) to logits (batch, ways).

    Example:
        >>> net = mini_imagenet_cnn4(ways=5, hidden=4)
        >>> net(torch.randn(2, 3, 84, 84)).shape, net.classifier.in_features   # 4·5·5
        (torch.Size([2, 5]), 100)
    """
    factor = 4 // layers if max_pool_factor is None else max_pool_factor
    return CNN4(ways, in_channels=3, hidden=hidden, layers=layers, max_pool=True, pool="flatten",
                image_size=84, max_pool_factor=factor)


def cifarfs_cnn4(ways: int, hidden: int = 32, layers: int = 4,
                 max_pool_factor: float = 1.0) -> CNN4:
    """CIFAR-FS CNN: 32×32×3, 32 filters, no max-pooling, global average pooling. The default
    strides by 2; the KFO code (Arnold et al. 2021) uses stride 1 (`max_pool_factor=0.5`).

    Arguments:
        ways: number of output classes.
        hidden: filters per conv layer.
        layers: number of conv blocks.
        max_pool_factor: conv stride int(2 * max_pool_factor) (`CNN4`).

    Returns:
        a `CNN4` mapping images (batch, 3, 32, 32) to logits (batch, ways).

    Example:
        >>> net = cifarfs_cnn4(ways=5, hidden=4, max_pool_factor=0.5)
        >>> net(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 5])
    """
    return CNN4(ways, in_channels=3, hidden=hidden, layers=layers, max_pool=False, pool="mean",
                image_size=32, max_pool_factor=max_pool_factor)
