"""What every meta-learner shares on top of `clone()` / `adapt()`."""
from __future__ import annotations

from typing import TYPE_CHECKING, List, Optional, Sequence

from .. import engine
from ..data.tasks import Task
from ..fast.form import FormOrReason

__all__ = ["MetaLearner", "per_task_reason"]


def per_task_reason(learner: object) -> Optional[str]:
    """Why `learner`'s inherited batched form no longer describes it, or None when it does.

    A batched form reproduces the `encode_task` and `accumulate_meta_gradient` of the class that
    defines `batched_form`; a subclass that overrides either without its own `batched_form`
    (Reptile, iMAML) runs per task only.

    Example:
        >>> import gbml_ext, torch
        >>> per_task_reason(gbml_ext.MAML(torch.nn.Linear(3, 1))) is None
        True
        >>> per_task_reason(gbml_ext.Reptile(torch.nn.Linear(3, 1)))[:22]
        'Reptile forms its own '
    """
    cls = type(learner)
    owner = next(c for c in cls.__mro__ if "batched_form" in vars(c))
    name = cls.__name__
    reasons = {
        "accumulate_meta_gradient": f"{name} forms its own meta-gradient (e.g. Reptile, iMAML), "
                                    f"which the batched path does not reproduce.",
        "encode_task": f"{name} overrides encode_task without its own batched_form, so the "
                       f"batched path cannot run it.",
    }
    for method, reason in reasons.items():
        if getattr(cls, method) is not getattr(owner, method):
            return reason
    return None


class MetaLearner:
    """Mixin giving a `clone()`/`adapt()` learner the engine's task-level methods.

    Every learner a registered algorithm builds (`gbml_ext.algorithms.ALGORITHMS`) is one.
    Subclasses may override `encode_task` (computed once per task, before adaptation),
    `accumulate_meta_gradient` (how the outer gradient is formed) and `batched_form` (how the
    fast path runs all tasks of a meta-batch at once; `gbml_ext.fast.form`).

    Example:
        >>> import gbml_ext, torch
        >>> maml = gbml_ext.MAML(torch.nn.Linear(4, 3), lr=0.5)
        >>> task = Task(torch.randn(6, 4), torch.arange(6) % 3,
        ...             torch.randn(9, 4), torch.arange(9) % 3)
        >>> outcomes = maml.accumulate_meta_gradient([task, task], steps=1)
        >>> len(outcomes), maml.module.weight.grad.shape
        (2, torch.Size([3, 4]))
        >>> maml.evaluate_task(task, steps=1).accuracy.shape
        torch.Size([])
    """

    if TYPE_CHECKING:  # what the learner class the mixin joins (e.g. l2l.algorithms.MAML) gives
        def clone(self, first_order: Optional[bool] = None) -> engine.Learner: ...

    def encode_task(self, task: Task) -> Task:
        """The task the inner loop sees; here `task` itself (ANIL: the body's features,
        computed once per task so the inner steps run the head only)."""
        return task

    def accumulate_meta_gradient(self, tasks: Sequence[Task], steps: int,
                                 loss_fn: Optional[engine.LossFn] = None
                                 ) -> List[engine.TaskOutcome]:
        """Adds the meta-gradient of the mean query loss over `tasks` to the parameters'
        `.grad` (`gbml_ext.engine.accumulate_meta_gradient`).

        Arguments:
            tasks: tasks with support (n_s, ...) and query (n_q, ...) tensors, or a `TaskBatch`.
            steps: inner-loop steps per task.
            loss_fn: `(outputs, targets) -> scalar`; cross-entropy or MSE by target dtype if
                None.

        Returns:
            one detached `TaskOutcome` per task.
        """
        return engine.accumulate_meta_gradient(self, tasks, steps, loss_fn)

    def evaluate_task(self, task: Task, steps: int,
                      loss_fn: Optional[engine.LossFn] = None) -> engine.TaskOutcome:
        """Adapts a first-order clone on `task`'s support set for `steps` steps and scores its
        query set without a graph (`gbml_ext.engine.run_task` with `train=False`).

        Returns:
            the detached query loss (a scalar) and accuracy (a scalar; None for regression).
        """
        return engine.run_task(self, task, steps, loss_fn, train=False)

    def batched_form(self) -> FormOrReason:
        """The learner's inner loop for the fast path (`gbml_ext.fast.form.BatchedForm`), or
        why it runs per task only; here: a reason, since a plain `MetaLearner` has no fast
        weights the fast path can stack."""
        return per_task_reason(self) or (
            f"The batched path runs learners that describe their inner loop with "
            f"batched_form() (gbml_ext.fast.form); {type(self).__name__} does not.")
