"""Synthetic task families (gbml_ext.data.synthetic): shapes, seeding, conditioning, and the
fixed-learning-rate limit that motivates Deep / KFO (Arnold, Iqbal & Sha, AISTATS 2021)."""
from pathlib import Path

import numpy as np
import pytest
import torch

from gbml_ext import GBML, KroneckerTransform
from gbml_ext.data.synthetic import (
    LinearRegressionTasks,
    LogisticRegressionTasks,
    ill_conditioned_covariance,
    synthetic_task_source,
)
from gbml_ext.nn import DeepLinear
from gbml_ext.runner import load_config

SYNTHETIC_CONFIGS = Path(__file__).resolve().parents[1] / "experiments" / "configs" / "synthetic"
ROWS = {"linear-regression": ["linreg_shallow", "linreg_deep", "linreg_kfo"],
        "logistic-regression": ["logreg", "logreg_linnet", "logreg_kfo"]}

SOURCES = [LinearRegressionTasks, LogisticRegressionTasks]


@pytest.mark.parametrize("cls", SOURCES)
def test_task_shapes_and_dtypes(cls):
    task = cls(dim=5, n_support=7, n_query=9).sample()
    assert task.support_x.shape == (7, 5) and task.query_x.shape == (9, 5)
    assert task.support_x.dtype == torch.float32
    if cls is LinearRegressionTasks:
        assert task.support_y.shape == (7, 1) and task.support_y.dtype == torch.float32
    else:
        assert task.support_y.shape == (7,) and task.support_y.dtype == torch.int64
        assert set(task.support_y.tolist()) | set(task.query_y.tolist()) <= {0, 1}
    assert DeepLinear(5, cls.out_features)(task.query_x).shape[-1] == cls.out_features


@pytest.mark.parametrize("cls", SOURCES)
def test_same_seed_same_tasks_and_state_dict_resumes_the_stream(cls):
    first, second = cls(dim=4, seed=3), cls(dim=4, seed=3)
    for _ in range(3):
        a, b = first.sample(), second.sample()
        assert torch.equal(a.support_x, b.support_x) and torch.equal(a.query_y, b.query_y)
    assert not torch.equal(cls(dim=4, seed=4).sample().support_x,
                           cls(dim=4, seed=3).sample().support_x)

    state = first.state_dict()
    expected = [first.sample() for _ in range(3)]
    resumed = cls(dim=4, seed=99)
    resumed.load_state_dict(state)
    for want in expected:
        got = resumed.sample()
        assert torch.equal(got.support_x, want.support_x)
        assert torch.equal(got.support_y, want.support_y)
        assert torch.equal(got.query_y, want.query_y)


def test_noisy_regression_and_bernoulli_labels_are_seeded_too():
    for cls, kwargs in [(LinearRegressionTasks, {"noise_std": 0.3}),
                        (LogisticRegressionTasks, {"temperature": 1.0})]:
        a, b = cls(dim=4, seed=1, **kwargs).sample(), cls(dim=4, seed=1, **kwargs).sample()
        assert torch.equal(a.support_y, b.support_y)


def test_covariance_has_the_requested_condition_number_and_is_shared_across_seeds():
    cov, root = ill_conditioned_covariance(6, 250.0, seed=5)
    eigenvalues = np.linalg.eigvalsh(cov.numpy())
    assert eigenvalues.max() == pytest.approx(1.0, rel=1e-9)
    assert eigenvalues.max() / eigenvalues.min() == pytest.approx(250.0, rel=1e-6)
    np.testing.assert_allclose((root @ root).numpy(), cov.numpy(), atol=1e-12)
    # The rotation is not axis-aligned, so a diagonal (per-weight) learning rate cannot undo it.
    assert np.abs(cov.numpy() - np.diag(np.diag(cov.numpy()))).max() > 1e-2

    source = LinearRegressionTasks(dim=4, n_support=500, n_query=1, condition_number=20.0,
                                   covariance_seed=2, seed=0, dtype=torch.float64)
    inputs = torch.cat([source.sample().support_x for _ in range(200)]).numpy()
    empirical = inputs.T @ inputs / len(inputs)
    assert np.linalg.cond(empirical) == pytest.approx(20.0, rel=0.1)
    assert torch.equal(LinearRegressionTasks(dim=4, condition_number=20.0, covariance_seed=2,
                                             seed=7).covariance, source.covariance.float())


def test_logistic_labels_are_balanced_and_follow_the_task_weight():
    source = LogisticRegressionTasks(dim=6, n_support=50, n_query=50, seed=0)
    labels = torch.cat([source.sample().support_y for _ in range(400)]).float()
    assert abs(labels.mean().item() - 0.5) < 0.02


