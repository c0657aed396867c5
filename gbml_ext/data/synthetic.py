"""Synthetic convex task families on which MAML with a shallow model cannot adapt fast.

Arnold, Iqbal & Sha, "When MAML Can Adapt Fast and How to Assist When It Cannot" (AISTATS 2021),
Section 3, show that MAML with a linear model (Shallow, LogR) adapts poorly to linear and
logistic regression tasks, while the same function class written as a product of linear layers
(Deep, LogR+LinNet) or the linear model with a meta-learned Kronecker-factored gradient
transform (Shallow+KFO, LogR+KFO) adapts fast. This module provides those task families and the
three models are the runner's "linear" model with `model.linnet_depth` 0 or 2 and
`algorithm.transform` "none" or "kronecker" (experiments/configs/synthetic/), so every
comparison runs through the one engine (`gbml_ext.engine.run_task`).

Why a shallow model cannot adapt in one step. Inputs are x ~ N(0, Σ) with Σ's eigenvalues
log-spaced in [1/κ, 1] (κ the condition number), so the loss Hessian of a linear model is ∝ Σ.
One fixed-lr step θ' = θ − α∇L shrinks the error along eigenvector i by (1 − 2αλ_i) (mean
squared error) and is stable only for α < 1/λ_max; along the small-eigenvalue directions the
error then shrinks by at most 2λ_i/λ_max ≈ 2/κ, whatever the initialization. A preconditioned
step θ' = θ − α P ∇L with P ≈ Σ⁻¹/(2α) removes the error in every direction at once:

- Shallow+KFO learns P directly: for a Linear weight the KFO update is L G R, and R (in x in)
  can become ≈ Σ⁻¹ up to scale.
- Deep (f(x) = W₂W₁x): a step on the factors changes the product W = W₂W₁ by
  −α(‖W₂‖² G + G W₁ᵀW₁) to first order, i.e. a step preconditioned by ‖W₂‖²I + W₁ᵀW₁, which
  the meta-learned initialization of W₁ can shape towards Σ⁻¹ (exactly so when W₂ = 0).

The inner learning rate is the same for all three models, as in the paper.

How much a preconditioner can gain depends on the support size n. The best task-independent
preconditioner for one MSE step is P* = Σ E[Σ̂²]⁻¹ / (2α) ≈ ((1 + 1/n) Σ + tr(Σ)/n · I)⁻¹ / (2α),
a ridge-regularized Σ⁻¹: with n ≈ 2d the ridge tr(Σ)/n swamps the small eigenvalues and little
is left to gain, so the shipped configs use n = 8d (experiments/configs/synthetic/base.toml).

Training and evaluation sources share the task distribution (`dim`, `condition_number`,
`covariance_seed`) and differ only in `seed`, the stream of draws.
"""
from __future__ import annotations  # one file: the two families share one derivation above

import inspect
import math
from typing import Any, Dict, Optional, Tuple

import torch

from ..registry import Registry
from .tasks import Task, TaskBatch, check_task_count, stack_samples

__all__ = ["SYNTHETIC_SOURCES", "LinearRegressionTasks", "LogisticRegressionTasks",
           "SyntheticTasks", "ill_conditioned_covariance", "synthetic_task_source"]


