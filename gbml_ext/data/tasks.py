"""The one shape every task source produces: a few-shot task split into support and query."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

__all__ = ["Task", "TaskSource"]


@dataclass
class Task:
    """One few-shot task.

    Arguments:
        support_x: (n_support, *input_shape) inputs the learner adapts on.
        support_y: (n_support,) class indices, or (n_support, out) regression targets.
        query_x: (n_query, *input_shape) inputs the adapted learner is scored on.
        query_y: (n_query,) or (n_query, out) targets.

    Example:
        >>> task = Task(torch.randn(5, 3), torch.arange(5),
        ...             torch.randn(10, 3), torch.arange(10) % 5)
        >>> task.to("cpu").support_x.shape
        torch.Size([5, 3])
    """

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor

    def to(self, device) -> Task:
        return Task(*(t.to(device, non_blocking=True) for t in
                      (self.support_x, self.support_y, self.query_x, self.query_y)))


class TaskSource(Protocol):
    """Anything that draws tasks: `sample()` returns a fresh `Task`.

    Sources take a `torch.Generator` or seed so that a run, and a resumed run, see the same tasks.
    """

    def sample(self) -> Task: ...
