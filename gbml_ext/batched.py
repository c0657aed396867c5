"""A meta-batch-at-once inner loop: every task of a meta-batch adapts in the same tensor ops.

The per-task engine (`gbml_ext.engine.accumulate_meta_gradient`) clones the model once per task
and runs small forward/backward passes task by task; on a GPU those small kernels are bound by
launch overhead. Here the fast weights of all T tasks are stacked along a
leading task dimension, (T, *param.shape), and the model runs on all tasks at once with
`torch.func.functional_call` under `torch.vmap`. vmap turns a convolution with per-task weights
into one grouped convolution and keeps batch-norm statistics per task, so the result equals the
per-task path. Inner-loop gradients come from ordinary `torch.autograd.grad` of the summed task
losses with respect to the stacked fast weights: tasks are independent, so the gradient of the
sum holds each task's own gradient, and `create_graph=True` gives MAML's second-order terms.

Supported: MAML and FOMAML (Finn et al. 2017, "Model-Agnostic Meta-Learning for Fast
Adaptation of Deep Networks"), Meta-SGD (Li et al. 2017), Meta-KFO (Arnold, Iqbal & Sha,
"When MAML Can Adapt Fast and How to Assist When It Cannot", AISTATS 2021), and ANIL (Raghu et
al. 2020) with any of these heads. Everything else raises a `BatchedPathUnsupported` naming the
per-task path.

On a CPU this path is not faster: the per-task path already runs near the convolution
throughput ceiling and grouped convolutions run at about half of it (measured in
docs/performance.md), so keep `algorithm.batched = false` there.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.func import functional_call

from .algorithms.anil import ANIL
from .algorithms.base import MetaLearner
from .algorithms.gbml import GBML
from .data.tasks import Task
from .engine import LossFn, TaskOutcome, accuracy, default_loss

__all__ = ["batched_meta_gradient", "BatchedPathUnsupported"]

_PER_TASK_HINT = ("Use the per-task path instead: algorithm.accumulate_meta_gradient(tasks, "
                  "steps) or gbml_ext.engine.accumulate_meta_gradient(algorithm, tasks, steps).")


class BatchedPathUnsupported(ValueError):
    """The batched path cannot reproduce the per-task path for this algorithm or these tasks."""


def batched_meta_gradient(algorithm, tasks: Sequence[Task], steps: int,
                          loss_fn: Optional[LossFn] = None,
                          tasks_per_chunk: Optional[int] = None) -> List[TaskOutcome]:
    """Adds the meta-gradient of the mean query loss over `tasks` to the parameters' `.grad`.

    Same contract and same numbers (up to float rounding) as
    `gbml_ext.engine.accumulate_meta_gradient`, but all tasks of a chunk adapt together.

    Arguments:
        algorithm: a `GBML` (MAML, FOMAML, Meta-SGD, Meta-KFO) or an `ANIL` over such a head.
        tasks: T tasks of identical shapes: support_x (n_s, *input_shape), support_y (n_s,) or
            (n_s, out), query_x (n_q, *input_shape), query_y (n_q,) or (n_q, out).
        steps: inner-loop steps per task.
        loss_fn: `(outputs, targets) -> scalar` for ONE task; it runs under `torch.vmap`, so
            it must be vmap-compatible (F.cross_entropy and F.mse_loss are). Cross-entropy or
            MSE by target dtype if None, as in the engine.
        tasks_per_chunk: adapt at most this many tasks at once (None: all). The batched graph
            of a chunk is alive until its backward, so peak memory grows with the chunk size;
            a smaller chunk trades speed for memory.

    Returns:
        one `TaskOutcome(loss detached, accuracy)` per task, in order.

    Raises:
        BatchedPathUnsupported: Reptile or another custom meta-gradient, `adapt_transform=True`,
            tasks of unequal shapes, batch-norm with running statistics, parameters that do not
            require grad.

    Example:
        >>> import gbml_ext
        >>> maml = gbml_ext.MAML(gbml_ext.nn.omniglot_cnn4(ways=5, hidden=8), lr=0.4)
        >>> tasks = [Task(torch.randn(5, 1, 28, 28), torch.arange(5),
        ...               torch.randn(10, 1, 28, 28), torch.arange(10) % 5) for _ in range(4)]
        >>> outcomes = batched_meta_gradient(maml, tasks, steps=1)
        >>> len(outcomes), maml.module.classifier.weight.grad.shape
        (4, torch.Size([5, 8]))
    """
    if not tasks:
        return []
    learner = _check_supported(algorithm)
    _check_equal_shapes(tasks)
    loss_fn = loss_fn or default_loss(tasks[0].support_y)
    chunk = len(tasks) if tasks_per_chunk is None else max(1, int(tasks_per_chunk))
    outcomes: List[TaskOutcome] = []
    for start in range(0, len(tasks), chunk):
        chunk_tasks = tasks[start:start + chunk]
        support_x, support_y, query_x, query_y = (
            torch.stack([getattr(t, field) for t in chunk_tasks])
            for field in ("support_x", "support_y", "query_x", "query_y"))
        if isinstance(algorithm, ANIL):
            support_x, query_x = _encode_tasks(algorithm.body, support_x, query_x)
        query_losses, query_outputs = _adapt_and_score(
            learner, support_x, support_y, query_x, query_y, steps, loss_fn)
        # Dividing by the whole meta-batch, not the chunk, keeps the mean over all tasks.
        (query_losses.sum() / len(tasks)).backward()
        outcomes.extend(TaskOutcome(loss.detach(), accuracy(outputs.detach(), targets))
                        for loss, outputs, targets in zip(query_losses, query_outputs, query_y))
    return outcomes


def _check_supported(algorithm) -> GBML:
    """Returns the GBML whose module adapts, or raises why the batched path cannot run."""
    if type(algorithm).accumulate_meta_gradient is not MetaLearner.accumulate_meta_gradient:
        raise BatchedPathUnsupported(
            f"{type(algorithm).__name__} forms its own meta-gradient (e.g. Reptile), which the "
            f"batched path does not reproduce. " + _PER_TASK_HINT)
    if isinstance(algorithm, ANIL):
        learner, model = algorithm.head, algorithm
    elif isinstance(algorithm, GBML):
        learner = model = algorithm
    else:
        raise BatchedPathUnsupported(
            f"The batched path supports GBML (MAML, FOMAML, Meta-SGD, Meta-KFO) and ANIL, not "
            f"{type(algorithm).__name__}. " + _PER_TASK_HINT)
    if type(algorithm).encode_task not in (MetaLearner.encode_task, ANIL.encode_task):
        raise BatchedPathUnsupported(
            f"{type(algorithm).__name__} overrides encode_task, which the batched path cannot "
            f"run under vmap. " + _PER_TASK_HINT)
    if learner.adapt_transform:
        raise BatchedPathUnsupported(
            "adapt_transform=True adapts the transform inside the inner loop, which the batched "
            "path does not implement. " + _PER_TASK_HINT)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
            raise BatchedPathUnsupported(
                "Batch-norm with running statistics updates buffers in place, which cannot run "
                "per task under vmap; build it with track_running_stats=False (as CNN4 does). "
                + _PER_TASK_HINT)
    frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
    if frozen:
        raise BatchedPathUnsupported(
            f"Parameters {frozen} do not require grad; the batched path adapts every parameter. "
            + _PER_TASK_HINT)
    return learner


def _check_equal_shapes(tasks: Sequence[Task]) -> None:
    def shapes(task: Task):
        return tuple((tuple(t.shape), t.dtype) for t in
                     (task.support_x, task.support_y, task.query_x, task.query_y))

    first = shapes(tasks[0])
    for index, task in enumerate(tasks[1:], start=1):
        if shapes(task) != first:
            raise BatchedPathUnsupported(
                f"Task {index} has shapes {shapes(task)} but task 0 has {first}; the batched "
                f"path stacks tasks, so all must share support/query shapes. " + _PER_TASK_HINT)


def _encode_tasks(body: nn.Module, support_x: torch.Tensor, query_x: torch.Tensor
                  ) -> Tuple[torch.Tensor, torch.Tensor]:
    """ANIL's body pass for all tasks at once: (T, n_s, ...), (T, n_q, ...) -> features.

    Support and query of a task go through together, as in `ANIL.encode_task`; vmap keeps
    batch-norm statistics per task, while the shared body weights make every convolution one
    ordinary batched convolution over all T·(n_s + n_q) images.
    """
    n_support = support_x.shape[1]
    features = torch.vmap(body)(torch.cat([support_x, query_x], dim=1))
    return features[:, :n_support], features[:, n_support:]


def _adapt_and_score(learner: GBML, support_x: torch.Tensor, support_y: torch.Tensor,
                     query_x: torch.Tensor, query_y: torch.Tensor, steps: int, loss_fn: LossFn
                     ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Runs `steps` inner-loop steps for all T tasks and returns the query losses (T,) and
    outputs (T, n_q, ...), both in the graph of the meta-parameters."""
    module = learner.module
    second_order = not learner.first_order
    names = [name for name, _ in module.named_parameters()]
    transforms = _transforms_by_name(learner, names)

    def task_loss(params: Dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor):
        outputs = functional_call(module, params, (x,))
        return loss_fn(outputs, y), outputs

    # Per-task views of the shared meta-parameters: differentiating the summed task losses
    # w.r.t. them yields every task's own gradient, (T, *shape), in one backward.
    task_count = support_x.shape[0]
    fast_weights = [weight.expand(task_count, *weight.shape) for weight in module.parameters()]
    run_tasks = torch.vmap(task_loss)
    for _ in range(steps):
        losses, _ = run_tasks(dict(zip(names, fast_weights)), support_x, support_y)
        gradients = torch.autograd.grad(losses.sum(), fast_weights, create_graph=second_order,
                                        allow_unused=learner.allow_unused)
        fast_weights = [
            weight if gradient is None
            # Same arithmetic as learn2learn's DifferentiableSGD: p + (-lr * update).
            else weight + _transformed(transforms[name], gradient).mul(-learner.lr)
            for name, weight, gradient in zip(names, fast_weights, gradients)]
    losses, outputs = run_tasks(dict(zip(names, fast_weights)), query_x, query_y)
    return losses, outputs


def _transformed(transform: Optional[nn.Module], gradients: torch.Tensor) -> torch.Tensor:
    """Applies a one-parameter transform to each task's gradient in (T, *shape)."""
    return gradients if transform is None else torch.vmap(transform)(gradients)


def _transforms_by_name(learner: GBML, names: List[str]) -> Dict[str, Optional[nn.Module]]:
    """The learner's own per-parameter transform modules, keyed by parameter name."""
    update = learner.compute_update
    return {name: (None if index is None else update.transforms_modules[index])
            for name, index in zip(names, update.transforms_indices)}
