"""The one place that turns a config into task sources, a model, a learner and an optimizer.

Every name a config gives is looked up in its package's registry (`gbml_ext.registry`):
`ALGORITHMS` (gbml_ext.algorithms), `TRANSFORMS` (gbml_ext.optim), `MODELS` (gbml_ext.nn),
`SYNTHETIC_SOURCES` and `DATASETS` (gbml_ext.data). Nothing here names an algorithm or model.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import torch
from torch import nn

from .. import nn as gnn
from ..algorithms import ALGORITHMS
from ..data.registry import DATASETS
from ..data.registry import build_task_sources as build_dataset_sources
from ..data.synthetic import SYNTHETIC_SOURCES, synthetic_task_source
from ..data.tasks import TaskSource
from ..nn import MODELS, TaskShape
from ..nn.deep_linear import linnet_hidden_parameters
from ..optim import TRANSFORMS, FrozenTransform
from .config import ConfigError
from .schema import AlgorithmConfig, Config, DataConfig, ModelConfig
from .seeds import SPLIT_OFFSETS, stream_seed

__all__ = ["build_algorithm", "build_learner", "build_model", "build_optimizer",
           "build_sources", "precision_warning"]


def build_sources(data: DataConfig, seed: int, rank: int = 0,
                  device: torch.device | str = "cpu") -> Dict[str, TaskSource]:
    """Returns {"train", "validation", "test"} task sources, each with its own stream seeded
    by `seeds.stream_seed` (the training stream also by the distributed rank), drawing
    meta-batches as `data.sampler` says; a "tensor" sampler holds its images on `device`."""
    seeds = {split: stream_seed(seed, split, rank) for split in SPLIT_OFFSETS}
    if data.source in SYNTHETIC_SOURCES:
        # One task distribution (its covariance is fixed by options.covariance_seed); the splits
        # and ranks differ only in the seed of their stream of tasks.
        try:
            return {split: synthetic_task_source(data.source, seed=s,
                                                 one_at_a_time=data.sampler == "learn2learn",
                                                 **data.options)
                    for split, s in seeds.items()}
        except TypeError as error:
            raise ConfigError(
                f"data.options {data.options} do not fit {data.source!r}: {error}") from error
    if data.source not in DATASETS:
        raise ConfigError(f"data.source {data.source!r} is unknown; choose one of "
                          f"{', '.join(SYNTHETIC_SOURCES.names() + DATASETS.names())}.")
    if not data.root:
        raise ConfigError(f"data.root is empty: set it to the {data.source} folder, for example "
                          f"data.root=path/to/{data.source} (see docs/reproduction.md).")
    try:
        sources: Dict[str, TaskSource] = dict(build_dataset_sources(
            data.source, data.root, data.ways, data.shots, data.queries, seed=seeds,
            sampler=data.sampler, device=device, **data.options))
        return sources
    except TypeError as error:
        raise ConfigError(
            f"data.options {data.options} do not fit {data.source!r}: {error}") from error


def _task_shape(data: DataConfig, vectors: bool) -> TaskShape:
    """What a model builder knows of the tasks: the ways, and for a model that takes vectors
    the input size and outputs of a synthetic source's tasks, read from the config alone."""
    if not vectors:
        return TaskShape(data.ways)
    if data.source not in SYNTHETIC_SOURCES:
        raise ConfigError(f"this model takes vectors: data.source must be one of "
                          f"{tuple(SYNTHETIC_SOURCES)}, not {data.source!r}.")
    dim = SYNTHETIC_SOURCES[data.source].sizes(data.options)["dim"]
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ConfigError(f"data.options.dim must be a positive integer (the input size of "
                          f"{data.source!r} tasks), got {dim!r}.")
    return TaskShape(SYNTHETIC_SOURCES[data.source].out_features, dim)