def ill_conditioned_covariance(dim: int, condition_number: float, seed: int = 0,
                               rotate: bool = True,
                               dtype: torch.dtype = torch.float64
                               ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Returns (Σ, Σ^½), both (dim, dim): eigenvalues log-spaced from 1 down to 1/condition_number.

    Arguments:
        dim: input dimension d.
        condition_number: κ = λ_max / λ_min ≥ 1.
        seed: draws the eigenvectors Q (a Haar-random rotation); Σ = Q diag(λ) Qᵀ.
        rotate: with False, Q = I (Σ diagonal): then a per-weight learning rate (Meta-SGD)
            suffices to precondition, so the default rotation is what makes a full-matrix
            preconditioner (KFO, deep linear) necessary.
        dtype: dtype of the returned matrices.

    Example:
        >>> cov, root = ill_conditioned_covariance(4, 100.0)
        >>> round(float(torch.linalg.cond(cov)), 6)
        100.0
    """
    if condition_number < 1:
        raise ValueError(f"condition_number must be >= 1, got {condition_number}.")
    eigenvalues = torch.logspace(0.0, -math.log10(condition_number), dim, dtype=torch.float64)
    if rotate:
        generator = torch.Generator().manual_seed(seed)
        gaussian = torch.randn(dim, dim, generator=generator, dtype=torch.float64)
        q, r = torch.linalg.qr(gaussian)
        # Fixing the signs of R's diagonal makes Q Haar-distributed, not biased by QR's convention.
        q = q * torch.sign(torch.diagonal(r))
    else:
        q = torch.eye(dim, dtype=torch.float64)
    cov = q @ torch.diag(eigenvalues) @ q.t()
    root = q @ torch.diag(eigenvalues.sqrt()) @ q.t()
    return cov.to(dtype), root.to(dtype)


class SyntheticTasks:
    """Base of the synthetic `TaskSource`s: x ~ N(0, Σ), one weight w ~ N(0, weight_std² I) per
    task, drawn from a `torch.Generator` the source owns.

    Weights are centred at 0 on purpose: the best initialization is then w = 0 for every model,
    so the comparison isolates what the paper is about, the quality of the adaptation step, and
    not a better starting point. Subclasses turn (inputs, weight) into targets (`_targets`).

    `sample_batch(T)` draws T tasks in one vectorised call; `sample()` draws one task, and the
    stream of `sample()` calls is that of gbml_ext before meta-batches were drawn whole.

    Arguments (keyword-only, shared by every family): dim, n_support, n_query,
    condition_number, weight_std, covariance_seed, rotate, seed, dtype; see
    `LinearRegressionTasks`. one_at_a_time: make `sample_batch(T)` stack T calls of `sample()`
    (the runner's `data.sampler = "learn2learn"`, which reproduces older runs).

    Attributes: dim, out_features (outputs the model needs), covariance Σ (dim, dim),
    generator.
    """

    out_features: int
    classes: Optional[int] = None  # of a task (None: regression); data.ways does not apply

    def __init__(self, *, dim: int = 8, n_support: int = 64, n_query: int = 64,
                 condition_number: float = 100.0, weight_std: float = 1.0,
                 covariance_seed: int = 0, rotate: bool = True, seed: int = 0,
                 dtype: torch.dtype = torch.float32, one_at_a_time: bool = False):
        if min(dim, n_support, n_query) < 1:
            raise ValueError(f"dim, n_support and n_query must be >= 1, got {dim}, {n_support}, "
                             f"{n_query}.")
        self.dim, self.n_support, self.n_query = dim, n_support, n_query
        self.condition_number, self.weight_std, self.dtype = condition_number, weight_std, dtype
        self.covariance, self._covariance_root = ill_conditioned_covariance(
            dim, condition_number, covariance_seed, rotate, dtype)
        self.generator = torch.Generator().manual_seed(seed)
        self.one_at_a_time = one_at_a_time

    @classmethod
    def sizes(cls, options: Dict[str, Any]) -> Dict[str, Any]:
        """dim (the input size), n_support and n_query of a source built with `options`.

        Example:
            >>> LogisticRegressionTasks.sizes({"dim": 4})
            {'dim': 4, 'n_support': 64, 'n_query': 64}
        """
        def default(key: str) -> Any:  # the first class that names it (others pass **options)
            return next(p.default for k in cls.__mro__ if hasattr(k, "sizes")
                        for name, p in inspect.signature(k).parameters.items()
                        if name == key)

        return {k: options.get(k, default(k)) for k in ("dim", "n_support", "n_query")}

    def _draw(self, *tasks: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Inputs (*tasks, n_support + n_query, dim) and weights (*tasks, dim): one task when
        `tasks` is empty, else tasks[0] of them."""
        weight = self.weight_std * torch.randn(*tasks, self.dim, generator=self.generator,
                                               dtype=self.dtype)
        white = torch.randn(*tasks, self.n_support + self.n_query, self.dim,
                            generator=self.generator, dtype=self.dtype)
        return white @ self._covariance_root, weight

    def _targets(self, inputs: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Targets of inputs (..., n, dim) under weights (..., dim)."""
        raise NotImplementedError

    def sample(self) -> Task:
        inputs, weight = self._draw()
        targets = self._targets(inputs, weight)
        n = self.n_support
        return Task(inputs[:n], targets[:n], inputs[n:], targets[n:])

    def sample_batch(self, num_tasks: int) -> TaskBatch:
        """`num_tasks` tasks in one vectorised draw (see the class docstring)."""
        num_tasks = check_task_count(num_tasks)
        if self.one_at_a_time:
            return stack_samples(self, num_tasks)
        inputs, weight = self._draw(num_tasks)
        targets = self._targets(inputs, weight)
        n = self.n_support
        return TaskBatch(inputs[:, :n], targets[:, :n], inputs[:, n:], targets[:, n:])

    def state_dict(self) -> Dict[str, torch.Tensor]:
        """The generator's state: loading it into a source built with the same arguments
        continues the identical stream of tasks."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        self.generator.set_state(state["generator"])


class LinearRegressionTasks(SyntheticTasks):
    """Ill-conditioned linear regression tasks (the paper's "Shallow / Deep / Shallow+KFO" setting).

    Each task draws w ~ N(0, weight_std² I_d) and n_support + n_query inputs x ~ N(0, Σ),
    with Σ = Q diag(λ) Qᵀ, λ log-spaced from 1 to 1/condition_number and Q a fixed random
    rotation (`ill_conditioned_covariance`); targets are y = wᵀx + noise_std · ε, ε ~ N(0, 1).
    Fit with mean squared error (the engine's default for float targets) by a
    `Linear(dim, 1)` or a deep linear stack of the same function class.

    With mean squared error the Hessian is 2Σ̂ (Σ̂ the support covariance), so one plain step
    with a learning rate α < 1/λ_max leaves the error along Σ's small-eigenvalue directions
    almost untouched (factor 1 − 2αλ_i), and for a large support set the post-adaptation
    loss stays near Σ_i λ_i (1 − 2αλ_i)² weight_std² instead of near 0; see the module docstring
    for how depth and KFO remove this limit.

    Arguments:
        dim: input dimension d.
        n_support, n_query: examples per task in the support and query sets.
        condition_number: κ of Σ.
        noise_std: standard deviation of the additive target noise.
        weight_std: standard deviation of each entry of w.
        covariance_seed: seed of Σ's rotation; part of the task distribution, so training and
            evaluation sources must share it.
        rotate: draw a random rotation for Σ (False: Σ diagonal).
        seed: seed of the stream of tasks.
        dtype: dtype of every tensor.

    Tasks: support_x (n_support, d), support_y (n_support, 1) float; query likewise.

    Example:
        >>> tasks = LinearRegressionTasks(dim=8, n_support=16, n_query=16, seed=0)
        >>> task = tasks.sample()
        >>> task.support_x.shape, task.support_y.shape
        (torch.Size([16, 8]), torch.Size([16, 1]))
    """

    out_features = 1

    def __init__(self, noise_std: float = 0.0, **options: Any):
        super().__init__(**options)
        self.noise_std = noise_std

    def _targets(self, inputs: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        targets = (inputs @ weight.unsqueeze(-1)).squeeze(-1)
        if self.noise_std > 0:
            targets = targets + self.noise_std * torch.randn(
                targets.shape, generator=self.generator, dtype=self.dtype)
        return targets.unsqueeze(-1)


class LogisticRegressionTasks(SyntheticTasks):
    """Ill-conditioned binary classification tasks (the paper's "LogR / LogR+LinNet / LogR+KFO").

    Inputs and the per-task weight w are drawn as in `LinearRegressionTasks`. Labels are
    y = 1[wᵀx > 0] when `temperature` is 0, else y ~ Bernoulli(sigmoid(wᵀx / temperature)).

    Targets are int64 class indices in {0, 1}, fit with 2-class cross-entropy (the engine's
    default for integer targets) by a `Linear(dim, 2)`: softmax over two logits is logistic
    regression on their difference, and keeping integer targets means every algorithm,
    accuracy included, runs without a custom loss function.

    The logistic loss's Hessian is E[σ'(f(x)) x xᵀ] ⪯ Σ/4, as ill-conditioned as Σ, so the same
    fixed-learning-rate limit as in linear regression applies.

    Arguments:
        temperature: 0 for noiseless labels, > 0 for Bernoulli label noise.
        **options: dim, n_support, n_query, condition_number, weight_std, covariance_seed,
            rotate, seed, dtype, as for `LinearRegressionTasks`.

    Tasks: support_x (n_support, d) float, support_y (n_support,) int64; query likewise.

    Example:
        >>> task = LogisticRegressionTasks(dim=8, n_support=16, n_query=16).sample()
        >>> task.support_y.dtype, sorted(set(task.query_y.tolist())) <= [0, 1]
        (torch.int64, True)
    """

    out_features = classes = 2

    def _targets(self, inputs: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        logits = (inputs @ weight.unsqueeze(-1)).squeeze(-1)
        if self.temperature == 0:
            return (logits > 0).long()
        return torch.bernoulli(torch.sigmoid(logits / self.temperature),
                               generator=self.generator).long()

    def __init__(self, temperature: float = 0.0, **options: Any):
        super().__init__(**options)
        self.temperature = temperature


# data.source's synthetic families.
SYNTHETIC_SOURCES: Registry[type[SyntheticTasks]] = Registry("synthetic source")
SYNTHETIC_SOURCES.register("linear-regression", LinearRegressionTasks,
                           doc="y = w·x + noise, x from an ill-conditioned Gaussian")
SYNTHETIC_SOURCES.register("logistic-regression", LogisticRegressionTasks,
                           doc="binary labels of a linear score")


def synthetic_task_source(source: str, seed: int = 0, **options: Any) -> SyntheticTasks:
    """Builds a synthetic task source by its config name.

    Arguments:
        source: "linear-regression" or "logistic-regression".
        seed: seed of the stream of tasks.
        options: constructor arguments of the class (dim, n_support, condition_number, ...).

    Example:
        >>> source = synthetic_task_source("logistic-regression", seed=3, dim=4, n_support=5)
        >>> source.sample().support_x.shape
        torch.Size([5, 4])
    """
    return SYNTHETIC_SOURCES[source](seed=seed, **options)
