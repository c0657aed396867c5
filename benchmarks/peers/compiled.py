"""gbml_ext's compiled path as benchmark peers: the runner's `algorithm.path = "compiled"`.

    compiled             `PATHS["compiled"].meta_gradient` (`gbml_ext.fast.compiled`): the
                         meta-step compiled by torch.compile, given the meta-batch as a
                         `TaskBatch` stacked once (as the runner does). On every config whose
                         learner the compiled path can meta-train (`Path.unsupported`).
    compiled-nhwc        the same with channels-last convolution weights (configs with
                         convolutions).
    compiled-cudagraphs  the same with CUDA graphs on top (inductor's `triton.cudagraphs`, what
                         `torch.compile(mode="reduce-overhead")` turns on; the runner takes it
                         from TORCHINDUCTOR_CUDAGRAPHS=1). On a CUDA device only.

Compiling falls in the first call, which the benchmark times apart (`first_call_s` in the
JSON); the compiled function is cached per learner, so every peer compiles its own. They run
only when asked (`benchmarks.peers.OPT_IN`).
"""
from __future__ import annotations

import contextlib
from functools import lru_cache
from typing import Iterator, List, Optional, Sequence, Tuple

import torch
from torch import nn

import gbml_ext
from gbml_ext.data.tasks import Task, TaskBatch
from gbml_ext.fast import PATHS

from ..configs import IMAGE_SHAPES, BenchmarkConfig, make_learner
from .common import MetaIteration, Peer, PeerUnavailable

__all__ = ["PEERS", "unsupported"]


@lru_cache(maxsize=None)
def _unsupported(config_json: str) -> Optional[str]:
    config = BenchmarkConfig.from_json(config_json)
    with torch.random.fork_rng(devices=[]):  # make_learner seeds; leave the caller's stream
        learner = make_learner(config, torch.device("meta"))  # shapes only, no arithmetic
    return PATHS["compiled"].unsupported(learner, "cpu", True)


def unsupported(config: BenchmarkConfig) -> Optional[str]:
    """Why the compiled path cannot meta-train `config`'s learner, or None.

    Example:
        >>> from benchmarks.configs import CONFIGS
        >>> unsupported(CONFIGS["a-fomaml"]) is None
        True
    """
    return _unsupported(config.to_json())


def _runs(config: BenchmarkConfig) -> bool:
    return unsupported(config) is None


def _runs_with_convolutions(config: BenchmarkConfig) -> bool:
    return config.config.model.name in IMAGE_SHAPES and _runs(config)


@contextlib.contextmanager
def _cuda_graphs() -> Iterator[None]:
    import torch._inductor.config as inductor

    with inductor.patch({"triton.cudagraphs": True}):
        yield


def _compiled(config: BenchmarkConfig, learner: nn.Module, tasks: Sequence[Task]
              ) -> Tuple[nn.Module, MetaIteration]:
    path, batch = PATHS["compiled"], TaskBatch.stack(list(tasks))

    def meta_iteration() -> None:
        path.meta_gradient(learner, batch, config.steps)

    return learner, meta_iteration


def _compiled_channels_last(config: BenchmarkConfig, learner: nn.Module, tasks: Sequence[Task]
                            ) -> Tuple[nn.Module, MetaIteration]:
    return _compiled(config, learner.to(memory_format=torch.channels_last), tasks)


def _compiled_cuda_graphs(config: BenchmarkConfig, learner: nn.Module, tasks: Sequence[Task]
                          ) -> Tuple[nn.Module, MetaIteration]:
    device = next(learner.parameters()).device
    if device.type != "cuda":
        raise PeerUnavailable(f"CUDA graphs need a CUDA device, not {device.type}")
    meta_model, step = _compiled(config, learner, tasks)

    def meta_iteration() -> None:
        torch.compiler.cudagraph_mark_step_begin()  # the last step's outputs may be reused
        with _cuda_graphs():
            step()

    return meta_model, meta_iteration


_VERSION = getattr(gbml_ext, "__version__", None)
PEERS: List[Peer] = [
    Peer("compiled", _compiled, _runs, version=_VERSION),
    Peer("compiled-nhwc", _compiled_channels_last, _runs_with_convolutions, version=_VERSION),
    Peer("compiled-cudagraphs", _compiled_cuda_graphs, _runs, version=_VERSION),
]
