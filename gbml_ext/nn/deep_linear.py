"""Deep-linear heads ("LinNet"): extra linear layers that add no representational capacity.

A product of linear maps is still one linear map, so replacing a model's last Linear with a
stack of Linear layers leaves the function class unchanged but changes gradient descent's
geometry: one inner-loop step on the factors acts like a preconditioned step on their
product. Arnold, Iqbal & Sha (AISTATS 2021) show this lets MAML adapt where the shallow model
cannot.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, cast

import torch
from torch import nn

__all__ = ["LINNET_INITS", "DeepLinear", "linnet", "linnet_hidden_parameters"]

LINNET_INITS = ("default", "orthogonal", "identity", "scaled")


class DeepLinear(nn.Module):
    """A stack of `depth` Linear layers with no non-linearity between them.

    Arguments:
        in_features: input size; inputs are (batch, in_features).
        out_features: output size; outputs are (batch, out_features).
        depth: number of Linear layers (1 is a plain Linear).
        width: hidden size of the inner layers (default: `in_features`).
        bias: give every layer a bias.
        init: how the factors start, given the plain Linear `like` they stand in for:
            - "default": PyTorch's default init of each layer;
            - "orthogonal": orthogonal weights, zero biases;
            - "identity": hidden layers are isometries (the identity when square) and the last
              layer is `like`, so the initial product equals the plain head exactly;
            - "scaled": default init, every factor rescaled by the same amount so that the
              product's Frobenius norm equals that of `like`.
        like: the plain `nn.Linear` (out_features × in_features) the stack replaces; needed
            by "identity" and "scaled" (default: a freshly initialised one).

    Example:
        >>> head = DeepLinear(64, 5, depth=3)
        >>> x = torch.randn(10, 64)
        >>> torch.allclose(head(x), head.collapse()(x), atol=1e-5)
        True
    """

    def __init__(self, in_features: int, out_features: int, depth: int = 2,
                 width: Optional[int] = None, bias: bool = True, init: str = "default",
                 like: Optional[nn.Linear] = None):
        super().__init__()
        if depth < 1:
            raise ValueError(f"DeepLinear needs depth >= 1, got {depth}.")
        if init not in LINNET_INITS:
            raise ValueError(f"DeepLinear init {init!r} is unknown; use one of {LINNET_INITS}.")
        width = width or in_features
        if init == "identity" and width < in_features:
            raise ValueError(f"init='identity' needs width >= in_features ({in_features}); "
                             f"got width {width}. Widen the head or use init='scaled'.")
        sizes = [in_features] + [width] * (depth - 1) + [out_features]
        # Consecutive pairs of sizes: one layer fewer than sizes, so the lengths differ by one.
        self.layers = nn.Sequential(*(nn.Linear(a, b, bias=bias)
                                      for a, b in zip(sizes, sizes[1:], strict=False)))
        self.in_features, self.out_features = in_features, out_features
        if init != "default":
            self._initialize(init, like or nn.Linear(in_features, out_features, bias=bias))

    def _linears(self) -> List[nn.Linear]:
        """The Linear layers, first (input side) to last."""
        return cast(List[nn.Linear], list(self.layers))

    @torch.no_grad()
    def _initialize(self, init: str, like: nn.Linear) -> None:
        layers = self._linears()
        if init == "orthogonal":
            for layer in layers:
                nn.init.orthogonal_(layer.weight)
        elif init == "identity":
            for layer in layers[:-1]:  # isometries: W^T W = I, so the product passes x through
                if layer.weight.shape[0] == layer.weight.shape[1]:
                    nn.init.eye_(layer.weight)
                else:
                    nn.init.orthogonal_(layer.weight)
            through = self._product(layers[:-1])  # (width, in) with orthonormal columns
            layers[-1].weight.copy_(like.weight @ through.T)
        elif init == "scaled":
            ratio = like.weight.norm() / self._product(layers).norm()
            for layer in layers:
                layer.weight.mul_(ratio ** (1 / len(layers)))
        for layer in layers:
            if layer.bias is not None:
                layer.bias.zero_()
        if init == "identity" and layers[-1].bias is not None and like.bias is not None:
            layers[-1].bias.copy_(like.bias)

    @staticmethod
    def _product(layers: Sequence[nn.Linear]) -> torch.Tensor:
        weight = layers[0].weight
        for layer in layers[1:]:
            weight = layer.weight @ weight
        return weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    @torch.no_grad()
    def collapse(self) -> nn.Linear:
        """Returns the single `nn.Linear` computing the same function: W = W_L⋯W_1,
        b = W_L⋯W_2 b_1 + ⋯ + b_L."""
        first, *rest = self._linears()
        weight = first.weight.clone()
        bias = first.bias.clone() if first.bias is not None else None
        for layer in rest:
            weight = layer.weight @ weight
            if bias is not None:
                bias = layer.weight @ bias + layer.bias
        linear = nn.Linear(self.in_features, self.out_features, bias=bias is not None)
        linear.weight.copy_(weight)
        if bias is not None:
            linear.bias.copy_(bias)
        return linear.to(weight.device)


def linnet(model: nn.Module, depth: int = 2, width: Optional[int] = None,
           attr: Optional[str] = None, init: str = "default") -> nn.Module:
    """Replaces `model`'s final `nn.Linear` with a `DeepLinear` of the same in/out sizes, in place.

    Arguments:
        model: the model; its last `nn.Linear` (in `named_modules()` order), or the one at the
            dotted path `attr`, is replaced.
        depth, width, init: as for `DeepLinear`; "identity" and "scaled" start from the
            replaced Linear's own weights.
        attr: dotted name of the Linear to replace (e.g. "classifier"); default the last one.

    Returns the same model, so `linnet(cnn4(5), depth=3)` reads naturally (a bare `nn.Linear`
    is returned as a new `DeepLinear`).

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(),
        ...                             torch.nn.Linear(16, 2))
        >>> type(linnet(model)[2]).__name__
        'DeepLinear'
    """
    if attr is None:
        linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ValueError(f"linnet: {type(model).__name__} has no nn.Linear to replace.")
        attr = linears[-1]
    if attr == "":  # the model is itself a Linear: the whole model becomes the deep head
        if not isinstance(model, nn.Linear):
            raise ValueError(f"linnet: attr='' names the model itself, a "
                             f"{type(model).__name__}, not an nn.Linear.")
        return DeepLinear(model.in_features, model.out_features, depth=depth, width=width,
                          bias=model.bias is not None, init=init,
                          like=model).to(model.weight.device)
    parent_name, _, child_name = attr.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, child_name, None)
    if not isinstance(old, nn.Linear):
        raise ValueError(f"linnet: '{attr}' is {type(old).__name__}, not an nn.Linear.")
    head = DeepLinear(old.in_features, old.out_features, depth=depth, width=width,
                      bias=old.bias is not None, init=init, like=old).to(old.weight.device)
    setattr(parent, child_name, head)
    return model


def linnet_hidden_parameters(model: nn.Module) -> List[nn.Parameter]:
    """The parameters of every layer but the last of `model`'s LinNet head (its last
    `DeepLinear`, as `linnet` puts it in): what `model.linnet_adapt_hidden = false` keeps out of
    the inner loop; [] for a model without one.

    Example:
        >>> model = linnet(torch.nn.Linear(4, 2), depth=3)
        >>> [tuple(p.shape) for p in linnet_hidden_parameters(model)]
        [(4, 4), (4,), (4, 4), (4,)]
    """
    heads = [m for m in model.modules() if isinstance(m, DeepLinear)]
    if not heads:
        return []
    return [p for layer in heads[-1].layers[:-1] for p in layer.parameters()]
