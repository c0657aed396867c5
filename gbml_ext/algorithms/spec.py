"""The algorithm registry: what the runner needs to know of each algorithm, by its config name.

An `AlgorithmSpec` holds the builder (`[algorithm]` section, model, transform -> learner) and
what a config check needs (whether the algorithm takes a gradient transform, which part of the
model adapts, and which `[algorithm]` keys it reads). Each algorithm's module registers its own
with `register_algorithm`; the runner's schema takes `ALGORITHMS.names()` as `algorithm.name`'s
allowed values, and a config that sets a key its algorithm does not read is refused.

Which `[algorithm]` keys an algorithm reads (`AlgorithmSpec.keys_read`):
- `GENERAL_KEYS`, read for every algorithm (the runner and the engine read them);
- `TRANSFORM_KEYS`, the gradient transform's own settings, read by the transform when the
  algorithm takes one and `algorithm.transform` is not "none";
- its own keys, `reads` (iMAML: `imaml_lam`, `cg_steps`); those of them that only mean something
  with a transform (`WITH_TRANSFORM`: `adapt_transform`) count only when a transform is chosen.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, Tuple

from torch import nn

from ..registry import Registry

__all__ = ["ALGORITHMS", "GENERAL_KEYS", "TRANSFORM_KEYS", "WITH_TRANSFORM", "AlgorithmSpec",
           "Builder", "register_algorithm"]

# (the config's [algorithm] section, the model, a gradient transform or None) -> the learner.
# The section is a `gbml_ext.runner.schema.AlgorithmConfig`: inner_lr, adapt_transform, ...
Builder = Callable[[Any, nn.Module, Optional[Callable]], nn.Module]


# The [algorithm] keys every algorithm reads.
GENERAL_KEYS: Tuple[str, ...] = ("name", "transform", "inner_lr", "train_steps", "test_steps",
                                 "path", "batched", "tasks_per_chunk")
# The gradient transform's settings: read (by the transform) for an algorithm that takes one,
# when algorithm.transform is not "none".
TRANSFORM_KEYS: Tuple[str, ...] = ("transform_psd", "transform_hidden_layers", "transform_params")
# Keys that mean nothing without a transform: read only when algorithm.transform is not "none".
WITH_TRANSFORM: Tuple[str, ...] = TRANSFORM_KEYS + ("adapt_transform",)


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
        reads: the `[algorithm]` keys the builder reads beyond `GENERAL_KEYS` and the
            transform's `TRANSFORM_KEYS` (iMAML: `imaml_lam`, `cg_steps`); a config that sets
            any other key is refused (`keys_read`).

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
        >>> ALGORITHMS["imaml"].reads
        ('imaml_lam', 'cg_steps')
    """

    build: Builder
    no_transform: str = ""
    adapted: Callable[[nn.Module], nn.Module] = field(default=_whole)
    reads: Tuple[str, ...] = ()

    @property
    def takes_transform(self) -> bool:
        """Whether a config may give this algorithm a gradient transform."""
        return not self.no_transform

    def keys_read(self, transform: str = "none") -> Tuple[str, ...]:
        """The `[algorithm]` keys this algorithm reads when `algorithm.transform = transform`.

        Arguments:
            transform: the config's `algorithm.transform` ("none": no transform).

        Returns:
            `GENERAL_KEYS`, then its own `reads` and, with a transform (for an algorithm that
            takes one), `TRANSFORM_KEYS`; keys of `WITH_TRANSFORM` only with a transform.

        Example:
            >>> ALGORITHMS["maml"].keys_read("kronecker")[-4:]
            ('adapt_transform', 'transform_psd', 'transform_hidden_layers', 'transform_params')
            >>> "adapt_transform" in ALGORITHMS["maml"].keys_read("none")
            False
        """
        chosen = self.takes_transform and transform != "none"
        own = tuple(key for key in self.reads if chosen or key not in WITH_TRANSFORM)
        return GENERAL_KEYS + own + (TRANSFORM_KEYS if chosen else ())


ALGORITHMS: Registry[AlgorithmSpec] = Registry("algorithm.name")


def register_algorithm(name: str, *, no_transform: str = "",
                       adapted: Callable[[nn.Module], nn.Module] = _whole,
                       reads: Sequence[str] = (), aliases: Sequence[str] = (), doc: str = ""
                       ) -> Callable[[Builder], Builder]:
    """A decorator registering a builder in `ALGORITHMS` as an `AlgorithmSpec`.

    Arguments:
        name: the algorithm's `algorithm.name`.
        no_transform, adapted, reads: as for `AlgorithmSpec`.
        aliases, doc: as for `Registry.register`.

    Returns:
        A decorator that registers the builder and returns it unchanged.

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
        ALGORITHMS.register(name, AlgorithmSpec(build, no_transform, adapted, tuple(reads)),
                            aliases=aliases, doc=doc)
        return build

    return register
