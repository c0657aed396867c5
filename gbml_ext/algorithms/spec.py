"""The algorithm registry: what the runner needs to know of each algorithm, by its config name.

An `AlgorithmSpec` holds the builder (`[algorithm]` section, model, transform -> learner) and
what a config check needs (whether the algorithm takes a gradient transform, and which part of
the model adapts). Each algorithm's module registers its own with `register_algorithm`; the
runner's schema takes `ALGORITHMS.names()` as `algorithm.name`'s allowed values.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from torch import nn

from ..registry import Registry

__all__ = ["ALGORITHMS", "AlgorithmSpec", "Builder", "register_algorithm"]

# (the config's [algorithm] section, the model, a gradient transform or None) -> the learner.
# The section is a `gbml_ext.runner.schema.AlgorithmConfig`: inner_lr, adapt_transform, ...
Builder = Callable[[Any, nn.Module, Optional[Callable]], nn.Module]


def _whole(model: nn.Module) -> nn.Module:
    return model


@dataclass(frozen=True)
class AlgorithmSpec:
    """One registered algorithm.

    Attributes:
        build: `(section, model, transform) -> learner`; `transform` is the gradient transform
            the config asks for (Meta-KFO's, or the frozen LinNet layers'), or None. A model
            the algorithm cannot wrap is a `ValueError` whose message says what to use.
        no_transform: why the algorithm takes no gradient transform (a config that sets one is
            refused with this line), or "" when it takes one.
        adapted: the part of the model whose parameters adapt in the inner loop (ANIL: the
            classifier), where the runner looks up the parameters it freezes.

    Example:
        >>> import torch, gbml_ext
        >>> from gbml_ext.runner.schema import AlgorithmConfig
        >>> spec = ALGORITHMS["metasgd"]
        >>> learner = spec.build(AlgorithmConfig(name="metasgd", inner_lr=0.1),
        ...                      torch.nn.Linear(3, 2), None)
        >>> type(learner).__name__, spec.takes_transform
        ('MetaSGD', False)
        >>> model = gbml_ext.nn.omniglot_cnn4(ways=5, hidden=4)
        >>> ALGORITHMS["anil"].adapted(model) is model.classifier
        True
    """

    build: Builder
    no_transform: str = ""
    adapted: Callable[[nn.Module], nn.Module] = field(default=_whole)

    @property
    def takes_transform(self) -> bool:
        """Whether a config may give this algorithm a gradient transform."""
        return not self.no_transform


ALGORITHMS: Registry[AlgorithmSpec] = Registry("algorithm.name")


def register_algorithm(name: str, *, no_transform: str = "",
                       adapted: Callable[[nn.Module], nn.Module] = _whole,
                       aliases: Sequence[str] = (), doc: str = ""
                       ) -> Callable[[Builder], Builder]:
    """A decorator registering a builder in `ALGORITHMS` as an `AlgorithmSpec`.

    Example:
        >>> import torch, gbml_ext
        >>> @register_algorithm("half-maml", doc="MAML at half the configured step")
        ... def build_half(section, model, transform):
        ...     return gbml_ext.GBML(model, transform, lr=section.inner_lr / 2)
        >>> "half-maml" in ALGORITHMS
        True
        >>> _ = ALGORITHMS.unregister("half-maml")
    """
    def register(build: Builder) -> Builder:
        ALGORITHMS.register(name, AlgorithmSpec(build, no_transform, adapted), aliases=aliases,
                            doc=doc)
        return build

    return register
