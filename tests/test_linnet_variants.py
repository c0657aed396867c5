"""LinNet variants for the LinNet question: initializations and frozen extra layers."""
import pytest
import torch

from gbml_ext.engine import run_task
from gbml_ext.nn import DeepLinear
from gbml_ext.runner import load_config
from gbml_ext.runner.build import build_learner
from helpers import classification_task


def test_identity_init_starts_as_the_plain_head_and_scaled_keeps_its_norm():
    plain = torch.nn.Linear(16, 5)
    x = torch.randn(9, 16)
    for width in (16, 40):
        deep = DeepLinear(16, 5, depth=3, width=width, init="identity", like=plain)
        assert torch.allclose(deep(x), plain(x), atol=1e-5)
        hidden = deep.layers[0].weight
        assert torch.allclose(hidden.T @ hidden, torch.eye(16), atol=1e-5)  # an isometry
    scaled = DeepLinear(16, 5, depth=3, width=40, init="scaled", like=plain)
    product = scaled.layers[2].weight @ scaled.layers[1].weight @ scaled.layers[0].weight
    assert product.norm().item() == pytest.approx(plain.weight.norm().item(), rel=1e-5)
    orthogonal = DeepLinear(16, 5, depth=2, width=16, init="orthogonal")
    w = orthogonal.layers[0].weight
    assert torch.allclose(w @ w.T, torch.eye(16), atol=1e-5)
    with pytest.raises(ValueError, match="width >= in_features"):
        DeepLinear(16, 5, depth=2, width=8, init="identity")


@pytest.mark.parametrize("algorithm", ["maml", "anil"])
def test_frozen_extra_layers_do_not_adapt_but_are_meta_learned(algorithm):
    config = load_config(None, ["data.source=omniglot", "model.name=omniglot_cnn4",
                                "model.options={hidden=4, layers=2}", "model.linnet_depth=3",
                                "model.linnet_adapt_hidden=false", f"algorithm.name={algorithm}"])
    learner = build_learner(config).double()
    task = classification_task(ways=5, shots=1, queries=2, dim=1)
    g = torch.Generator().manual_seed(0)
    task = type(task)(torch.rand(5, 1, 28, 28, generator=g, dtype=torch.float64), task.support_y,
                      torch.rand(10, 1, 28, 28, generator=g, dtype=torch.float64), task.query_y)
    head = learner.module.classifier if algorithm == "maml" else learner.head.module
    clone = learner.clone()
    encoded = learner.encode_task(task)
    clone.adapt(torch.nn.functional.cross_entropy(clone(encoded.support_x), task.support_y))
    adapted = clone.module.classifier if algorithm == "maml" else clone.module
    for i in range(3):
        moved = not torch.equal(head.layers[i].weight, adapted.layers[i].weight)
        assert moved == (i == 2), f"layer {i}"
    run_task(learner, task, steps=1).loss.backward()
    assert head.layers[0].weight.grad.abs().sum() > 0