def build_model(model: ModelConfig, data: DataConfig) -> nn.Module:
    """Builds a registered model (`gbml_ext.nn.MODELS`), then swaps in a LinNet head if
    asked."""
    if model.name not in MODELS:
        raise ConfigError(
            f"model.name {model.name!r} is unknown; choose one of {', '.join(MODELS)}.")
    spec = MODELS[model.name]
    shape = _task_shape(data, spec.vectors)
    try:
        network = spec.build(shape, **model.options)
    except TypeError as error:
        raise ConfigError(f"model.options {model.options} do not fit model {model.name!r}: "
                          f"{error}") from error
    if model.linnet_depth > 1:
        network = gnn.linnet(network, depth=model.linnet_depth, width=model.linnet_width or None,
                             init=model.linnet_init)
    return network


def build_learner(config: Config) -> nn.Module:
    """The model of `config.model` wrapped in the learner of `config.algorithm`."""
    model = build_model(config.model, config.data)
    frozen: Tuple[int, ...] = ()
    if config.model.linnet_depth > 1 and not config.model.linnet_adapt_hidden:
        frozen = tuple(id(p) for p in linnet_hidden_parameters(model))
    if config.model.channels_last:
        model = model.to(memory_format=torch.channels_last)  # converts only 4-d weights
    return build_algorithm(config.algorithm, model, frozen)


def _frozen_transform(module: nn.Module, frozen: Tuple[int, ...]) -> Optional[FrozenTransform]:
    names = [name for name, p in module.named_parameters() if id(p) in frozen]
    return FrozenTransform(params=names) if names else None


def build_algorithm(config: AlgorithmConfig, model: nn.Module,
                    frozen: Tuple[int, ...] = ()) -> nn.Module:
    """Wraps `model` in the registered meta-learner `config.name` (`gbml_ext.algorithms`),
    with the registered gradient transform `config.transform` (Meta-KFO when not "none").
    Parameters whose `id` is in `frozen` are meta-learned but take no inner-loop step.

    Raises:
        ConfigError: an unknown name, or a model the algorithm cannot wrap.
    """
    if config.name not in ALGORITHMS:
        raise ConfigError(f"algorithm.name {config.name!r} is unknown; choose one of "
                          f"{', '.join(ALGORITHMS)}.")
    spec = ALGORITHMS[config.name]
    transform: Optional[Callable] = None
    if frozen:
        transform = _frozen_transform(spec.adapted(model), frozen)
    chosen = TRANSFORMS[config.transform](config)
    if chosen is not None:
        transform = chosen
    try:
        return spec.build(config, model, transform)
    except ValueError as error:
        raise ConfigError(str(error)) from error


def precision_warning(config: Config) -> Optional[str]:
    """What the config's transform (`algorithm.transform`) says against meta-training at the
    config's `precision`, or None.

    Example:
        >>> from gbml_ext.runner.config import load_config
        >>> precision_warning(load_config(None, ["precision=bf16"])) is None
        True
    """
    factory = TRANSFORMS[config.algorithm.transform](config.algorithm)
    return None if factory is None else factory.precision_warning(config.precision)


def build_optimizer(config: Config, algorithm: nn.Module) -> torch.optim.Optimizer:
    """The outer optimizer of `train.optimizer` over every meta-parameter, with torch's fused
    kernel when `train.fused_optimizer` is set.

    Raises:
        ConfigError: `train.fused_optimizer` on a torch or device without that fused kernel.
    """
    train = config.train
    kind: Callable[..., torch.optim.Optimizer] = (
        torch.optim.Adam if train.optimizer == "adam" else torch.optim.SGD)
    fused = {"fused": True} if train.fused_optimizer else {}
    try:
        return kind(algorithm.parameters(), lr=train.lr, **fused)
    except (RuntimeError, TypeError, ValueError) as error:
        if not fused:
            raise
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ConfigError(f"train.fused_optimizer: torch {torch.__version__} has no fused "
                          f"{train.optimizer} here ({first}). Set train.fused_optimizer=false."
                          ) from None
