"""The compiled path: FOMAML's meta-gradient against a closed form, evaluation curves against the
per-task engine, and which algorithms it takes. Compiling costs seconds, so the default suite
compiles only a linear model; the CNN check is slow."""
import pytest
import torch

import gbml_ext
from gbml_ext import Task
from gbml_ext.engine import adaptation_curve
from gbml_ext.fast import CompiledPathUnsupported, choose_path
from gbml_ext.fast.compiled import compiled_adaptation_curves, compiled_meta_gradient


def _regression_tasks(count: int, n: int = 6, dim: int = 3):
    generator = torch.Generator().manual_seed(0)
    return [Task(torch.randn(n, dim, generator=generator), torch.randn(n, 1, generator=generator),
                 torch.randn(n, dim, generator=generator), torch.randn(n, 1, generator=generator))
            for _ in range(count)]


def _mse_gradient(w, b, x, y):
    """∇ of mean((x w + b - y)²) by hand: (2/n) xᵀr and (2/n) Σr, r the residuals."""
    residual = x @ w + b - y
    return 2 * x.t() @ residual / len(x), 2 * residual.sum(0) / len(x)


def test_fomaml_meta_gradient_equals_the_closed_form():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    fomaml = gbml_ext.MAML(model, lr=0.3, first_order=True)
    tasks = _regression_tasks(3)
    outcomes = compiled_meta_gradient(fomaml, tasks, steps=2)
    w0, b0 = model.weight.detach().t().double(), model.bias.detach().double()
    expected_w, expected_b = torch.zeros_like(w0), torch.zeros_like(b0)
    for task in tasks:
        w, b = w0, b0
        for _ in range(2):
            gw, gb = _mse_gradient(w, b, task.support_x.double(), task.support_y.double())
            w, b = w - 0.3 * gw, b - 0.3 * gb
        gw, gb = _mse_gradient(w, b, task.query_x.double(), task.query_y.double())
        expected_w += gw / len(tasks)
        expected_b += gb / len(tasks)
    torch.testing.assert_close(model.weight.grad.double(), expected_w.t(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.bias.grad.double(), expected_b, rtol=1e-5, atol=1e-6)
    assert len(outcomes) == 3 and outcomes[0].accuracy is None


def test_evaluation_curves_equal_the_per_task_engine():
    torch.manual_seed(1)
    maml = gbml_ext.MAML(torch.nn.Linear(3, 1), lr=0.2)  # second order: evaluation only
    tasks = _regression_tasks(2)
    curves = compiled_adaptation_curves(maml, tasks, steps=3)
    for task, curve in zip(tasks, curves, strict=True):
        reference = adaptation_curve(maml, task, 3)
        got = torch.stack([outcome.loss for outcome in curve])
        want = torch.stack([outcome.loss for outcome in reference])
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


def test_the_path_compiles_what_it_can_and_names_the_rest():
    maml = gbml_ext.MAML(torch.nn.Linear(3, 1), lr=0.1)
    fomaml = gbml_ext.MAML(torch.nn.Linear(3, 1), lr=0.1, first_order=True)
    assert choose_path("compiled", maml, training=False) == "compiled"
    assert choose_path("compiled", maml, training=True) == "per-task"  # no double backward
    assert choose_path("compiled", fomaml, training=True) == "compiled"
    assert choose_path("auto", fomaml, "cpu") == "batched"  # "auto" never compiles
    kfo = gbml_ext.GBML(torch.nn.Linear(3, 2), transform=gbml_ext.KroneckerTransform(), lr=0.1)
    for learner, message in [(kfo, "transform"),
                             (gbml_ext.Reptile(torch.nn.Linear(3, 1)), "plain GBML")]:
        with pytest.raises(CompiledPathUnsupported, match=message):
            choose_path("compiled", learner)
    with pytest.raises(CompiledPathUnsupported, match="double backward"):
        compiled_meta_gradient(maml, _regression_tasks(1), 1)


@pytest.fixture
def float64():
    """Float64 puts 1e-5 far above rounding, even for conv biases whose gradient is ~0."""
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


@pytest.mark.slow
def test_cnn_fomaml_and_evaluation_equal_the_per_task_engine(float64):
    torch.manual_seed(0)
    tasks = [Task(torch.rand(5, 1, 28, 28), torch.arange(5), torch.rand(10, 1, 28, 28),
                  torch.arange(10) % 5) for _ in range(2)]
    gradients = []
    for compiled in (False, True):
        torch.manual_seed(0)
        # Two conv blocks: a CNN all the same (conv, batch-norm, pooling), compiled faster.
        fomaml = gbml_ext.MAML(gbml_ext.nn.omniglot_cnn4(ways=5, hidden=8, layers=2), lr=0.4,
                               first_order=True)
        if compiled:
            compiled_meta_gradient(fomaml, tasks, 2)
        else:
            fomaml.accumulate_meta_gradient(tasks, 2)
        gradients.append({n: p.grad for n, p in fomaml.named_parameters()})
    total = torch.cat([g.flatten() for g in gradients[0].values()]).norm()
    for name, expected in gradients[0].items():
        scale = torch.maximum(expected.norm(), 1e-3 * total)  # conv biases before BN: ~0
        assert float((gradients[1][name] - expected).norm() / scale) < 1e-5, name
    curves = compiled_adaptation_curves(fomaml, tasks, 2)
    for task, curve in zip(tasks, curves, strict=True):
        reference = adaptation_curve(fomaml, task, 2)
        for got, want in zip(curve, reference, strict=True):
            torch.testing.assert_close(got.loss, want.loss, rtol=1e-5, atol=1e-8)
            assert float(got.accuracy) == float(want.accuracy)


def test_runner_takes_the_compiled_path_when_asked(tmp_path):
    from gbml_ext.runner import load_config, train

    overrides = ["data.options={dim=3, n_support=6, n_query=6}", "train.iterations=3",
                 "train.meta_batch=2", "evaluation.tasks=4", "algorithm.name=fomaml",
                 "algorithm.path=compiled", f"output_dir='{tmp_path}'", "train.plot=false"]
    result = train(load_config(None, overrides), progress=False)
    assert result.results["path"] == "compiled"
    reference = train(load_config(None, [o for o in overrides if "path" not in o and
                                         "output_dir" not in o]
                                  + ["algorithm.path=per-task", f"output_dir='{tmp_path}/ref'"]),
                      progress=False)
    torch.testing.assert_close(torch.tensor(result.results["evaluation"]["loss"]["mean"]),
                               torch.tensor(reference.results["evaluation"]["loss"]["mean"]),
                               rtol=1e-5, atol=1e-7)
