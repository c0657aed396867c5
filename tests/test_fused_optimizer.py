"""`train.fused_optimizer`: torch's fused Adam / SGD, the same run up to float rounding."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from gbml_ext.runner import ConfigError, load_config, train
from gbml_ext.runner.build import build_learner, build_optimizer
from gbml_ext.runner.compat import config_differences
from gbml_ext.runner.config import config_from_dict, config_to_dict

__all__ = []

TINY = ["data.source=linear-regression", "data.options={dim=4, n_support=8, n_query=8}",
        "train.iterations=20", "train.meta_batch=3", "train.lr=0.05", "train.log_every=1",
        "evaluation.tasks=10", "algorithm.path=batched"]


def _losses(run_dir: Path) -> list:
    records = map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
    return [r["loss"] for r in records if r["split"] == "train"]


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_a_fused_run_gives_the_unfused_numbers_up_to_rounding(tmp_path: Path,
                                                               optimizer: str) -> None:
    runs = {}
    for fused in ("false", "true"):
        config = load_config(None, TINY + [f"train.optimizer={optimizer}",
                                           f"train.fused_optimizer={fused}",
                                           f"output_dir='{tmp_path / fused}'"])
        runs[fused] = train(config, progress=False).results
    plain, fused_losses = _losses(tmp_path / "false"), _losses(tmp_path / "true")
    assert len(plain) == 20
    assert plain[-1] < plain[0] * 0.9  # it trains, so the comparison means something
    assert fused_losses == pytest.approx(plain, rel=1e-4)
    assert runs["true"]["config"]["train"]["fused_optimizer"] is True


def test_the_key_builds_torch_s_fused_kernel() -> None:
    config = load_config(None, TINY + ["train.fused_optimizer=true"])
    optimizer = build_optimizer(config, build_learner(config))
    assert optimizer.defaults["fused"] is True
    plain = build_optimizer(load_config(None, TINY), build_learner(config))
    assert not plain.defaults["fused"]


def test_stored_configs_read_it_as_off_and_resume_may_change_it() -> None:
    config = load_config(None, TINY)
    stored = config_to_dict(config)
    del stored["train"]["fused_optimizer"]  # a run written before the key existed
    assert config_from_dict(stored).train.fused_optimizer is False
    changed = load_config(None, TINY + ["train.fused_optimizer=true"])
    assert config_differences(config_to_dict(config), config_to_dict(changed)) == []


def test_a_torch_without_the_fused_kernel_is_one_line(monkeypatch: Any) -> None:
    def refuse(*args: Any, fused: bool = False, **kwargs: Any) -> None:
        raise RuntimeError("`fused=True` requires all the params to be floating point "
                           "Tensors of supported devices\nsecond line")

    monkeypatch.setattr(torch.optim, "Adam", refuse)
    config = load_config(None, TINY + ["train.fused_optimizer=true"])
    with pytest.raises(ConfigError) as error:
        build_optimizer(config, build_learner(config))
    message = str(error.value)
    assert "\n" not in message and "train.fused_optimizer=false" in message
