"""Kronecker-factored meta-optimizers (KFO).

A KFO transform preconditions each gradient with small learned Kronecker factors before the
inner-loop step, so MAML can take large, well-conditioned steps where a fixed learning rate
cannot (Arnold, Iqbal & Sha, "When MAML Can Adapt Fast and How to Assist When It Cannot",
AISTATS 2021).

Factor shapes, by the parameter's shape:

| parameter                       | gradient viewed as | update   | factors                      |
|---------------------------------|--------------------|----------|------------------------------|
| bias (n,)                       | (n, 1)             | L g      | L: n x n                     |
| Linear weight (out, in)         | (out, in)          | L G R    | L: out x out, R: in x in     |
| Conv2d weight (out, in, kh, kw) | (out, in, kh*kw)   | L G[o] R | L: in x in, R: kh*kw x kh*kw |

A convolution's L and R are shared over its output channels o.

Every factor starts at the identity, so the first update equals plain MAML's.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import torch
from torch import nn

from .transforms import TRANSFORMS, ParameterSelection, TransformFactory

__all__ = ["KroneckerLinearMap", "KroneckerMLPMap", "KroneckerTransform", "kronecker_dims"]


def kronecker_dims(name: str, shape: torch.Size) -> Tuple[int, int]:
    """Returns the (left, right) factor sizes for a parameter, or raises a clear ValueError.

    A right size of 1 means no right factor is used (biases).

    Example:
        >>> kronecker_dims("conv.weight", torch.Size([64, 32, 3, 3]))
        (32, 9)
    """
    if len(shape) == 1:
        return shape[0], 1
    if len(shape) == 2:
        return shape[0], shape[1]
    if len(shape) == 4:
        return shape[1], shape[2] * shape[3]
    raise ValueError(
        f"KroneckerTransform cannot factor parameter '{name}' of shape {tuple(shape)}: it "
        f"handles 1-D (bias), 2-D (Linear weight) and 4-D (Conv2d weight) parameters. Leave it "
        f"out with KroneckerTransform(params=...) so it takes the plain gradient step."
    )


class _KroneckerFactor(nn.Module):
    """One square factor, stored as M; the factor is M, or MᵀM when psd (always PSD)."""

    def __init__(self, size: int, psd: bool):
        super().__init__()
        self.psd = psd
        self.weight = nn.Parameter(torch.eye(size))

    def matrix(self) -> torch.Tensor:
        return self.weight.t() @ self.weight if self.psd else self.weight


class _KroneckerLayer(nn.Module):
    """X -> L X R for X of shape (..., n, m), with R omitted when m == 1."""

    def __init__(self, n: int, m: int, psd: bool):
        super().__init__()
        self.left = _KroneckerFactor(n, psd)
        self.right = _KroneckerFactor(m, psd) if m > 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.left.matrix() @ x
        if self.right is not None:
            x = x @ self.right.matrix()
        return x


class _ReshapedMap(nn.Module):
    """Views a gradient as (..., n, m), applies the map, and restores the parameter's shape."""

    map: nn.Module  # set by each subclass

    def __init__(self, shape: torch.Size, n: int, m: int):
        super().__init__()
        self.shape = tuple(shape)
        self.view = (-1, n, m) if len(shape) == 4 else (n, m)

    def forward(self, grad: torch.Tensor) -> torch.Tensor:
        return self.map(grad.reshape(self.view)).reshape(self.shape)


class KroneckerLinearMap(_ReshapedMap):
    """The linear KFO for one parameter: update = L G R (see the module docstring for shapes).

    Called on a gradient G of the parameter's shape, it returns the update, same shape. The
    factors start at the identity, so the first update is G itself (Arnold et al. 2021).

    Arguments:
        shape: the parameter's shape: 1-D (bias), 2-D (Linear weight) or 4-D (Conv2d weight).
        name: the parameter's name, for error messages.
        psd: store each factor as M and use MᵀM, so it stays positive semi-definite.

    Raises:
        ValueError: any other number of dimensions (`kronecker_dims`).

    Example:
        >>> kfo = KroneckerLinearMap(torch.Size([8, 3, 3, 3]), "conv.weight")
        >>> [tuple(p.shape) for p in kfo.parameters()]   # L: in x in, R: kh*kw x kh*kw
        [(3, 3), (9, 9)]
        >>> grad = torch.randn(8, 3, 3, 3)
        >>> torch.equal(kfo(grad), grad)
        True
    """

    def __init__(self, shape: torch.Size, name: str = "<unnamed>", psd: bool = False):
        n, m = kronecker_dims(name, shape)
        super().__init__(shape, n, m)
        self.map = _KroneckerLayer(n, m, psd)


class _ResidualKroneckerMLP(nn.Module):
    def __init__(self, n: int, m: int, hidden_layers: int, psd: bool, activation: nn.Module):
        super().__init__()
        self.linear = _KroneckerLayer(n, m, psd)
        self.layers = nn.ModuleList(_KroneckerLayer(n, m, psd) for _ in range(hidden_layers + 1))
        self.activation = activation
        # Zero gate: the non-linear branch is off at the start, so the transform is exactly the
        # identity there (ReZero, Bachlechner et al. 2020) yet still gets a meta-gradient.
        self.gate = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for layer in self.layers[:-1]:
            h = self.activation(layer(h))
        return self.linear(x) + self.gate * self.layers[-1](h)


