"""The batched meta-batch path must give the per-task engine's meta-gradients and outcomes."""
from __future__ import annotations

import copy

import pytest
import torch

import gbml_ext
from gbml_ext import Task
from gbml_ext.engine import accumulate_meta_gradient
from gbml_ext.fast import BatchedPathUnsupported, batched_meta_gradient

__all__ = []

IMAGE_SIZE = 12
WAYS = 3


def tiny_cnn(max_pool: bool = False) -> gbml_ext.nn.CNN4:
    """A CNN4 shrunk to 2 blocks of 4 filters on 12x12 images, in float64."""
    pool = "flatten" if max_pool else "mean"
    return gbml_ext.nn.CNN4(WAYS, in_channels=2, hidden=4, layers=2, max_pool=max_pool,
                            pool=pool, image_size=IMAGE_SIZE).double()


def image_tasks(count: int = 3, shots: int = 2, queries: int = 3, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)

    def images(n):
        return torch.randn(n, 2, IMAGE_SIZE, IMAGE_SIZE, generator=generator,
                           dtype=torch.float64)

    return [Task(images(WAYS * shots), torch.arange(WAYS).repeat(shots),
                 images(WAYS * queries), torch.arange(WAYS).repeat(queries))
            for _ in range(count)]


def perturb_transforms(learner: gbml_ext.GBML, scale: float = 0.1) -> None:
    """Moves every transform parameter off its identity/initial value, so a wrong use of the
    transform cannot pass unnoticed."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in learner.compute_update.parameters():
            param.add_(scale * torch.randn(param.shape, generator=generator,
                                           dtype=param.dtype))


def assert_same_as_per_task(algorithm, tasks, steps: int) -> None:
    twin = copy.deepcopy(algorithm)
    expected = accumulate_meta_gradient(algorithm, tasks, steps)
    actual = batched_meta_gradient(twin, tasks, steps)
    assert len(actual) == len(expected)
    for want, got in zip(expected, actual, strict=True):
        torch.testing.assert_close(got.loss, want.loss, rtol=1e-5, atol=1e-12)
        assert not got.loss.requires_grad
        torch.testing.assert_close(got.accuracy, want.accuracy)
    checked = 0
    for (name, want), got in zip(algorithm.named_parameters(), twin.parameters(), strict=True):
        assert (want.grad is None) == (got.grad is None), name
        if want.grad is not None:
            # atol: biases feeding batch-norm have an exactly zero meta-gradient, and both paths
            # leave rounding noise of ~1e-17 there.
            torch.testing.assert_close(got.grad, want.grad, rtol=1e-5, atol=1e-10, msg=name)
            checked += 1
    assert checked > 0


@pytest.mark.parametrize("steps", [1, 3])
def test_maml_second_order(steps):
    assert_same_as_per_task(gbml_ext.MAML(tiny_cnn(), lr=0.3), image_tasks(), steps)


def test_maml_with_max_pool_and_flatten():
    assert_same_as_per_task(gbml_ext.MAML(tiny_cnn(max_pool=True), lr=0.3), image_tasks(), 2)


def test_fomaml():
    assert_same_as_per_task(gbml_ext.MAML(tiny_cnn(), lr=0.3, first_order=True),
                            image_tasks(), 2)


@pytest.mark.parametrize("first_order", [False, True])
def test_kfo_linear_with_perturbed_factors(first_order):
    kfo = gbml_ext.GBML(tiny_cnn(), transform=gbml_ext.KroneckerTransform(), lr=0.3,
                        first_order=first_order)
    perturb_transforms(kfo)
    assert_same_as_per_task(kfo, image_tasks(), 2)


def test_kfo_nonlinear_psd_on_some_parameters():
    transform = gbml_ext.KroneckerTransform(params=lambda name: "classifier" in name,
                                            nonlinear=True, psd=True)
    kfo = gbml_ext.GBML(tiny_cnn(), transform=transform, lr=0.3)
    perturb_transforms(kfo)
    assert_same_as_per_task(kfo, image_tasks(), 2)


def test_meta_sgd():
    meta_sgd = gbml_ext.MetaSGD(tiny_cnn(), lr=0.3)
    perturb_transforms(meta_sgd, scale=0.05)
    assert_same_as_per_task(meta_sgd, image_tasks(), 2)


def test_anil():
    model = tiny_cnn()
    assert_same_as_per_task(gbml_ext.ANIL(model.features, model.classifier, lr=0.3),
                            image_tasks(), 3)


def test_anil_kfo():
    model = tiny_cnn()
    anil = gbml_ext.ANIL(model.features, model.classifier, lr=0.3,
                         transform=gbml_ext.KroneckerTransform())
    perturb_transforms(anil.head)
    assert_same_as_per_task(anil, image_tasks(), 2)


def test_chunks_give_the_same_meta_gradient():
    maml = gbml_ext.MAML(tiny_cnn(), lr=0.3)
    twin = copy.deepcopy(maml)
    tasks = image_tasks(count=5)
    batched_meta_gradient(maml, tasks, 2)
    batched_meta_gradient(twin, tasks, 2, tasks_per_chunk=2)
    for want, got in zip(maml.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(got.grad, want.grad, rtol=1e-5, atol=1e-10)


def test_regression_tasks_with_custom_loss():
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(),
                                torch.nn.Linear(8, 1)).double()
    generator = torch.Generator().manual_seed(0)
    tasks = [Task(*(torch.randn(n, d, generator=generator, dtype=torch.float64)
                    for n, d in ((5, 4), (5, 1), (7, 4), (7, 1)))) for _ in range(3)]
    maml = gbml_ext.MAML(model, lr=0.2)
    twin = copy.deepcopy(maml)

    def loss_fn(outputs, targets):
        return (outputs - targets).abs().mean()

    expected = accumulate_meta_gradient(maml, tasks, 2, loss_fn)
    actual = batched_meta_gradient(twin, tasks, 2, loss_fn)
    assert all(outcome.accuracy is None for outcome in actual)
    for want, got in zip(expected, actual, strict=True):
        torch.testing.assert_close(got.loss, want.loss, rtol=1e-5, atol=1e-12)
    for want, got in zip(maml.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(got.grad, want.grad, rtol=1e-5, atol=1e-10)


def test_float32_meta_gradient_close():
    maml = gbml_ext.MAML(tiny_cnn().float(), lr=0.3)
    twin = copy.deepcopy(maml)
    tasks = [Task(t.support_x.float(), t.support_y, t.query_x.float(), t.query_y)
             for t in image_tasks()]
    accumulate_meta_gradient(maml, tasks, 1)
    batched_meta_gradient(twin, tasks, 1)
    for want, got in zip(maml.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(got.grad, want.grad, rtol=1e-4, atol=1e-6)


def test_reptile_is_refused():
    with pytest.raises(BatchedPathUnsupported, match="per-task path"):
        batched_meta_gradient(gbml_ext.Reptile(tiny_cnn(), lr=0.1), image_tasks(), 1)


@pytest.mark.parametrize("steps", [2, 3])
def test_kfo_with_adapted_transform(steps: int) -> None:
    """learn2learn's adapt_transform: the factors take their own step from the second step on
    (more cases, and a closed form, in tests/test_fast_adapt_transform.py)."""
    kfo = gbml_ext.GBML(tiny_cnn(), transform=gbml_ext.KroneckerTransform(), lr=0.3,
                        adapt_transform=True)
    perturb_transforms(kfo)
    assert_same_as_per_task(kfo, image_tasks(), steps)


def test_unequal_task_shapes_are_refused():
    tasks = image_tasks(count=1) + image_tasks(count=1, queries=4)
    with pytest.raises(BatchedPathUnsupported, match="Task 1 has shapes"):
        batched_meta_gradient(gbml_ext.MAML(tiny_cnn(), lr=0.1), tasks, 1)


def test_running_statistics_are_refused():
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.BatchNorm2d(4),
                                torch.nn.Flatten(), torch.nn.LazyLinear(WAYS))
    model(torch.zeros(2, 2, IMAGE_SIZE, IMAGE_SIZE))
    with pytest.raises(BatchedPathUnsupported, match="running statistics"):
        batched_meta_gradient(gbml_ext.MAML(model.double(), lr=0.1), image_tasks(), 1)


@pytest.mark.parametrize("kind", ["mlp-classification", "deep-linear-regression", "kfo-mlp"])
def test_linear_models_take_the_direct_path_and_match_the_engine(kind, monkeypatch):
    """Linear stacks skip vmap (gbml_ext.fast.direct); the numbers stay the engine's."""
    from gbml_ext.fast import direct, inner

    calls = []
    monkeypatch.setattr(inner, "direct_forward",
                        lambda *a, **k: calls.append(1) or direct.direct_forward(*a, **k))
    generator = torch.Generator().manual_seed(3)
    torch.manual_seed(3)
    if kind == "deep-linear-regression":
        model = gbml_ext.nn.DeepLinear(4, 2, depth=3).double()
        tasks = [Task(torch.randn(6, 4, generator=generator, dtype=torch.float64),
                      torch.randn(6, 2, generator=generator, dtype=torch.float64),
                      torch.randn(5, 4, generator=generator, dtype=torch.float64),
                      torch.randn(5, 2, generator=generator, dtype=torch.float64))
                 for _ in range(4)]
    else:
        model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(),
                                    torch.nn.Linear(8, WAYS)).double()
        tasks = [Task(torch.randn(6, 4, generator=generator, dtype=torch.float64),
                      torch.arange(6) % WAYS,
                      torch.randn(9, 4, generator=generator, dtype=torch.float64),
                      torch.arange(9) % WAYS) for _ in range(4)]
    transform = gbml_ext.KroneckerTransform() if kind == "kfo-mlp" else None
    learner = gbml_ext.GBML(model, transform=transform, lr=0.3,
                            adapt_transform=kind == "kfo-mlp").double()
    if transform is not None:
        perturb_transforms(learner)
    assert_same_as_per_task(learner, tasks, steps=2)
    assert calls
