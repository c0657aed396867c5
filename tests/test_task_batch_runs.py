"""The runner on TaskBatches drawn by the tensor sampler: a resumed vision run is
bit-identical to a straight one, evaluation scores the same tasks on every path, runs from
before `data.sampler` existed resume with the sampler they used, and on a GPU a run trains
there."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import gbml_ext


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    from vision_fixtures import write_cifar_fs

    return write_cifar_fs(tmp_path_factory.mktemp("cifar"), (4, 3, 3), images_per_class=4)


def vision_config(root, out, *extra):
    from pathlib import Path

    from gbml_ext.runner import load_config

    config = Path(__file__).resolve().parents[1] / "experiments/configs/cifar-fs/5w1s/maml.toml"
    return load_config(config, [f"data.root='{root}'", "data.ways=3", "data.queries=1",
                                "model.options={hidden=4}", "train.iterations=6",
                                "train.meta_batch=3", "train.log_every=1",
                                "train.checkpoint_every=3", "evaluation.tasks=5",
                                "device=cpu", f"output_dir='{out}'", *extra])


def test_a_resumed_vision_run_on_task_batches_is_bit_identical(cifar_root, tmp_path,
                                                               monkeypatch):
    from gbml_ext.runner import loop as loop_module
    from gbml_ext.runner import train

    straight = train(vision_config(cifar_root, tmp_path / "a"), progress=False)
    assert straight.config.data.sampler == "tensor"
    real_log = loop_module.log_record

    def log_then_crash(run_dir, history, record):
        real_log(run_dir, history, record)
        if record["iteration"] == 5:  # past the checkpoint at 3
            raise KeyboardInterrupt

    monkeypatch.setattr(loop_module, "log_record", log_then_crash)
    with pytest.raises(KeyboardInterrupt):
        train(vision_config(cifar_root, tmp_path / "b"), progress=False)
    monkeypatch.setattr(loop_module, "log_record", real_log)
    resumed = train(vision_config(cifar_root, tmp_path / "b"), resume=True, progress=False)
    for a, b in zip(straight.algorithm.state_dict().values(),
                    resumed.algorithm.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert (straight.results["evaluation"]["per_task"]
            == resumed.results["evaluation"]["per_task"])


def test_evaluation_scores_the_same_tasks_on_every_path(cifar_root):
    from gbml_ext.runner.build import build_sources
    from gbml_ext.runner.evaluate import evaluate
    from gbml_ext.runner.schema import DataConfig

    data = DataConfig(source="cifar-fs", root=str(cifar_root), ways=3, shots=1, queries=1)
    torch.manual_seed(0)
    maml = gbml_ext.MAML(gbml_ext.nn.cifarfs_cnn4(ways=3, hidden=4), lr=0.4)
    results = {path: evaluate(maml, build_sources(data, seed=0)["test"], 70, 2, path=path)
               for path in ("per-task", "batched")}
    per_task, batched = (results[p]["per_task"]["loss_by_step"] for p in results)
    assert np.allclose(per_task, batched, rtol=1e-4, atol=1e-5)
    assert len(set(per_task[0])) > 10  # 70 different tasks, not one task 70 times


def test_old_runs_without_a_sampler_key_resume_with_learn2learns(tmp_path):
    """A checkpoint written before data.sampler existed drew its tasks one at a time: resuming
    it with the new default is refused with the fix, and with the old sampler it resumes."""
    from gbml_ext.runner import load_config, train
    from gbml_ext.runner.errors import ConfigMismatchError

    def tiny(*extra):
        return load_config(None, ["train.iterations=3", "data.options={dim=4}",
                                  "evaluation.tasks=4", f"output_dir='{tmp_path}'", *extra])

    train(tiny("data.sampler=learn2learn"), progress=False)
    for path in tmp_path.glob("checkpoint*.pt"):
        state = torch.load(path, weights_only=False)
        del state["config"]["data"]["sampler"]
        torch.save(state, path)
    with pytest.raises(ConfigMismatchError, match="data.sampler: 'learn2learn' -> 'tensor'"):
        train(tiny("train.iterations=5"), resume=True, progress=False)
    resumed = train(tiny("train.iterations=5", "data.sampler=learn2learn"), resume=True,
                    progress=False)
    assert resumed.results["iterations_done"] == 5




@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_a_run_on_task_batches_trains_on_the_gpu(cifar_root, tmp_path):
    from gbml_ext.runner import train

    config = vision_config(cifar_root, tmp_path, "algorithm.path=batched", "device=cuda")
    result = train(config, progress=False)
    assert result.results["environment"]["device"].startswith("cuda")
    assert result.results["evaluation"]["accuracy"]["n"] == 5
