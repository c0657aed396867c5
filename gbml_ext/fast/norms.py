"""Batch-norm and layer-norm written out, for second derivatives under `vmap`.

torch's batching rule for the backward of `native_batch_norm` and `native_layer_norm` gives
wrong second derivatives when a `torch.func.grad` inside `vmap` is differentiated again, which
is MAML's meta-gradient on the compiled path: on a Linear → BatchNorm1d → Tanh → Linear model
the meta-gradient of the first layer was off by about 1e-3 in float64 (torch 2.14.1; the
functorch issue "layer_norm and batch_norm backward batching rule is incorrect"). Written as
means, variances and elementwise ops, both differentiate exactly to any order.
`ExactNorms` swaps them in for `F.batch_norm` on the batch's statistics and `F.layer_norm`
while it is active; torch.compile traces it, and inductor fuses the ops again.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

__all__ = ["ExactNorms", "batch_norm", "layer_norm"]


def batch_norm(input: torch.Tensor, running_mean: Optional[torch.Tensor],
               running_var: Optional[torch.Tensor], weight: Optional[torch.Tensor] = None,
               bias: Optional[torch.Tensor] = None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> torch.Tensor:
    """`F.batch_norm` on the batch's statistics (no running statistics), written out; any
    other call goes to `F.batch_norm` itself.

    Example:
        >>> x = torch.randn(8, 3, 5)
        >>> torch.allclose(batch_norm(x, None, None, training=True),
        ...                F.batch_norm(x, None, None, training=True), atol=1e-6)
        True
    """
    if not training or running_mean is not None or running_var is not None:
        return F.batch_norm(input, running_mean, running_var, weight, bias, training,
                            momentum, eps)
    dims = [0, *range(2, input.dim())]
    shape = [1, -1] + [1] * (input.dim() - 2)
    return _affine(_normalized(input, dims, eps), weight, bias, shape)


def layer_norm(input: torch.Tensor, normalized_shape: Sequence[int],
               weight: Optional[torch.Tensor] = None, bias: Optional[torch.Tensor] = None,
               eps: float = 1e-5) -> torch.Tensor:
    """`F.layer_norm`, written out.

    Example:
        >>> x = torch.randn(4, 6)
        >>> torch.allclose(layer_norm(x, (6,)), F.layer_norm(x, (6,)), atol=1e-6)
        True
    """
    dims = list(range(-len(tuple(normalized_shape)), 0))
    return _affine(_normalized(input, dims, eps), weight, bias, list(normalized_shape))


def _normalized(input: torch.Tensor, dims: List[int], eps: float) -> torch.Tensor:
    mean = input.mean(dim=dims, keepdim=True)
    var = input.var(dim=dims, correction=0, keepdim=True)
    return (input - mean) * torch.rsqrt(var + eps)


def _affine(x: torch.Tensor, weight: Optional[torch.Tensor], bias: Optional[torch.Tensor],
            shape: Sequence[int]) -> torch.Tensor:
    if weight is not None:
        x = x * weight.reshape(shape)
    if bias is not None:
        x = x + bias.reshape(shape)
    return x


_REPLACEMENTS: Dict[Callable, Callable] = {F.batch_norm: batch_norm, F.layer_norm: layer_norm}


class ExactNorms(TorchFunctionMode):
    """While active, `F.batch_norm` (batch statistics) and `F.layer_norm` (so BatchNorm and
    LayerNorm modules) run written out (`batch_norm`, `layer_norm`).

    Example:
        >>> norm = torch.nn.BatchNorm1d(3, track_running_stats=False)
        >>> x = torch.randn(8, 3)
        >>> with ExactNorms():
        ...     y = norm(x)
        >>> torch.allclose(y, norm(x), atol=1e-6)
        True
    """

    def __torch_function__(self, func: Callable, types: Tuple, args: Sequence[Any] = (),
                           kwargs: Optional[Dict[str, Any]] = None) -> Any:
        return _REPLACEMENTS.get(func, func)(*args, **(kwargs or {}))