class KroneckerMLPMap(_ReshapedMap):
    """The non-linear KFO for one parameter: a Kronecker-factored MLP on the gradient.

    update = L G R + gate * K_out(σ(K_h(... σ(K_1 G)))), where each K is a Kronecker-factored
    layer X -> A X B started at the identity, σ is the activation and `gate` starts at 0, so
    the map starts as the identity and the first update equals MAML's.

    Called on a gradient G of the parameter's shape, it returns the update, same shape.

    Arguments:
        shape: the parameter's shape: 1-D, 2-D or 4-D, as for `KroneckerLinearMap`.
        name: the parameter's name, for error messages.
        hidden_layers: number of hidden Kronecker layers (the paper typically uses 2).
        psd: use MᵀM factors.
        activation: the non-linearity (default ReLU).

    Raises:
        ValueError: a parameter of any other number of dimensions (`kronecker_dims`).

    Example:
        >>> mlp = KroneckerMLPMap(torch.Size([4, 3]), "fc.weight", hidden_layers=1)
        >>> grad = torch.randn(4, 3)
        >>> mlp(grad).shape, torch.equal(mlp(grad), grad)   # the gate starts at 0
        (torch.Size([4, 3]), True)
    """

    def __init__(self, shape: torch.Size, name: str = "<unnamed>", hidden_layers: int = 2,
                 psd: bool = False, activation: nn.Module | None = None):
        n, m = kronecker_dims(name, shape)
        super().__init__(shape, n, m)
        self.map = _ResidualKroneckerMLP(n, m, hidden_layers, psd, activation or nn.ReLU())


class KroneckerTransform(TransformFactory):
    """Kronecker-factored meta-optimizer: one learned gradient preconditioner per parameter.

    Pass it as `GBML(model, transform=KroneckerTransform(...))` to get Meta-KFO
    (Arnold, Iqbal & Sha, AISTATS 2021). The factors are meta-parameters: they receive
    meta-gradients through the inner-loop update and start at the identity, so the first
    meta-iteration behaves exactly like MAML.

    Arguments:
        params: which parameters get a transform: `None` (all), a list of names, or a
            predicate `name -> bool`. Others take the plain gradient step.
        nonlinear: use the Kronecker-factored MLP (`KroneckerMLPMap`) instead of L G R.
        hidden_layers: hidden layers of the non-linear variant.
        psd: parameterize every factor as MᵀM so it stays positive semi-definite.

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(),
        ...                             torch.nn.Linear(8, 2))
        >>> kfo = KroneckerTransform(params=["2.weight", "2.bias"], psd=True)
        >>> import gbml_ext
        >>> learner = gbml_ext.GBML(model, transform=kfo, lr=0.1)
        >>> sorted(p.shape[0] for p in learner.compute_update.parameters())
        [2, 2, 8]
    """

    def __init__(self, params: ParameterSelection = None, nonlinear: bool = False,
                 hidden_layers: int = 2, psd: bool = False):
        super().__init__(params)
        self.nonlinear = nonlinear
        self.hidden_layers = hidden_layers
        self.psd = psd

    def check_names(self, module: nn.Module) -> None:
        """Raises a `ValueError` if `module` has no parameters to precondition, or as
        `TransformFactory.check_names` does for the names `params` selects.

        Example:
            >>> KroneckerTransform().check_names(torch.nn.ReLU())  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            ValueError: KroneckerTransform got a model with no parameters (ReLU), so ...
        """
        if next(iter(module.parameters()), None) is None:
            raise ValueError(
                f"KroneckerTransform got a model with no parameters ({type(module).__name__}), "
                f"so it has no gradient to precondition. Build it for the model whose weights "
                f"adapt, e.g. GBML(nn.Linear(4, 2), transform=KroneckerTransform())."
            )
        super().check_names(module)

    def precision_warning(self, precision: str) -> Optional[str]:
        if precision != "bf16":
            return None
        return ("precision = 'bf16' with a Kronecker transform diverged on the synthetic tasks "
                "(docs/performance.md); prefer precision = 'fp32' for Meta-KFO.")

    def build(self, name: str, param: torch.Tensor) -> nn.Module:
        if self.nonlinear:
            return KroneckerMLPMap(param.shape, name, self.hidden_layers, self.psd)
        return KroneckerLinearMap(param.shape, name, self.psd)


def _from_config(config: Any, nonlinear: bool) -> KroneckerTransform:
    return KroneckerTransform(params=config.transform_params or None, nonlinear=nonlinear,
                              hidden_layers=config.transform_hidden_layers,
                              psd=config.transform_psd)


TRANSFORMS.register("kronecker", lambda config: _from_config(config, False),
                    doc="Meta-KFO's Kronecker-factored linear map (Arnold et al. 2021)")
TRANSFORMS.register("kronecker-mlp", lambda config: _from_config(config, True),
                    doc="Meta-KFO's Kronecker-factored MLP")
