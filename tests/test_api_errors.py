"""API surprises for learn2learn users, turned into clear behaviour or clear errors."""
import pytest
import torch
import torch.nn.functional as F

import gbml_ext
from gbml_ext import ANIL, GBML, IMAML, MAML, MetaSGD, Reptile, Task
from gbml_ext.engine import accuracy, default_loss
from gbml_ext.fast import batched_meta_gradient
from gbml_ext.optim import KroneckerTransform
from helpers import classification_task

INTEGER_DTYPES = [torch.int8, torch.int16, torch.uint8, torch.int32, torch.int64]


def conv_anil() -> ANIL:
    body = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(), torch.nn.Flatten())
    return ANIL(body, torch.nn.Linear(2 * 4 * 4, 3), lr=0.5)


def image_task(labels_dtype: torch.dtype = torch.int64) -> Task:
    labels = torch.arange(3).repeat(2).to(labels_dtype)
    return Task(torch.randn(6, 1, 6, 6), labels, torch.randn(6, 1, 6, 6), labels)


# ANIL's learner takes body features, not raw inputs.

def test_anil_learner_on_raw_images_says_to_encode_the_task_first():
    anil, task = conv_anil(), image_task()
    learner = anil.clone()
    with pytest.raises(ValueError, match=r"anil\.encode_task\(task\).*run_task"):
        learner(task.support_x)
    with pytest.raises(ValueError, match=r"\(batch, 32\), got shape \(6, 1, 6, 6\)"):
        learner.clone()(task.support_x)   # a clone of the clone keeps the check


def test_anil_learner_rejects_features_of_the_wrong_size():
    learner = conv_anil().clone()
    with pytest.raises(ValueError, match="encode_task"):
        learner(torch.randn(6, 31))
    assert learner(torch.randn(6, 32)).shape == (6, 3)


def test_anil_learner_on_encoded_features_and_run_task_still_work():
    anil, task = conv_anil(), image_task()
    parameters = list(anil.parameters())
    features = anil.encode_task(task)
    learner = anil.clone()
    for _ in range(2):
        learner.adapt(F.cross_entropy(learner(features.support_x), features.support_y))
    by_hand = F.cross_entropy(learner(features.query_x), features.query_y)
    by_hand_grads = torch.autograd.grad(by_hand, parameters)
    assert all(g.abs().sum() > 0 for g in by_hand_grads)  # the body gets a meta-gradient too
    outcome = gbml_ext.run_task(anil, task, steps=2)
    torch.testing.assert_close(outcome.loss, by_hand)
    grads = torch.autograd.grad(outcome.loss, parameters)
    assert len(grads) == len(by_hand_grads) == 4  # body conv and head, weights and biases
    for got, want in zip(grads, by_hand_grads, strict=True):
        torch.testing.assert_close(got, want)
    assert anil(task.query_x).shape == (6, 3)


# A loss from the meta-model is gbml_ext's own clear error, with nothing printed.

@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("allow_unused", [False, True])
def test_adapt_on_a_loss_of_the_meta_model_is_a_clear_error(capfd, first_order, allow_unused):
    gbml = GBML(torch.nn.Linear(3, 1), lr=0.1, first_order=first_order,
                allow_unused=allow_unused)
    x, y = torch.randn(8, 3), torch.randn(8, 1)
    learner = gbml.clone()
    with pytest.raises(ValueError, match="not computed from this learner's fast weights: call "
                                         r"learner\(x\), not the meta-model"):
        learner.adapt(F.mse_loss(gbml(x), y))
    printed = capfd.readouterr()
    assert "Traceback" not in printed.out + printed.err
    assert "learn2learn" not in printed.out + printed.err


def test_adapt_on_a_loss_of_another_clone_after_a_step_is_a_clear_error():
    gbml = GBML(torch.nn.Linear(3, 1), transform=KroneckerTransform(), lr=0.1)
    x, y = torch.randn(8, 3), torch.randn(8, 1)
    learner, other = gbml.clone(), gbml.clone()
    learner.adapt(F.mse_loss(learner(x), y))
    with pytest.raises(ValueError, match="not computed from this learner's fast weights"):
        learner.adapt(F.mse_loss(other(x), y))


