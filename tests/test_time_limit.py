"""`train.max_minutes`: meta-training stops cleanly at the time limit, checkpoints, evaluates
and records the iterations it reached."""
from __future__ import annotations

import json

import torch

from gbml_ext.runner import load_config, train
from gbml_ext.runner.checkpoint import load_latest_checkpoint

TINY = ["data.source=linear-regression", "data.options={dim=4, n_support=8, n_query=8}",
        "train.iterations=100000", "train.meta_batch=2", "train.log_every=1000",
        "evaluation.tasks=4", "train.plot=false"]


def test_time_limit_ends_training_with_a_checkpoint_and_results(tmp_path):
    # 1e-6 minutes is 60 microseconds: the first meta-iteration already uses it up.
    config = load_config(None, TINY + [f"output_dir='{tmp_path}'", "train.max_minutes=1e-6"])
    result = train(config, progress=False)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["iterations_done"] == 1 and results["stopped_by_time_limit"]
    assert results["config"]["train"]["max_minutes"] == 1e-6
    assert results["evaluation"]["loss"]["n"] == 4  # evaluated as usual
    assert [r["iteration"] for r in result.history if r["split"] == "train"] == [1]
    checkpoint, _ = load_latest_checkpoint(tmp_path)
    assert checkpoint["iteration"] == 1

    # Resumed with the minutes used up: no further iteration. With more minutes: it goes on.
    again = train(config, resume=True, progress=False)
    assert again.results["iterations_done"] == 1
    longer = load_config(None, TINY + [f"output_dir='{tmp_path}'", "train.max_minutes=1e-3",
                                       "train.iterations=3"])
    extended = train(longer, resume=True, progress=False)
    assert extended.results["iterations_done"] > 1


def test_no_time_limit_runs_every_iteration(tmp_path):
    config = load_config(None, TINY + [f"output_dir='{tmp_path}'", "train.iterations=3"])
    results = train(config, progress=False).results
    assert results["iterations_done"] == 3 and not results["stopped_by_time_limit"]
    assert torch.isfinite(torch.tensor(results["evaluation"]["loss"]["mean"]))
