"""gbml_ext's own meta-iterations: the per-task engine and the batched fast path (the
compiled path's peers are in peers/compiled.py).

    gbml_ext     `learner.accumulate_meta_gradient(tasks, steps)`: one task at a time, one
                 backward per task (`gbml_ext.engine.accumulate_meta_gradient`).
    batched      `gbml_ext.fast.batched_meta_gradient` (implemented in `gbml_ext.fast`): all
                 tasks at once under `torch.vmap`, the runner's `algorithm.path = "batched"`,
                 given the meta-batch as a `TaskBatch` stacked once (what the runner's
                 sampler hands it, and what the JAX peer gets).
    batched/4    the same, 4 tasks at a time (`tasks_per_chunk=4`): less memory. Only on
                 configs with more than 4 tasks per meta-batch.
    nhwc         the per-task engine with convolution weights channels-last (the runner's
                 `model.channels_last = true`). Only on configs with convolutions.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, cast

import torch
from torch import nn

import gbml_ext
from gbml_ext.algorithms import MetaLearner
from gbml_ext.data.tasks import Task, TaskBatch
from gbml_ext.fast import batched_meta_gradient

from ..configs import IMAGE_SHAPES, BenchmarkConfig
from .common import MetaIteration, Peer

__all__ = ["PEERS"]


def _per_task(config: BenchmarkConfig, learner: nn.Module, tasks: Sequence[Task]
              ) -> Tuple[nn.Module, MetaIteration]:
    def meta_iteration() -> None:
        cast(MetaLearner, learner).accumulate_meta_gradient(list(tasks), config.steps)

    return learner, meta_iteration


def _batched(config: BenchmarkConfig, learner: nn.Module, tasks: Sequence[Task],
             tasks_per_chunk: Optional[int] = None) -> Tuple[nn.Module, MetaIteration]:
    batch = TaskBatch.stack(list(tasks))

    def meta_iteration() -> None:
        batched_meta_gradient(learner, batch, config.steps, tasks_per_chunk=tasks_per_chunk)

    return learner, meta_iteration


def _batched_chunks_of_4(config: BenchmarkConfig, learner: nn.Module, tasks: Sequence[Task]
                         ) -> Tuple[nn.Module, MetaIteration]:
    return _batched(config, learner, tasks, tasks_per_chunk=4)


def _channels_last(config: BenchmarkConfig, learner: nn.Module, tasks: Sequence[Task]
                   ) -> Tuple[nn.Module, MetaIteration]:
    return _per_task(config, learner.to(memory_format=torch.channels_last), tasks)


def _more_than_4_tasks(config: BenchmarkConfig) -> bool:
    return config.meta_batch > 4


def _has_convolutions(config: BenchmarkConfig) -> bool:
    return config.config.model.name in IMAGE_SHAPES


_VERSION = getattr(gbml_ext, "__version__", None)
PEERS: List[Peer] = [
    Peer("gbml_ext", _per_task, version=_VERSION),
    Peer("batched", _batched, version=_VERSION),
    Peer("batched/4", _batched_chunks_of_4, _more_than_4_tasks, version=_VERSION),
    Peer("nhwc", _channels_last, _has_convolutions, version=_VERSION),
]