def test_adapt_names_unused_and_frozen_parameters():
    class PartlyUsed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.spare = torch.nn.Linear(3, 1), torch.nn.Linear(3, 1)

        def forward(self, x):
            return self.used(x)

    learner = GBML(PartlyUsed(), lr=0.1).clone()
    with pytest.raises(ValueError, match=r"\['spare.weight', 'spare.bias'\].*allow_unused=True"):
        learner.adapt(learner(torch.randn(4, 3)).pow(2).mean())
    model = PartlyUsed()
    learner = GBML(model, lr=0.1, allow_unused=True).clone()
    x = torch.randn(4, 3)
    learner.adapt(learner(x).sum())  # ∂/∂W = Σx, ∂/∂b = 4 for the used layer, none for spare
    torch.testing.assert_close(learner.module.used.weight, model.used.weight - 0.1 * x.sum(0))
    torch.testing.assert_close(learner.module.used.bias, model.used.bias - 0.1 * 4)
    assert torch.equal(learner.module.spare.weight, model.spare.weight)
    assert torch.equal(learner.module.spare.bias, model.spare.bias)

    model = torch.nn.Linear(3, 1)
    model.bias.requires_grad_(False)
    learner = GBML(model, lr=0.1).clone()
    with pytest.raises(ValueError, match=r"\['bias'\].*allow_nograd=True"):
        learner.adapt(learner(torch.randn(4, 3)).pow(2).mean())
    learner = GBML(model, lr=0.1, allow_nograd=True).clone()
    learner.adapt(learner(x).sum())
    torch.testing.assert_close(learner.module.weight, model.weight - 0.1 * x.sum(0))
    assert torch.equal(learner.module.bias, model.bias)  # frozen: no step


# adapt() on the meta-learner itself (not a clone) is refused before it changes anything.

META_LEARNERS = {
    "GBML": lambda: GBML(torch.nn.Linear(3, 2), lr=0.1),
    "MAML": lambda: MAML(torch.nn.Linear(3, 2), lr=0.1, first_order=True),
    "Meta-KFO": lambda: GBML(torch.nn.Linear(3, 2), transform=KroneckerTransform(), lr=0.1),
    "MetaSGD": lambda: MetaSGD(torch.nn.Linear(3, 2), lr=0.1),
    "Reptile": lambda: Reptile(torch.nn.Linear(3, 2), lr=0.1),
    "IMAML": lambda: IMAML(torch.nn.Linear(3, 2), lr=0.1),
    "ANIL's head": lambda: ANIL(torch.nn.Identity(), torch.nn.Linear(3, 2), lr=0.1).head,
}


@pytest.mark.parametrize("name", list(META_LEARNERS))
def test_adapt_on_the_meta_learner_itself_says_to_clone_first(name):
    meta = META_LEARNERS[name]()
    before = [p.detach().clone() for p in meta.parameters()]
    x, y = torch.randn(8, 3), torch.randint(0, 2, (8,))
    with pytest.raises(ValueError, match=r"on the meta-learner itself.*call clone\(\) first"):
        meta.adapt(F.cross_entropy(meta(x), y))
    after = list(meta.parameters())
    assert all(isinstance(p, torch.nn.Parameter) and p.is_leaf for p in after)
    assert len(after) == len(before)
    assert all(torch.equal(a, b) for a, b in zip(after, before, strict=True))
    for _ in range(2):  # meta-iterations still run: the meta-parameters are leaves as before
        meta.zero_grad()
        learner = meta.clone()
        learner.adapt(F.cross_entropy(learner(x), y))
        inner = learner.clone()  # a clone of a clone adapts too
        inner.adapt(F.cross_entropy(inner(x), y))
        F.cross_entropy(learner(x), y).backward()
        assert all(p.grad is not None for p in meta.module.parameters())


# Integer labels of any dtype are classification; float labels never silently broadcast.

@pytest.mark.parametrize("dtype", INTEGER_DTYPES)
def test_integer_labels_of_any_dtype_are_classification(dtype):
    logits, labels = torch.randn(6, 3), torch.tensor([0, 1, 2, 2, 1, 0])
    loss = default_loss(labels.to(dtype))(logits, labels.to(dtype))
    torch.testing.assert_close(loss, F.cross_entropy(logits, labels))
    torch.testing.assert_close(accuracy(logits, labels.to(dtype)), accuracy(logits, labels))
    assert accuracy(logits, labels) is not None


