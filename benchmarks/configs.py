"""The benchmark's settings, each a runner `Config`, and the seeded learner and tasks of one.

Every setting is an ordinary runner config (`gbml_ext.runner.config.Config`), so the model and
the meta-learner come from the runner's one registry (`gbml_ext.runner.build.build_learner`):
the benchmark has no model table of its own.

Configs (Finn et al. 2017 MAML; Raghu et al. 2020 ANIL; Arnold et al. 2021 KFO):
    a  Omniglot CNN4-64, 5-way 1-shot, 15 queries, meta-batch 32, 1 step, MAML and FOMAML.
    b  mini-ImageNet CNN4-32, 5-way 1-shot, 15 queries, meta-batch 4, 5 steps, MAML.
    c  CIFAR-FS CNN4-32, ANIL with a KFO head, 5-way 5-shot, 15 queries, meta-batch 16, 5 steps.
    s  experiments/configs/synthetic/linreg_shallow.toml: linear regression, an 8-dim linear
       model, 64 support and 64 query points, meta-batch 16, 1 step, MAML.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from gbml_ext.data.synthetic import SYNTHETIC_SOURCES, synthetic_task_source
from gbml_ext.data.tasks import Task
from gbml_ext.runner.build import build_learner
from gbml_ext.runner.config import (
    Config,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
)

__all__ = [
    "CONFIGS",
    "CONFIG_GROUPS",
    "IMAGE_SHAPES",
    "BenchmarkConfig",
    "make_learner",
    "make_tasks",
    "tiny",
]

REPO = Path(__file__).resolve().parents[1]
IMAGE_SHAPES: Dict[str, Tuple[int, int, int]] = {
    "omniglot_cnn4": (1, 28, 28), "mini_imagenet_cnn4": (3, 84, 84),
    "cifarfs_cnn4": (3, 32, 32)}


@dataclasses.dataclass(frozen=True)
class BenchmarkConfig:
    """One meta-training setting: a name, a one-line description and a runner `Config`.

    The config's `train.meta_batch` is the meta-batch, `algorithm.train_steps` the inner steps.
    """

    name: str
    description: str
    config: Config

    @property
    def meta_batch(self) -> int:
        """Tasks per meta-iteration (`train.meta_batch`)."""
        return self.config.train.meta_batch

    @property
    def steps(self) -> int:
        """Inner-loop steps per task (`algorithm.train_steps`)."""
        return self.config.algorithm.train_steps

    def with_overrides(self, overrides: List[str], name: Optional[str] = None,
                       description: Optional[str] = None) -> BenchmarkConfig:
        """A copy with runner overrides applied, e.g. ["train.meta_batch=8"]."""
        data = apply_overrides(config_to_dict(self.config), overrides)
        return BenchmarkConfig(name or self.name, description or self.description,
                               config_from_dict(data))

    def to_json(self) -> str:
        """The config as JSON, for the memory probe's subprocess."""
        return json.dumps({"name": self.name, "description": self.description,
                           "config": config_to_dict(self.config)})

    @classmethod
    def from_json(cls, text: str) -> BenchmarkConfig:
        """The inverse of `to_json`."""
        fields = json.loads(text)
        return cls(fields["name"], fields["description"], config_from_dict(fields["config"]))


def _vision(name: str, description: str, overrides: List[str]) -> BenchmarkConfig:
    return BenchmarkConfig(name, description, load_config(None, overrides))


def _omniglot(algorithm: str) -> List[str]:
    return ["data.source=omniglot", "data.ways=5", "data.shots=1", "data.queries=15",
            "model.name=omniglot_cnn4", f"algorithm.name={algorithm}", "algorithm.inner_lr=0.4",
            "algorithm.train_steps=1", "train.meta_batch=32"]


CONFIGS: Dict[str, BenchmarkConfig] = {config.name: config for config in [
    _vision("a-maml", "Omniglot CNN4-64 5w1s q15 mb32 1 step MAML", _omniglot("maml")),
    _vision("a-fomaml", "Omniglot CNN4-64 5w1s q15 mb32 1 step FOMAML", _omniglot("fomaml")),
    _vision("b-maml", "mini-ImageNet CNN4-32 5w1s q15 mb4 5 steps MAML",
            ["data.source=mini-imagenet", "data.ways=5", "data.shots=1", "data.queries=15",
             "model.name=mini_imagenet_cnn4", "algorithm.name=maml", "algorithm.inner_lr=0.01",
             "algorithm.train_steps=5", "train.meta_batch=4"]),
    _vision("c-anil-kfo", "CIFAR-FS CNN4-32 ANIL-KFO 5w5s q15 mb16 5 steps",
            ["data.source=cifar-fs", "data.ways=5", "data.shots=5", "data.queries=15",
             "model.name=cifarfs_cnn4", "algorithm.name=anil", "algorithm.transform=kronecker",
             "algorithm.inner_lr=0.1", "algorithm.train_steps=5", "train.meta_batch=16"]),
    BenchmarkConfig("s-linreg", "Synthetic linear regression, linear 8-dim, 64+64 points, "
                    "mb16 1 step MAML",
                    load_config(REPO / "experiments/configs/synthetic/linreg_shallow.toml")),
]}
CONFIG_GROUPS: Dict[str, List[str]] = {"a": ["a-maml", "a-fomaml"], "b": ["b-maml"],
                                       "c": ["c-anil-kfo"], "s": ["s-linreg"]}


def tiny(config: BenchmarkConfig, tasks: int = 5, queries: int = 3) -> BenchmarkConfig:
    """The same setting shrunk for smoke tests: width 8, at most `tasks` tasks, 2 steps and
    `queries` queries per class."""
    overrides = [f"train.meta_batch={min(config.meta_batch, tasks)}",
                 f"algorithm.train_steps={min(config.steps, 2)}"]
    if config.config.model.name in IMAGE_SHAPES:
        overrides += ["model.options={hidden = 8}",
                      f"data.queries={min(config.config.data.queries, queries)}"]
    return config.with_overrides(overrides, description=config.description + " (tiny)")


def _on(task: Task, device: torch.device) -> Task:
    """The task on `device`, its floating tensors in the default dtype (float64 in tests)."""
    dtype = torch.get_default_dtype()
    return Task(*(t.to(device, dtype) if t.is_floating_point() else t.to(device)
                  for t in (task.support_x, task.support_y, task.query_x, task.query_y)))


def make_tasks(config: BenchmarkConfig, device: torch.device, seed: int = 0) -> List[Task]:
    """`meta_batch` tasks: synthetic ones drawn from the config's source, or random images
    with balanced labels of the config's shapes (timing needs no real data)."""
    data = config.config.data
    if data.source in SYNTHETIC_SOURCES:
        source = synthetic_task_source(data.source, seed=seed, **data.options)
        return [_on(source.sample(), device) for _ in range(config.meta_batch)]
    generator = torch.Generator().manual_seed(seed)
    shape = IMAGE_SHAPES[config.config.model.name]

    def split(per_class: int) -> Tuple[torch.Tensor, torch.Tensor]:
        images = torch.randn(data.ways * per_class, *shape, generator=generator)
        return images.to(device), torch.arange(data.ways).repeat(per_class).to(device)

    return [Task(*split(data.shots), *split(data.queries)) for _ in range(config.meta_batch)]


def make_learner(config: BenchmarkConfig, device: torch.device, seed: int = 0) -> nn.Module:
    """The runner's learner for this config (`build_learner`), from seeded initial weights.

    Every peer gets a learner built this way, so all start from the same weights.
    """
    torch.manual_seed(seed)
    return build_learner(config.config).to(device)
