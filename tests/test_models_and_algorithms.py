"""Deep-linear heads, backbones, ANIL and Reptile."""
import pytest
import torch
import torch.nn.functional as F

import gbml_ext
from gbml_ext.nn import DeepLinear, cifarfs_cnn4, linnet, mini_imagenet_cnn4, omniglot_cnn4
from helpers import classification_task, params_snapshot


@pytest.mark.parametrize("depth,width,bias", [(1, None, True), (3, 16, True), (4, 7, False)])
def test_deep_linear_collapse_computes_the_same_function(depth, width, bias):
    head = DeepLinear(10, 4, depth=depth, width=width, bias=bias)
    x = torch.randn(32, 10)
    single = head.collapse()
    assert isinstance(single, torch.nn.Linear)
    torch.testing.assert_close(single(x), head(x), atol=1e-5, rtol=1e-5)


def test_linnet_replaces_final_linear_and_keeps_shapes():
    model = omniglot_cnn4(ways=5)
    linnet(model, depth=3)
    assert isinstance(model.classifier, DeepLinear) and len(model.classifier.layers) == 3
    assert model(torch.randn(4, 1, 28, 28)).shape == (4, 5)
    with pytest.raises(ValueError, match="not an nn.Linear"):
        linnet(model, attr="features")


@pytest.mark.parametrize("build,shape,features", [
    (omniglot_cnn4, (2, 1, 28, 28), 64), (mini_imagenet_cnn4, (2, 3, 84, 84), 800),
    (cifarfs_cnn4, (2, 3, 32, 32), 32)])
def test_backbones_have_the_standard_shapes(build, shape, features):
    net = build(ways=5)
    assert net.classifier.in_features == features
    assert net(torch.randn(*shape)).shape == (2, 5)


def test_anil_adapts_only_the_head_and_meta_learns_the_body():
    torch.manual_seed(0)
    body = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh())
    anil = gbml_ext.ANIL(body, torch.nn.Linear(8, 3), lr=0.5).double()
    calls = []
    body.register_forward_hook(lambda *args: calls.append(1))
    body_before = params_snapshot(body)
    task = classification_task()
    outcome = gbml_ext.run_task(anil, task, steps=3)
    assert len(calls) == 1, "body features must be computed once per task"
    for a, b in zip(params_snapshot(body), body_before, strict=True):
        assert torch.equal(a, b)
    outcome.loss.backward()
    assert all(p.grad is not None and p.grad.abs().max() > 0 for p in body.parameters())


def test_anil_body_gradient_matches_finite_differences():
    torch.manual_seed(0)
    body = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh())
    anil = gbml_ext.ANIL(body, torch.nn.Linear(5, 3), lr=0.5).double()
    task = classification_task()
    anil.zero_grad()
    gbml_ext.run_task(anil, task, 2).loss.backward()
    from helpers import finite_difference_grad
    numeric = finite_difference_grad(lambda: gbml_ext.run_task(anil, task, 2).loss,
                                     [body[0].weight])
    torch.testing.assert_close(body[0].weight.grad, numeric[0], rtol=1e-6, atol=1e-8)


def test_reptile_update_is_interpolation_towards_adapted_weights():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3))
    model = model.double()
    tasks = [classification_task(seed=s) for s in range(2)]
    theta = params_snapshot(model)
    # φ by hand: k plain SGD steps on a detached copy of θ, one copy per task.
    phis = []
    for task in tasks:
        weights = [t.clone().requires_grad_() for t in theta]
        for _ in range(3):
            h = torch.tanh(task.support_x @ weights[0].T + weights[1])
            loss = F.cross_entropy(h @ weights[2].T + weights[3], task.support_y)
            grads = torch.autograd.grad(loss, weights)
            weights = [(w - 0.4 * g).detach().requires_grad_()
                       for w, g in zip(weights, grads, strict=True)]
        phis.append([w.detach() for w in weights])
    reptile = gbml_ext.Reptile(model, lr=0.4)
    outer = torch.optim.SGD(reptile.parameters(), lr=0.25)
    outer.zero_grad()
    reptile.accumulate_meta_gradient(tasks, steps=3)
    outer.step()
    for i, p in enumerate(model.parameters()):
        mean_phi = (phis[0][i] + phis[1][i]) / 2
        torch.testing.assert_close(p.detach(), theta[i] + 0.25 * (mean_phi - theta[i]),
                                   rtol=1e-10, atol=1e-12)
