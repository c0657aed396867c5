"""gbml-tune on a real one-node Slurm cluster (scripts/slurm_local.sh starts one; CI starts it
before the tests): one job per trial, the study in a journal file, the same trials and numbers
as local processes, nothing submitted twice, and pruning that stops a running job."""
from __future__ import annotations

import json

import pytest
import torch

from gbml_ext.tune.cli import main as tune_main
from run_fixtures import REPO, cli

EXAMPLE = REPO / "experiments/configs/synthetic/linreg_tune.toml"
TINY = ["data.options={dim=4, n_support=8, n_query=8}", "train.iterations=30",
        "train.meta_batch=2", "train.eval_every=10", "train.eval_tasks=4", "train.log_every=10",
        "evaluation.tasks=8", "train.plot=false", "algorithm.test_steps=1"]
SLURM = ["--launcher", "slurm", "--slurm", "cpus_per_task=1", "time=10"]
pytestmark = pytest.mark.slow


def _rows(out):
    return [{k: v for k, v in row.items() if k != "run_dir"}
            for row in json.loads((out / "trials.json").read_text())["trials"]]


def test_a_study_on_slurm_gives_the_trials_of_local_processes_and_submits_once(
        slurm, tmp_path, capsys):
    grid = [EXAMPLE, "--trials", "3", "--jobs", "2", *TINY, "tune.pruner=none"]
    code, _, err = cli(capsys, tune_main, *grid, "--out", tmp_path / "slurm", *SLURM)
    assert code == 0, err
    assert err.count("submitted Slurm job") == 3
    assert (tmp_path / "slurm/study.journal").is_file()
    assert not (tmp_path / "slurm/study.db").exists()
    job = json.loads((tmp_path / "slurm/trials/trial-0000/job.json").read_text())
    assert job["launcher"] == "slurm" and job["job_id"]
    assert (tmp_path / "slurm/best.toml").is_file()

    code, _, err = cli(capsys, tune_main, *grid, "--out", tmp_path / "local")
    assert code == 0, err
    slurm_rows, local_rows = _rows(tmp_path / "slurm"), _rows(tmp_path / "local")
    assert [r["state"] for r in slurm_rows] == ["complete"] * 3
    assert slurm_rows == local_rows  # the same seeded draws, every value equal
    best = [(tmp_path / d / "best.toml").read_text().split("\n", 3)[3] for d in ("slurm", "local")]
    assert best[0] == best[1]

    # The same command again submits nothing: the study is done.
    code, _, err = cli(capsys, tune_main, *grid, "--out", tmp_path / "slurm", *SLURM)
    assert code == 0 and "submitted" not in err, err


def test_pruning_stops_a_running_slurm_job_with_a_checkpoint(slurm, tmp_path, capsys):
    out = tmp_path / "tune"
    code, _, err = cli(capsys, tune_main, EXAMPLE, "--trials", "1", "--out", out, *TINY,
                       "train.iterations=20000", "tune.pruner=threshold",
                       "tune.pruner_options={upper=0.0}", *SLURM)
    assert code == 0, err
    row = json.loads((out / "trials.json").read_text())["trials"][0]
    assert row["state"] == "pruned" and row["pruned_at"] == 10
    folder = out / "trials/trial-0000"
    stopped = torch.load(folder / "checkpoint.pt", weights_only=False)["iteration"]
    assert 10 <= stopped < 20000 and not (folder / "results.json").exists()
    job = json.loads((folder / "job.json").read_text())
    assert "asked the run to stop (pruned by gbml-tune" in open(job["log"]).read()
