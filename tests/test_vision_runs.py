"""Every shipped vision config runs end to end on a tiny CIFAR-FS fixture in its real layout."""
import json
from pathlib import Path

import pytest
import torch

from gbml_ext.runner import load_config, train
from vision_fixtures import write_cifar_fs

CONFIGS = Path(__file__).resolve().parents[1] / "experiments" / "configs"
ALGORITHMS = ["maml", "fomaml", "anil", "maml_linnet", "anil_linnet", "maml_kfo", "anil_kfo",
              "metasgd", "reptile"]


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    return write_cifar_fs(tmp_path_factory.mktemp("cifar"), (4, 3, 3), images_per_class=4)


def tiny_overrides(root, out):
    return [f"data.root='{root}'", "data.ways=3", "data.queries=1", "model.options={hidden=4}",
            "train.iterations=2", "train.meta_batch=2", "train.log_every=1", "train.eval_every=1",
            "train.eval_tasks=2",
            "evaluation.tasks=3", "algorithm.train_steps=1", "algorithm.test_steps=2",
            "device=cpu", f"output_dir='{out}'"]


@pytest.mark.slow  # test_batched_path_runs_from_a_config keeps one vision run in `make test`
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_config_runs_end_to_end(algorithm, cifar_root, tmp_path):
    config = load_config(CONFIGS / "cifar-fs" / "5w1s" / f"{algorithm}.toml",
                         tiny_overrides(cifar_root, tmp_path))
    result = train(config, progress=False)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["name"] == f"cifar-fs-5w1s-{algorithm}"
    assert 0.0 <= results["evaluation"]["accuracy"]["mean"] <= 1.0
    assert [h["split"] for h in result.history] == ["train", "validation", "train", "validation"]
    assert all(torch.isfinite(p).all() for p in result.algorithm.parameters())


def test_batched_path_runs_from_a_config(cifar_root, tmp_path):
    config = load_config(CONFIGS / "cifar-fs" / "5w1s" / "anil_kfo.toml",
                         tiny_overrides(cifar_root, tmp_path) + ["algorithm.batched=true"])
    assert train(config, progress=False).results["evaluation"]["accuracy"]["n"] == 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_cuda_run_reports_cuda_memory(cifar_root, tmp_path):
    overrides = tiny_overrides(cifar_root, tmp_path)
    overrides[overrides.index("device=cpu")] = "device=cuda"
    results = train(load_config(CONFIGS / "cifar-fs" / "5w1s" / "maml.toml", overrides),
                    progress=False).results
    assert results["peak_memory_kind"] == "cuda_max_allocated_increase"
    assert results["peak_memory_mb"] > 0
    assert results["environment"]["device"].startswith("cuda")


def test_each_rank_draws_its_own_training_tasks_but_shares_evaluation(cifar_root):
    from gbml_ext.runner.build import build_sources
    from gbml_ext.runner.schema import DataConfig

    data = DataConfig(source="cifar-fs", root=str(cifar_root), ways=3, shots=1, queries=1)
    rank0, rank1 = (build_sources(data, seed=0, rank=r) for r in (0, 1))
    train0 = [rank0["train"].sample().support_x for _ in range(3)]
    train1 = [rank1["train"].sample().support_x for _ in range(3)]
    assert any(not torch.equal(a, b) for a, b in zip(train0, train1, strict=True))
    assert torch.equal(rank0["test"].sample().query_x, rank1["test"].sample().query_x)
