"""The runner asks a registry's entry what only the entry knows: a transform says at which
precision it trains badly, a synthetic source its default sizes and the classes of its tasks,
the LinNet head which of its parameters are hidden. A new entry of the same kind is then
treated by what it says, not as the entry the runner once had in mind."""
from typing import Any, Iterator, Optional

import pytest
import torch

from gbml_ext.data.synthetic import SYNTHETIC_SOURCES, LinearRegressionTasks
from gbml_ext.nn import linnet
from gbml_ext.nn.deep_linear import linnet_hidden_parameters
from gbml_ext.optim import TRANSFORMS, TransformFactory
from gbml_ext.runner import ConfigError, load_config, train
from gbml_ext.runner.build import build_learner
from run_fixtures import TINY


class _Halve(torch.nn.Module):
    def forward(self, grad: torch.Tensor) -> torch.Tensor:
        return grad / 2


class _HalfStep(TransformFactory):
    def build(self, name: str, param: torch.Tensor) -> torch.nn.Module:
        return _Halve()


class _SmallTasks(LinearRegressionTasks):
    """A synthetic source whose default input size is its own."""

    def __init__(self, dim: int = 3, **options: Any):
        super().__init__(dim=dim, **options)


class _OneClassTasks(LinearRegressionTasks):
    classes = 1


@pytest.fixture
def entries() -> Iterator[None]:
    TRANSFORMS.register("half-step", lambda section: _HalfStep())
    SYNTHETIC_SOURCES.register("small-regression", _SmallTasks)
    SYNTHETIC_SOURCES.register("one-class", _OneClassTasks)
    yield
    TRANSFORMS.unregister("half-step")
    SYNTHETIC_SOURCES.unregister("small-regression")
    SYNTHETIC_SOURCES.unregister("one-class")


def _bf16_warning(capsys: Any, tmp_path: Any, transform: str) -> Optional[str]:
    train(load_config(None, TINY + [f"output_dir='{tmp_path / transform}'", "precision=bf16",
                                    f"algorithm.transform={transform}", "train.iterations=1"]),
          progress=False)
    lines = [x for x in capsys.readouterr().err.splitlines() if "bf16" in x]
    return lines[0] if lines else None


def test_only_the_transform_that_trains_badly_in_bf16_warns(entries, tmp_path, capsys):
    assert _bf16_warning(capsys, tmp_path, "half-step") is None
    warning = _bf16_warning(capsys, tmp_path, "kronecker")
    assert warning is not None and "Kronecker" in warning and "fp32" in warning


def test_a_synthetic_source_gives_its_own_default_input_size(entries):
    config = load_config(None, ["data.source=small-regression"])
    learner = build_learner(config)
    assert learner.module.in_features == 3  # the source's default dim, not its base class's
    assert _SmallTasks.sizes({})["dim"] == 3 and _SmallTasks.sizes({"dim": 5})["dim"] == 5
    assert _SmallTasks(seed=0).sample().support_x.shape[1] == 3


def test_a_synthetic_source_says_how_many_classes_its_tasks_have(entries):
    with pytest.raises(ConfigError, match="one class"):
        load_config(None, ["data.source=one-class"])
    assert load_config(None, ["data.source=logistic-regression", "data.ways=1"])
    with pytest.raises(ConfigError, match="data.ways = 1"):
        load_config(None, ["data.source=omniglot", "data.ways=1"])


def test_the_linnet_head_names_its_hidden_parameters():
    model = linnet(torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(),
                                       torch.nn.Linear(6, 2)), depth=3, width=5)
    head = model[2]
    hidden = {id(p) for p in linnet_hidden_parameters(model)}
    assert hidden == {id(p) for layer in head.layers[:2] for p in layer.parameters()}
    assert not hidden & {id(p) for p in head.layers[2].parameters()}
    assert linnet_hidden_parameters(torch.nn.Linear(4, 2)) == []
