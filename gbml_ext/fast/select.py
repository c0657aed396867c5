"""Which path runs a meta-learner: the per-task engine or the fast (batched) path.

The fast path removes per-task launch and Python overhead, which dominates on a GPU and for
small models; on a CPU, large convolutional models run slower batched (grouped convolutions,
docs/performance.md), so "auto" keeps them on the per-task engine.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .support import check_supported, unsupported_reason

__all__ = ["AUTO_MAX_PARAMETERS", "PATHS", "choose_path"]

PATHS = ("auto", "per-task", "batched")

# Placeholder until measured on a quiet machine: on a CPU, "auto" takes the batched path for
# models with at most this many parameters (all meta-parameters, transforms included), where
# overhead, not arithmetic, bounds the per-task engine.
AUTO_MAX_PARAMETERS = 100_000


def choose_path(requested: str, algorithm: nn.Module,
                device: Optional[torch.device | str] = None) -> str:
    """Resolves a requested path to "per-task" or "batched".

    "auto" is "batched" when the batched path supports the algorithm (MAML, FOMAML, Meta-SGD,
    Meta-KFO with or without adapt_transform, ANIL; not Reptile, iMAML, learn2learn's MAML)
    and the device is CUDA or the algorithm has at most `AUTO_MAX_PARAMETERS` parameters.

    Arguments:
        requested: "auto", "per-task" or "batched".
        algorithm: the meta-learner.
        device: where it runs; None: the device of its first parameter.

    Raises:
        ValueError: an unknown `requested`.
        BatchedPathUnsupported: "batched" for an algorithm the batched path cannot run.

    Example:
        >>> import gbml_ext
        >>> choose_path("auto", gbml_ext.MAML(torch.nn.Linear(8, 1)), "cpu")
        'batched'
        >>> choose_path("auto", gbml_ext.Reptile(torch.nn.Linear(8, 1)), "cpu")
        'per-task'
    """
    if requested not in PATHS:
        raise ValueError(f"path {requested!r} is unknown; choose one of {', '.join(PATHS)}.")
    if requested == "per-task":
        return requested
    if requested == "batched":
        check_supported(algorithm)
        return requested
    if unsupported_reason(algorithm) is not None:
        return "per-task"
    parameters = list(algorithm.parameters())
    if device is None:
        device = parameters[0].device if parameters else torch.device("cpu")
    small = sum(p.numel() for p in parameters) <= AUTO_MAX_PARAMETERS
    return "batched" if torch.device(device).type == "cuda" or small else "per-task"
