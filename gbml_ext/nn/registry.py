"""The models a config names (`model.name`), each built from the shape of the tasks.

A `ModelSpec` holds a builder `(TaskShape, **model.options) -> nn.Module` and whether the model
takes vectors (the synthetic rows: `TaskShape.inputs` is then the input size). The runner reads
the shape off the config's data section and calls the builder; the benchmark builds its models
the same way.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Optional

from torch import nn

from ..registry import Registry
from .backbones import cifarfs_cnn4, mini_imagenet_cnn4, omniglot_cnn4
from .deep_linear import DeepLinear

__all__ = ["MODELS", "ModelSpec", "TaskShape"]


class TaskShape(NamedTuple):
    """What a model builder knows of the tasks.

    Attributes:
        outputs: the ways of a classification task, or a regression task's output size.
        inputs: the size of a vector input (inputs of shape (batch, inputs)); None for images.

    Example:
        >>> TaskShape(outputs=1, inputs=4)
        TaskShape(outputs=1, inputs=4)
    """

    outputs: int
    inputs: Optional[int] = None


@dataclass(frozen=True)
class ModelSpec:
    """One registered model, as `MODELS[model.name]` holds it.

    Attributes:
        build: `(TaskShape, **options) -> nn.Module`; the options are the config's
            `model.options`. A vector model given a shape without `inputs` raises `ValueError`.
        vectors: the model takes vectors (batch, shape.inputs), so `shape.inputs` must be set;
            else images.

    Example:
        >>> MODELS["linear"].build(TaskShape(outputs=1, inputs=4))
        Linear(in_features=4, out_features=1, bias=True)
        >>> spec = MODELS["omniglot_cnn4"]
        >>> spec.vectors, spec.build(TaskShape(outputs=5), hidden=4).classifier.out_features
        (False, 5)
    """

    build: Callable[..., nn.Module]
    vectors: bool = False


def _vector_shape(shape: TaskShape) -> tuple[int, int]:
    if shape.inputs is None:
        raise ValueError("this model takes vectors, and the tasks have no input size")
    return shape.inputs, shape.outputs


def _linear(shape: TaskShape, **options: Any) -> nn.Module:
    return nn.Linear(*_vector_shape(shape), **options)


def _deep_linear(shape: TaskShape, **options: Any) -> nn.Module:
    return DeepLinear(*_vector_shape(shape), **options)


MODELS: Registry[ModelSpec] = Registry("model.name")
MODELS.register("linear", ModelSpec(_linear, vectors=True), doc="one Linear layer")
MODELS.register("deep_linear", ModelSpec(_deep_linear, vectors=True),
                doc="a deep linear network (`DeepLinear`)")
MODELS.register("omniglot_cnn4", ModelSpec(lambda shape, **o: omniglot_cnn4(shape.outputs, **o)),
                doc="Omniglot's CNN4, 28x28x1")
MODELS.register("mini_imagenet_cnn4",
                ModelSpec(lambda shape, **o: mini_imagenet_cnn4(shape.outputs, **o)),
                doc="mini-ImageNet's CNN4, 84x84x3")
MODELS.register("cifarfs_cnn4", ModelSpec(lambda shape, **o: cifarfs_cnn4(shape.outputs, **o)),
                doc="CIFAR-FS's CNN4, 32x32x3")
