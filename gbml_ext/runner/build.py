"""The one place that turns a config into task sources, a model, a learner and an optimizer."""
from __future__ import annotations

import inspect
from typing import Callable, Dict, Optional, Tuple

import torch
from torch import nn

from .. import nn as gnn
from ..algorithms import ANIL, GBML, IMAML, Learn2LearnMAML, MetaSGD, Reptile
from ..data.synthetic import SYNTHETIC_SOURCES, SyntheticTasks, synthetic_task_source
from ..data.tasks import TaskSource
from ..optim import FrozenTransform, KroneckerTransform
from .config import ConfigError
from .schema import AlgorithmConfig, Config, DataConfig, ModelConfig
from .seeds import SPLIT_OFFSETS, stream_seed

__all__ = ["MODELS", "build_algorithm", "build_learner", "build_model", "build_optimizer",
           "build_sources"]

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
    from ..data.registry import build_task_sources as build_dataset_sources
    from ..data.registry import canonical_dataset_name, dataset_names

    try:
        canonical_dataset_name(data.source)
    except ValueError:
        raise ConfigError(f"data.source {data.source!r} is unknown; choose one of "
                          f"{', '.join(tuple(SYNTHETIC_SOURCES) + dataset_names())}.") from None
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


def _synthetic_shape(data: DataConfig) -> Tuple[int, int]:
    """(input dimension, outputs) of a synthetic source's tasks, read from the config alone."""
    if data.source not in SYNTHETIC_SOURCES:
        raise ConfigError(f"this model takes vectors: data.source must be one of "
                          f"{tuple(SYNTHETIC_SOURCES)}, not {data.source!r}.")
    default_dim = inspect.signature(SyntheticTasks).parameters["dim"].default
    dim = data.options.get("dim", default_dim)
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ConfigError(f"data.options.dim must be a positive integer (the input size of "
                          f"{data.source!r} tasks), got {dim!r}.")
    return dim, SYNTHETIC_SOURCES[data.source].out_features


MODELS: Dict[str, Callable[..., nn.Module]] = {
    "linear": lambda data, **o: nn.Linear(*_synthetic_shape(data), **o),
    "deep_linear": lambda data, **o: gnn.DeepLinear(*_synthetic_shape(data), **o),
    "omniglot_cnn4": lambda data, **o: gnn.omniglot_cnn4(data.ways, **o),
    "mini_imagenet_cnn4": lambda data, **o: gnn.mini_imagenet_cnn4(data.ways, **o),
    "cifarfs_cnn4": lambda data, **o: gnn.cifarfs_cnn4(data.ways, **o),
}


def build_model(model: ModelConfig, data: DataConfig) -> nn.Module:
    """Builds a registered model (see `MODELS`), then swaps in a LinNet head if asked."""
    if model.name not in MODELS:
        raise ConfigError(
            f"model.name {model.name!r} is unknown; choose one of {', '.join(MODELS)}.")
    try:
        network = MODELS[model.name](data, **model.options)
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
        head = [m for m in model.modules() if isinstance(m, gnn.DeepLinear)][-1]
        frozen = tuple(id(p) for layer in head.layers[:-1] for p in layer.parameters())
    if config.model.channels_last:
        model = model.to(memory_format=torch.channels_last)  # converts only 4-d weights
    return build_algorithm(config.algorithm, model, frozen)


def _frozen_transform(module: nn.Module, frozen: Tuple[int, ...]) -> Optional[FrozenTransform]:
    names = [name for name, p in module.named_parameters() if id(p) in frozen]
    return FrozenTransform(params=names) if names else None


def build_algorithm(config: AlgorithmConfig, model: nn.Module,
                    frozen: Tuple[int, ...] = ()) -> nn.Module:
    """Wraps `model` in the configured meta-learner (MAML, FOMAML, ANIL, Meta-SGD, Reptile),
    with a Kronecker transform when `config.transform` asks for one (Meta-KFO). Parameters
    whose `id` is in `frozen` are meta-learned but take no inner-loop step."""
    transform: Optional[Callable] = None
    if frozen:
        head = getattr(model, "classifier", model) if config.name == "anil" else model
        transform = _frozen_transform(head, frozen)
    if config.transform != "none":
        transform = KroneckerTransform(params=config.transform_params or None,
                                       nonlinear=config.transform == "kronecker-mlp",
                                       hidden_layers=config.transform_hidden_layers,
                                       psd=config.transform_psd)
    if config.name in ("maml", "fomaml"):
        return GBML(model, transform=transform, lr=config.inner_lr,
                    first_order=config.name == "fomaml", adapt_transform=config.adapt_transform)
    if config.name == "anil":
        body, head = getattr(model, "features", None), getattr(model, "classifier", None)
        if not (isinstance(body, nn.Module) and isinstance(head, nn.Module)):
            raise ConfigError(f"ANIL needs a model with `features` (body) and `classifier` "
                              f"(head); {type(model).__name__} has not. Use a CNN4 model.")
        return ANIL(body, head, transform=transform, lr=config.inner_lr,
                    adapt_transform=config.adapt_transform)
    if config.name == "metasgd":
        return MetaSGD(model, lr=config.inner_lr)
    if config.name == "imaml":
        return IMAML(model, lr=config.inner_lr, lam=config.imaml_lam, cg_steps=config.cg_steps)
    if config.name == "reptile":
        return Reptile(model, lr=config.inner_lr)
    if config.name == "l2l-maml":
        return Learn2LearnMAML(model, lr=config.inner_lr)
    raise ConfigError(f"algorithm.name {config.name!r} is unknown.")


def build_optimizer(config: Config, algorithm: nn.Module) -> torch.optim.Optimizer:
    if config.train.optimizer == "adam":
        return torch.optim.Adam(algorithm.parameters(), lr=config.train.lr)
    return torch.optim.SGD(algorithm.parameters(), lr=config.train.lr)
