"""Which path runs a meta-learner: the per-task engine, the fast (batched) path, or the
compiled path (opt-in only: compiling costs seconds to minutes; see `gbml_ext.fast.compiled`).

The fast path removes per-task launch and Python overhead, which dominates on a GPU and for
small models. On a CPU, convolutional models run slower batched: vmap turns each convolution
into a grouped one, which runs at about half the dense throughput. Measured on 2 CPU threads
(docs/performance.md, 2026-11-24): batched 4.2x the per-task speed on the synthetic linear
model, but 0.5-0.8x on the Omniglot and mini-ImageNet CNN4s, and 0.4-0.6x for evaluating them.
So on a CPU "auto" takes the batched path only for models without convolutions.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .compiled import check_compiled
from .support import check_supported, unsupported_reason

__all__ = ["PATHS", "choose_path", "has_convolutions"]

PATHS = ("auto", "per-task", "batched", "compiled")
_CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def has_convolutions(module: nn.Module) -> bool:
    """Whether any submodule is a convolution (what runs slower batched on a CPU).

    Arguments:
        module: a model or a meta-learner wrapping one.

    Example:
        >>> import gbml_ext
        >>> has_convolutions(gbml_ext.nn.omniglot_cnn4(ways=5, hidden=4))
        True
        >>> has_convolutions(gbml_ext.MAML(torch.nn.Linear(8, 1)))
        False
    """
    return any(isinstance(m, _CONVOLUTIONS) for m in module.modules())


def choose_path(requested: str, algorithm: nn.Module,
                device: Optional[torch.device | str] = None, training: bool = False) -> str:
    """Resolves a requested path to "per-task", "batched" or "compiled".

    "auto" is "batched" when the batched path supports the algorithm (MAML, FOMAML, Meta-SGD,
    Meta-KFO with or without adapt_transform, ANIL; not Reptile, iMAML, learn2learn's MAML)
    and the device is CUDA or the model has no convolutions. "compiled" runs every learner
    with a batched form as one compiled graph, in training and evaluation.

    Arguments:
        requested: "auto", "per-task", "batched" or "compiled".
        algorithm: the meta-learner.
        device: where it runs; None: the device of its first parameter.
        training: resolve the path of meta-training steps (else of evaluation; the same
            path today).

    Raises:
        ValueError: an unknown `requested`.
        BatchedPathUnsupported: "batched" or "compiled" for an algorithm that path cannot run
            (`CompiledPathUnsupported` is a subclass).

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
    if requested == "compiled":
        check_compiled(algorithm)
        return requested
    if unsupported_reason(algorithm) is not None:
        return "per-task"
    if device is None:
        parameters = list(algorithm.parameters())
        device = parameters[0].device if parameters else torch.device("cpu")
    on_gpu = torch.device(device).type == "cuda"
    return "batched" if on_gpu or not has_convolutions(algorithm) else "per-task"
