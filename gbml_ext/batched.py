"""A meta-batch-at-once inner loop: every task of a meta-batch adapts in the same tensor ops.

The per-task engine (`gbml_ext.engine.accumulate_meta_gradient`) clones the model once per task
and runs small forward/backward passes task by task; on a GPU, and for small models anywhere,
those small kernels are bound by launch and Python overhead. Here the fast weights of all T
tasks are stacked along a leading task dimension, (T, *param.shape), and the model runs on all
tasks at once with `torch.func.functional_call` under `torch.vmap`. vmap turns a convolution
with per-task weights into one grouped convolution and keeps batch-norm statistics per task, so
the result equals the per-task path. Inner-loop gradients come from `torch.autograd.grad` of the
summed task losses with respect to the stacked fast weights: tasks are independent, so the
gradient of the sum holds each task's own gradient, and `create_graph=True` gives MAML's
second-order terms. With `adapt_transform=True` the transform's parameters are stacked per task
too and take learn2learn's differentiable SGD step before every model step after the first.

Supported: MAML and FOMAML (Finn et al. 2017), Meta-SGD (Li et al. 2017), Meta-KFO with or
without an adapted transform (Arnold, Iqbal & Sha, "When MAML Can Adapt Fast and How to Assist
When It Cannot", AISTATS 2021), and ANIL (Raghu et al. 2020) with any of these heads.
Everything else raises a `BatchedPathUnsupported` naming the per-task path.

The runner picks the path with `algorithm.path` ("auto" | "per-task" | "batched";
`algorithm.batched = true` is a synonym of "batched"). "auto" takes this path on CUDA and, on a
CPU, for models without convolutions; convolutional models on a CPU stay per-task, where
grouped convolutions run at about half the dense throughput (docs/performance.md). The
implementation lives in `gbml_ext.fast`.
"""
from __future__ import annotations

from .fast import BatchedPathUnsupported, batched_adaptation_curves, batched_meta_gradient

__all__ = ["BatchedPathUnsupported", "batched_adaptation_curves", "batched_meta_gradient"]
