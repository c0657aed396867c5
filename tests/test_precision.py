"""The `precision` key: fp32 changes nothing, bf16 trains to finite losses on the CPU, tf32
sets torch's CUDA flags for the run and puts them back."""
from __future__ import annotations

import math
from pathlib import Path
from typing import List

import pytest
import torch

import gbml_ext
from gbml_ext import Task
from gbml_ext.precision import precision_context
from gbml_ext.runner import ConfigError, load_config, train

TINY = ["data.source=linear-regression", "data.options={dim=4, n_support=8, n_query=8}",
        "train.iterations=6", "train.meta_batch=3", "train.lr=0.01", "train.log_every=1",
        "evaluation.tasks=6", "algorithm.test_steps=2", "train.plot=false"]


def _run(tmp_path: Path, name: str, *extra: str):
    config = load_config(None, TINY + [f"output_dir='{tmp_path / name}'", *extra])
    return train(config, progress=False)


def test_fp32_is_bit_identical_to_no_precision_key(tmp_path):
    plain = _run(tmp_path, "plain")
    fp32 = _run(tmp_path, "fp32", "precision=fp32")
    for a, b in zip(plain.algorithm.state_dict().values(), fp32.algorithm.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    assert plain.results["evaluation"]["loss"] == fp32.results["evaluation"]["loss"]
    assert fp32.results["precision"] == "fp32"


def test_bf16_trains_a_tiny_run_to_a_finite_loss(tmp_path):
    bf16 = _run(tmp_path, "bf16", "precision=bf16")
    fp32 = _run(tmp_path, "fp32")
    losses = [record["loss"] for record in bf16.history if record["split"] == "train"]
    assert len(losses) == 6 and all(math.isfinite(loss) for loss in losses)
    assert math.isfinite(bf16.results["evaluation"]["loss"]["mean"])
    assert bf16.results["precision"] == "bf16"
    # The forward passes really ran in bfloat16 (about 3 significant digits): not fp32's losses.
    assert losses != [record["loss"] for record in fp32.history if record["split"] == "train"]
    # ... while the parameters and the optimizer stayed fp32.
    assert all(p.dtype == torch.float32 for p in bf16.algorithm.parameters())


def _cnn_tasks(count: int) -> List[Task]:
    return [Task(torch.randn(5, 1, 28, 28), torch.arange(5), torch.randn(10, 1, 28, 28),
                 torch.arange(10) % 5) for _ in range(count)]


@pytest.mark.parametrize("batched", [False, True])
def test_bf16_second_order_cnn_meta_gradient_is_finite_and_fp32(batched):
    """MAML's double backward through bfloat16 convolutions, on both paths."""
    maml = gbml_ext.MAML(gbml_ext.nn.omniglot_cnn4(ways=5, hidden=4), lr=0.4)
    tasks = _cnn_tasks(2)
    with precision_context("bf16", "cpu"):
        if batched:
            outcomes = gbml_ext.batched_meta_gradient(maml, tasks, 1)
        else:
            outcomes = maml.accumulate_meta_gradient(tasks, 1)
    assert all(math.isfinite(o.loss.item()) for o in outcomes)
    gradients = [p.grad for p in maml.parameters()]
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all()
               for g in gradients)


def test_tf32_sets_the_cuda_flags_for_the_block_and_restores_them():
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    before = (matmul.allow_tf32, cudnn.allow_tf32)
    try:
        matmul.allow_tf32 = cudnn.allow_tf32 = False
        with precision_context("tf32", "cuda"):  # only flags: no GPU needed
            assert matmul.allow_tf32 and cudnn.allow_tf32
        assert not matmul.allow_tf32 and not cudnn.allow_tf32
        with precision_context("tf32", "cpu"):  # TF32 is a CUDA matter
            assert not matmul.allow_tf32
        with precision_context("fp32", "cuda"):  # torch's settings, untouched
            assert not matmul.allow_tf32
    finally:
        matmul.allow_tf32, cudnn.allow_tf32 = before


def test_unknown_precision_is_a_config_error():
    with pytest.raises(ConfigError, match="allowed: fp32, tf32, bf16"):
        load_config(None, ["precision=fp16"])
    with pytest.raises(ValueError, match="unknown"):
        with precision_context("fp16", "cpu"):
            pass


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_precision_trains_on_cuda(tmp_path, precision):
    result = _run(tmp_path, precision, f"precision={precision}", "device=cuda")
    assert math.isfinite(result.results["evaluation"]["loss"]["mean"])
