"""The arithmetic precision of a run: the runner's `precision` key.

    fp32  torch's defaults, untouched: a run with `precision = "fp32"` is bit-identical to one
          without the key. (On CUDA, torch's default already lets cuDNN convolutions use TF32
          tensor cores, `torch.backends.cudnn.allow_tf32 = True`; matmuls stay full fp32.)
    tf32  on CUDA, TF32 tensor cores for matmuls and cuDNN convolutions
          (`torch.backends.cuda.matmul.allow_tf32`, `torch.backends.cudnn.allow_tf32`), set for
          the run and put back afterwards. On a CPU it changes nothing.
    bf16  `torch.autocast(device, dtype=torch.bfloat16)` around the run's forward passes, in the
          inner loop (support losses) and the outer loop (query losses), in training and in
          evaluation: matmuls and convolutions run in bfloat16, losses and reductions in fp32,
          and the parameters, their gradients and the optimizer stay fp32.

Under bf16 the inner-loop gradients are taken inside the autocast region too (they are part of
the forward pass of the meta-gradient, whose graph MAML differentiates again); autocast leaves
ops outside its lists, such as the backward kernels, in their inputs' dtype.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch

__all__ = ["PRECISIONS", "precision_context"]

PRECISIONS = ("fp32", "tf32", "bf16")


@contextlib.contextmanager
def precision_context(precision: str, device: torch.device | str) -> Iterator[None]:
    """Runs the block at `precision` ("fp32", "tf32" or "bf16"; see the module docstring) on
    `device`, and restores torch's settings afterwards.

    Raises:
        ValueError: an unknown precision.

    Example:
        >>> with precision_context("bf16", "cpu"):
        ...     (torch.ones(2, 2) @ torch.ones(2, 2)).dtype
        torch.bfloat16
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is unknown; choose one of "
                         f"{', '.join(PRECISIONS)}.")
    device = torch.device(device)
    if precision == "bf16":
        with torch.autocast(device.type, dtype=torch.bfloat16):
            yield
        return
    if precision == "fp32" or device.type != "cuda":
        yield
        return
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    previous = (matmul.allow_tf32, cudnn.allow_tf32)
    matmul.allow_tf32 = cudnn.allow_tf32 = True
    try:
        yield
    finally:
        matmul.allow_tf32, cudnn.allow_tf32 = previous
