"""ANIL: adapt only the head; the body is meta-learned but frozen during adaptation."""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from ..data.tasks import Task
from .base import MetaLearner
from .gbml import GBML

__all__ = ["ANIL"]


class ANIL(MetaLearner, nn.Module):
    """Almost No Inner Loop (Raghu et al. 2020, "Rapid Learning or Feature Reuse?").

    The body maps inputs to features once per task; only the head is adapted, with any GBML
    transform (so `transform=KroneckerTransform()` gives ANIL-KFO, and a `gbml_ext.nn.linnet`
    head gives ANIL+LinNet). The body still gets meta-gradients through the query loss.

    Support and query go through the body in one pass, as in learn2learn's ANIL example, so
    batch-norm statistics are those of the whole task.

    Arguments:
        body: feature extractor, (batch, *input_shape) -> (batch, features).
        head: classifier, (batch, features) -> (batch, ways).
        lr, transform, first_order, adapt_transform: as for `GBML`, applied to the head.

    Example:
        >>> body = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU())
        >>> anil = ANIL(body, torch.nn.Linear(16, 5), lr=0.5)
        >>> learner = anil.clone()   # a GBML over the head only
    """

    def __init__(self, body: nn.Module, head: nn.Module, lr: float = 0.1,
                 transform: Optional[Callable] = None, first_order: bool = False,
                 adapt_transform: bool = False):
        super().__init__()
        self.body = body
        self.head = GBML(head, transform=transform, lr=lr, first_order=first_order,
                         adapt_transform=adapt_transform)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    def encode_task(self, task: Task) -> Task:
        n_support = task.support_x.shape[0]
        features = self.body(torch.cat([task.support_x, task.query_x]))
        return Task(features[:n_support], task.support_y, features[n_support:], task.query_y)

    def clone(self, **kwargs) -> GBML:
        return self.head.clone(**kwargs)
