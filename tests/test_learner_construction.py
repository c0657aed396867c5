"""What a learner refuses when it is built, with a message that names the fix: arguments Reptile
cannot honour, a learning rate that is not a positive finite number, a model with no
parameters, and a transform selection that matches none of the model's parameters."""
import math

import numpy as np
import pytest
import torch

from gbml_ext import ANIL, GBML, IMAML, MAML, MetaSGD, Reptile
from gbml_ext.optim import KroneckerTransform

# Reptile refuses arguments it cannot honour.

def test_reptile_refuses_a_transform():
    with pytest.raises(ValueError, match="transform="):
        Reptile(torch.nn.Linear(3, 2), transform=KroneckerTransform())


def test_reptile_refuses_second_order():
    with pytest.raises(ValueError, match="first_order=False"):
        Reptile(torch.nn.Linear(3, 2), first_order=False)


def sum_loss_step(learner: GBML, x: torch.Tensor, rate: float) -> list:
    """Takes one `adapt` of a Linear learner on sum(W x + b) over the batch and returns the
    (W, b) one step of size `rate` gives in closed form: ∂/∂W = 1 ⊗ Σx and ∂/∂b = n, so
    W − rate · 1 ⊗ Σx and b − rate · n."""
    weight, bias = (p.detach().clone() for p in (learner.module.weight, learner.module.bias))
    learner.adapt(learner(x).sum())
    return [weight - rate * x.sum(0).expand_as(weight), bias - rate * len(x)]


@pytest.mark.parametrize("first_order", [True, None], ids=["first_order=True", "omitted"])
def test_reptile_accepts_first_order_true_or_omitted_and_takes_plain_sgd_steps(first_order):
    options = {} if first_order is None else {"first_order": first_order}
    reptile = Reptile(torch.nn.Linear(3, 2), lr=0.1, transform=None, **options)
    assert reptile.first_order and reptile.transform is None and reptile.lr == 0.1
    meta = [p.detach().clone() for p in reptile.parameters()]
    learner = reptile.clone()
    assert isinstance(learner, Reptile) and learner.first_order
    expected = sum_loss_step(learner, torch.randn(5, 3), 0.1)
    for got, want in zip(learner.module.parameters(), expected, strict=True):
        torch.testing.assert_close(got, want)
    assert all(torch.equal(p, m) for p, m in zip(reptile.parameters(), meta, strict=True))


# The inner learning rate must be a positive finite number, given as a number.

BUILDERS = {
    "GBML": lambda lr: GBML(torch.nn.Linear(3, 2), lr=lr),
    "MAML": lambda lr: MAML(torch.nn.Linear(3, 2), lr=lr),
    "MetaSGD": lambda lr: MetaSGD(torch.nn.Linear(3, 2), lr=lr),
    "Reptile": lambda lr: Reptile(torch.nn.Linear(3, 2), lr=lr),
    "ANIL": lambda lr: ANIL(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2), lr=lr),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
@pytest.mark.parametrize("lr", [0, 0.0, -1, math.nan, math.inf, -math.inf, "fast", "0.1", True,
                                None, [0.1], torch.tensor([0.1, 0.2])],
                         ids=lambda lr: repr(lr) if not isinstance(lr, torch.Tensor) else "2x")
def test_bad_learning_rate_is_an_error_naming_lr(name, lr):
    with pytest.raises(ValueError, match=rf"{name} got lr=.*positive finite.*lr=0\.1"):
        BUILDERS[name](lr)


def test_a_learning_rate_given_as_text_names_its_type():
    with pytest.raises(ValueError, match=r"GBML got lr='0\.1' \(a str\)"):
        GBML(torch.nn.Linear(3, 2), lr="0.1")
    with pytest.raises(ValueError, match=r"IMAML got lr='0\.1': pass a finite lr > 0"):
        IMAML(torch.nn.Linear(3, 2), lr="0.1")


@pytest.mark.parametrize("name", sorted(BUILDERS))
@pytest.mark.parametrize("lr", [1e-3, 2, np.float32(0.25), torch.tensor(0.5)],
                         ids=["float", "int", "numpy", "tensor"])
def test_a_positive_learning_rate_is_the_first_step_size(name, lr):
    learner = BUILDERS[name](lr).clone()  # ANIL's clone is its head, on 4 features
    x = torch.randn(5, learner.module.in_features)
    expected = sum_loss_step(learner, x, float(lr))  # MetaSGD's rates start at lr
    for got, want in zip(learner.module.parameters(), expected, strict=True):
        torch.testing.assert_close(got, want)


# A model with no parameters has nothing to adapt.

NO_PARAMETERS = {"ReLU": torch.nn.ReLU, "empty Sequential": torch.nn.Sequential}


@pytest.mark.parametrize("model", sorted(NO_PARAMETERS))
@pytest.mark.parametrize("learner", [GBML, MAML, MetaSGD, Reptile, IMAML])
def test_a_model_with_no_parameters_is_refused_at_construction(learner, model):
    module = NO_PARAMETERS[model]()
    with pytest.raises(ValueError, match=rf"{learner.__name__} got a module with no parameters "
                                         rf"\({type(module).__name__}\).*nn\.Linear"):
        learner(module, lr=0.1)


def test_anil_with_a_head_of_no_parameters_is_refused():
    with pytest.raises(ValueError, match=r"no parameters \(ReLU\)"):
        ANIL(torch.nn.Linear(3, 4), torch.nn.ReLU(), lr=0.1)


@pytest.mark.parametrize("model", sorted(NO_PARAMETERS))
def test_kronecker_transform_refuses_a_model_with_no_parameters(model):
    module = NO_PARAMETERS[model]()
    with pytest.raises(ValueError, match=rf"KroneckerTransform got a model with no parameters "
                                         rf"\({type(module).__name__}\)"):
        KroneckerTransform().check_names(module)
    with pytest.raises(ValueError, match="no parameters"):
        GBML(module, transform=KroneckerTransform(), lr=0.1)
    KroneckerTransform().check_names(torch.nn.Linear(3, 2))


# A transform selection must match some parameter of the module.

def test_transform_for_a_missing_name_lists_the_parameters():
    with pytest.raises(ValueError, match=r"\['nope'\].*\['bias', 'weight'\]"):
        GBML(torch.nn.Linear(3, 2), transform=KroneckerTransform(params=["nope"]))


@pytest.mark.parametrize("params", [lambda name: name.startswith("head"), []])
def test_transform_selecting_nothing_lists_the_parameters(params):
    with pytest.raises(ValueError, match=r"selects none.*\['weight', 'bias'\]"):
        GBML(torch.nn.Linear(3, 2), transform=KroneckerTransform(params=params))
    with pytest.raises(ValueError, match=r"selects none.*\['weight', 'bias'\]"):
        ANIL(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2),
             transform=KroneckerTransform(params=params))


def test_transform_selecting_some_parameters_is_fine():
    kfo = GBML(torch.nn.Linear(3, 2), transform=KroneckerTransform(params=lambda n: "weight" in n))
    assert kfo.compute_update.transforms_indices == [0, None]
