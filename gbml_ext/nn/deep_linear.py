"""Deep-linear heads ("LinNet"): extra linear layers that add no representational capacity.

A product of linear maps is still one linear map, so replacing a model's last Linear with a
stack of Linear layers leaves the function class unchanged but changes gradient descent's
geometry: one inner-loop step on the factors acts like a preconditioned step on their
product. Arnold, Iqbal & Sha (AISTATS 2021) show this lets MAML adapt where the shallow model
cannot.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

__all__ = ["DeepLinear", "linnet"]


class DeepLinear(nn.Module):
    """A stack of `depth` Linear layers with no non-linearity between them.

    Arguments:
        in_features: input size; inputs are (batch, in_features).
        out_features: output size; outputs are (batch, out_features).
        depth: number of Linear layers (1 is a plain Linear).
        width: hidden size of the inner layers (default: `in_features`).
        bias: give every layer a bias.

    Example:
        >>> head = DeepLinear(64, 5, depth=3)
        >>> x = torch.randn(10, 64)
        >>> torch.allclose(head(x), head.collapse()(x), atol=1e-5)
        True
    """

    def __init__(self, in_features: int, out_features: int, depth: int = 2,
                 width: Optional[int] = None, bias: bool = True):
        super().__init__()
        if depth < 1:
            raise ValueError(f"DeepLinear needs depth >= 1, got {depth}.")
        width = width or in_features
        sizes = [in_features] + [width] * (depth - 1) + [out_features]
        self.layers = nn.Sequential(*(nn.Linear(a, b, bias=bias) for a, b in zip(sizes, sizes[1:])))
        self.in_features, self.out_features = in_features, out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    @torch.no_grad()
    def collapse(self) -> nn.Linear:
        """Returns the single `nn.Linear` computing the same function: W = W_L⋯W_1,
        b = W_L⋯W_2 b_1 + ⋯ + b_L."""
        first = self.layers[0]
        weight = first.weight.clone()
        bias = first.bias.clone() if first.bias is not None else None
        for layer in self.layers[1:]:
            weight = layer.weight @ weight
            if bias is not None:
                bias = layer.weight @ bias + layer.bias
        linear = nn.Linear(self.in_features, self.out_features, bias=bias is not None)
        linear.weight.copy_(weight)
        if bias is not None:
            linear.bias.copy_(bias)
        return linear.to(weight.device)


def linnet(model: nn.Module, depth: int = 2, width: Optional[int] = None,
           attr: Optional[str] = None) -> nn.Module:
    """Replaces `model`'s final `nn.Linear` with a `DeepLinear` of the same in/out sizes, in place.

    Arguments:
        model: the model; its last `nn.Linear` (in `named_modules()` order), or the one at the
            dotted path `attr`, is replaced.
        depth, width: as for `DeepLinear`.
        attr: dotted name of the Linear to replace (e.g. "classifier"); default the last one.

    Returns the same model, so `linnet(cnn4(5), depth=3)` reads naturally (a bare `nn.Linear`
    is returned as a new `DeepLinear`).

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
        >>> type(linnet(model)[2]).__name__
        'DeepLinear'
    """
    if attr is None:
        linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ValueError(f"linnet: {type(model).__name__} has no nn.Linear to replace.")
        attr = linears[-1]
    if attr == "":  # the model is itself a Linear: the whole model becomes the deep head
        return DeepLinear(model.in_features, model.out_features, depth=depth, width=width,
                          bias=model.bias is not None).to(model.weight.device)
    parent_name, _, child_name = attr.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, child_name, None)
    if not isinstance(old, nn.Linear):
        raise ValueError(f"linnet: '{attr}' is {type(old).__name__}, not an nn.Linear.")
    head = DeepLinear(old.in_features, old.out_features, depth=depth, width=width,
                      bias=old.bias is not None).to(old.weight.device)
    setattr(parent, child_name, head)
    return model