@pytest.mark.parametrize("dtype", INTEGER_DTYPES)
def test_run_task_and_batched_path_take_any_integer_labels(dtype):
    task = classification_task(dtype=torch.float32)
    narrow = Task(task.support_x, task.support_y.to(dtype), task.query_x, task.query_y.to(dtype))
    torch.manual_seed(0)
    reference = gbml_ext.run_task(GBML(torch.nn.Linear(4, 3), lr=0.5), task, steps=2)
    torch.manual_seed(0)
    outcome = gbml_ext.run_task(GBML(torch.nn.Linear(4, 3), lr=0.5), narrow, steps=2)
    torch.testing.assert_close(outcome.loss, reference.loss)
    assert outcome.accuracy is not None and outcome.accuracy == reference.accuracy
    anil, images = conv_anil(), image_task()
    wide = gbml_ext.run_task(anil, images, steps=1)
    narrow_images = Task(images.support_x, images.support_y.to(dtype), images.query_x,
                         images.query_y.to(dtype))
    outcome = gbml_ext.run_task(anil, narrow_images, steps=1)
    torch.testing.assert_close(outcome.loss, wide.loss)
    assert outcome.accuracy is not None and outcome.accuracy == wide.accuracy
    maml = MAML(torch.nn.Linear(4, 3), lr=0.5)
    per_task = gbml_ext.run_task(maml, task, steps=1)
    [batched] = batched_meta_gradient(maml, [narrow], steps=1)
    torch.testing.assert_close(batched.loss, per_task.loss.detach())
    assert batched.accuracy is not None and batched.accuracy == per_task.accuracy


def test_float_class_labels_are_a_clear_error_not_broadcast_mse():
    task = classification_task(dtype=torch.float32)
    as_float = Task(task.support_x, task.support_y.float(), task.query_x, task.query_y.float())
    with pytest.raises(ValueError, match=r"integer class labels \(y\.long\(\)\)"):
        default_loss(as_float.support_y)(torch.randn(6, 3), as_float.support_y)
    with pytest.raises(ValueError, match=r"shape \(6,\).*\(6, 3\)"):
        gbml_ext.run_task(GBML(torch.nn.Linear(4, 3), lr=0.5), as_float, steps=1)


def test_float_regression_targets_of_the_outputs_shape_still_use_mse():
    outputs, targets = torch.randn(5, 2), torch.randn(5, 2)
    torch.testing.assert_close(default_loss(targets)(outputs, targets),
                               F.mse_loss(outputs, targets))
    assert accuracy(outputs, targets) is None


# MAML and MetaSGD are classes.

def test_maml_is_a_gbml_class_whose_clone_works():
    model = torch.nn.Linear(3, 1)
    maml = MAML(model, lr=0.2, first_order=True)
    assert isinstance(maml, MAML) and isinstance(maml, GBML)
    assert not isinstance(GBML(torch.nn.Linear(3, 1)), MAML)
    assert maml.first_order and maml.lr == 0.2 and maml.transform is None
    learner = maml.clone()
    assert isinstance(learner, MAML) and learner.first_order
    x, y = torch.randn(8, 3), torch.randn(8, 1)
    learner.adapt(F.mse_loss(learner(x), y))
    F.mse_loss(learner(x), y).backward()
    assert model.weight.grad is not None
    with pytest.raises(ValueError, match="no transform"):
        MAML(torch.nn.Linear(3, 1), transform=KroneckerTransform())


def test_metasgd_is_a_gbml_class_whose_clone_learns_the_rates():
    meta_sgd = MetaSGD(torch.nn.Linear(3, 2), lr=0.05)
    assert isinstance(meta_sgd, MetaSGD) and isinstance(meta_sgd, GBML)
    assert meta_sgd.lr == 1.0
    rates = list(meta_sgd.compute_update.parameters())
    weights = list(meta_sgd.module.parameters())
    assert [r.shape for r in rates] == [w.shape for w in weights] == [(2, 3), (2,)]
    assert all(torch.all(r == 0.05) for r in rates)
    learner = meta_sgd.clone()
    assert isinstance(learner, MetaSGD)
    x, y = torch.randn(8, 3), torch.randint(0, 2, (8,))
    gradients = torch.autograd.grad(F.cross_entropy(meta_sgd(x), y), weights)
    learner.adapt(F.cross_entropy(learner(x), y))
    for adapted, w, g in zip(learner.module.parameters(), weights, gradients, strict=True):
        torch.testing.assert_close(adapted, w - 0.05 * g)  # θ' = θ − α ⊙ ∇L, α = 0.05
    F.cross_entropy(learner(x), y).backward()
    assert all(r.grad is not None and r.grad.abs().sum() > 0 for r in rates)