def _best_plain_step_and_preconditioned_step(X, w, cov):
    """Population loss (θ−w)ᵀΣ(θ−w) after one MSE step from θ = 0: the best over a grid of
    fixed learning rates, and the step preconditioned by the support covariance's inverse."""
    n = len(X)
    grad = -2.0 / n * X.T @ (X @ w)
    loss = lambda theta: (theta - w) @ cov @ (theta - w)  # noqa: E731
    stable = 1.0 / np.linalg.eigvalsh(X.T @ X / n).max()
    best_plain = min(loss(-lr * grad) for lr in np.linspace(0, stable, 2001))
    preconditioned = loss(-0.5 * np.linalg.solve(X.T @ X / n, grad))
    return best_plain, preconditioned, loss(np.zeros_like(w))


def test_one_fixed_lr_step_is_condition_number_limited_but_a_preconditioned_step_is_not():
    source = LinearRegressionTasks(dim=6, n_support=60, condition_number=100.0, seed=0,
                                   dtype=torch.float64)
    cov = source.covariance.numpy()
    for _ in range(5):
        task = source.sample()
        X, y = task.support_x.numpy(), task.support_y.numpy()[:, 0]
        w = np.linalg.lstsq(X, y, rcond=None)[0]  # noiseless: the task's true weight
        best_plain, preconditioned, initial = _best_plain_step_and_preconditioned_step(X, w, cov)
        assert best_plain > 0.02 * initial
        assert preconditioned < 1e-12 * initial


def test_default_setting_leaves_room_for_a_learned_preconditioner():
    """With the defaults, the best task-independent preconditioner P* = Σ E[Σ̂²]⁻¹/(2α) beats the
    best fixed learning rate by a wide margin in expectation (the headroom Deep/KFO can use)."""
    options = load_config(SYNTHETIC_CONFIGS / "linreg_shallow.toml").data.options
    n, d = options["n_support"], options["dim"]
    cov, root = (m.numpy() for m in ill_conditioned_covariance(d, options["condition_number"]))
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2000, n, d)) @ root
    covs = np.einsum("bni,bnj->bij", X, X) / n
    identity = np.eye(d)

    def expected_loss(step):  # E_w,X[(θ'−w)ᵀΣ(θ'−w)] with w ~ N(0, I), θ' = (I − step(Σ̂)) w
        maps = identity - step
        return np.einsum("bji,jk,bki->b", maps, cov, maps).mean()

    best_plain = min(expected_loss(2 * lr * covs) for lr in np.linspace(0.05, 0.8, 31))
    p_star = cov @ np.linalg.inv((covs @ covs).mean(0))
    assert expected_loss(p_star @ covs) < 0.5 * best_plain < 0.5 * np.trace(cov)


@pytest.mark.parametrize("source", sorted(ROWS))
def test_shipped_rows_differ_only_in_depth_and_transform(source):
    rows = [load_config(SYNTHETIC_CONFIGS / f"{name}.toml") for name in ROWS[source]]
    for row in rows[1:]:
        for section in ("data", "train", "evaluation"):
            assert getattr(row, section) == getattr(rows[0], section)
        assert row.algorithm.inner_lr == rows[0].algorithm.inner_lr
    assert [r.model.linnet_depth for r in rows] == [0, 2, 0]
    assert [r.algorithm.transform for r in rows] == ["none", "none", "kronecker"]
    assert all(r.data.source == source for r in rows)
    assert synthetic_task_source(source, seed=1, **rows[0].data.options).sample()


@pytest.mark.slow
def test_meta_learned_kfo_beats_shallow_maml_after_a_short_meta_training():
    """A short run of the paper's claim: same tasks, inner lr and budget; KFO adapts better."""
    torch.set_num_threads(1)

    def post_adaptation_loss(transform):
        torch.manual_seed(0)
        train, test = LinearRegressionTasks(seed=0), LinearRegressionTasks(seed=1)
        learner = GBML(torch.nn.Linear(train.dim, train.out_features), transform=transform, lr=0.5)
        optimizer = torch.optim.Adam(learner.parameters(), lr=1e-2)
        for _ in range(60):
            optimizer.zero_grad()
            learner.accumulate_meta_gradient([train.sample() for _ in range(8)], steps=1)
            optimizer.step()
        return np.mean([learner.evaluate_task(test.sample(), steps=1).loss.item()
                        for _ in range(200)])

    assert post_adaptation_loss(KroneckerTransform()) < 0.7 * post_adaptation_loss(None)
