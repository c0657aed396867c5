"""TorchOpt's functional API: `torchopt.sgd` with `update` / `apply_updates`, per task.

Used only when `torchopt` is importable (`pip install torchopt==0.7.3`, the `bench` extra).
With torch 2.14.1, torchopt 0.7.3 imports and its pure-Python functional optimizers run (the
gradient test checks them), but its compiled extension does not load: importing
`torchopt._C.adam_op` fails with "undefined symbol:
_ZN2at4_ops10empty_like4callERKNS_6TensorEN3c108optionalINS5_10ScalarTypeEEENS6_INS5_6LayoutEEENS6_INS5_6DeviceEEENS6_IbEENS6_INS5_12MemoryFormatEEE"
(built against an older torch ABI). That extension serves only the fused Adam
(`use_accelerated_op=True`); the SGD step here never touches it.

Per task: the head's parameters as a tuple, `optimizer.init`, then per step the support loss
of `functional_call`, `torch.autograd.grad(create_graph=True)` (False for FOMAML), the learner's
KFO transform (if any), `optimizer.update(..., inplace=False)` and
`torchopt.apply_updates(..., inplace=False)`; the query loss goes `backward()`.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
from torch import nn
from torch.func import functional_call

from gbml_ext.data.tasks import Task
from gbml_ext.engine import default_loss

from ..configs import BenchmarkConfig
from .common import MetaIteration, Peer, split_learner

try:
    import torchopt
except ImportError:  # optional: the `bench` extra
    torchopt = None  # type: ignore[assignment]

__all__ = ["PEERS"]


def _torchopt(config: BenchmarkConfig, learner: nn.Module, tasks: Sequence[Task]
              ) -> Tuple[nn.Module, MetaIteration]:
    parts = split_learner(learner)
    names = parts.names
    optimizer = torchopt.sgd(lr=parts.lr)

    def meta_iteration() -> None:
        for task in tasks:
            support_x, query_x = parts.encode(task)
            loss_fn = default_loss(task.support_y)
            params = tuple(parts.head.parameters())
            state = optimizer.init(params)
            for _ in range(config.steps):
                outputs = functional_call(parts.head, dict(zip(names, params, strict=True)),
                                          (support_x,))
                gradients = torch.autograd.grad(loss_fn(outputs, task.support_y), params,
                                                create_graph=not parts.first_order)
                gradients = tuple(parts.transform(name, gradient)
                                  for name, gradient in zip(names, gradients, strict=True))
                updates, state = optimizer.update(gradients, state, inplace=False)
                params = torchopt.apply_updates(params, updates, inplace=False)
            outputs = functional_call(parts.head, dict(zip(names, params, strict=True)), (query_x,))
            (loss_fn(outputs, task.query_y) / len(tasks)).backward()

    return learner, meta_iteration


PEERS: List[Peer] = [] if torchopt is None else [
    Peer("torchopt", _torchopt, version=torchopt.__version__)]
