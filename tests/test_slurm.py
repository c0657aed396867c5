"""The Slurm launcher on a real one-node Slurm cluster (scripts/slurm_local.sh starts one; CI
starts it before the tests): the same numbers as local processes, no second submission,
requeue after preemption with a bit-identical result, and a data-parallel job."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from gbml_ext.compare import main as compare_main

REPO = Path(__file__).resolve().parents[1]
SHALLOW = REPO / "experiments/configs/synthetic/linreg_shallow.toml"
KFO = REPO / "experiments/configs/synthetic/linreg_kfo.toml"
GRID = ["train.iterations=12", "train.meta_batch=4", "evaluation.tasks=16", "train.eval_every=0",
        "train.log_every=4"]
SLURM = ["--launcher", "slurm", "--slurm", "cpus_per_task=1", "time=10"]
pytestmark = pytest.mark.slow


def compare(capsys, *args) -> tuple:
    code = compare_main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def per_task(out: Path) -> dict:
    return {str(p.parent.relative_to(out)): json.loads(p.read_text())["evaluation"]["per_task"]
            for p in sorted(out.rglob("seed*/results.json"))}


def test_slurm_jobs_give_the_numbers_of_local_processes_and_are_submitted_once(
        slurm, tmp_path, capsys):
    grid = [SHALLOW, KFO, "--seeds", "0", "1", "--no-progress", *GRID]
    code, _, err = compare(capsys, *grid, "--out", tmp_path / "slurm", *SLURM, "--wait")
    assert code == 0, err
    assert err.count("submitted Slurm job") == 4
    assert compare(capsys, *grid, "--out", tmp_path / "local", "--jobs", "2")[0] == 0
    slurm_runs, local_runs = per_task(tmp_path / "slurm"), per_task(tmp_path / "local")
    assert len(slurm_runs) == 4 and slurm_runs == local_runs  # every float equal
    job = json.loads((tmp_path / "slurm" / "Shallow" / "seed0" / "job.json").read_text())
    assert job["launcher"] == "slurm" and job["job_id"]
    # The same command again submits nothing: every run is done.
    code, _, err = compare(capsys, *grid, "--out", tmp_path / "slurm", *SLURM, "--wait")
    assert code == 0 and "submitted" not in err and "starting 0" in err, err


def _wait_for(predicate, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def _queue_state(job_id: str) -> str:
    return subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True,
                          text=True).stdout.strip()


def test_a_preempted_job_checkpoints_requeues_and_ends_bit_identical(slurm, tmp_path, capsys):
    long = ["train.iterations=2000", "train.meta_batch=4", "evaluation.tasks=16",
            "train.eval_every=0", "train.log_every=50", "train.checkpoint_every=0",
            "--no-progress"]
    out = tmp_path / "slurm"
    code, _, err = compare(capsys, SHALLOW, *long, "--out", out, *SLURM)
    assert code == 0 and "submitted Slurm job" in err, err
    run_dir = out / "Shallow" / "seed0"
    job_id = json.loads((run_dir / "job.json").read_text())["job_id"]
    _wait_for(lambda: (run_dir / "metrics.jsonl").is_file()
              and (run_dir / "metrics.jsonl").stat().st_size > 0, 180, "training to start")
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True)
    _wait_for(lambda: _queue_state(job_id) in ("PENDING", "REQUEUED", ""), 120, "the requeue")
    assert (run_dir / "checkpoint.pt").is_file()  # written when the signal came
    # Slurm holds a requeued job for about two minutes before it may start again: release it.
    subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"],
                   capture_output=True)
    _wait_for(lambda: _queue_state(job_id) == "" or (run_dir / "results.json").is_file(), 300,
              "the requeued job to finish")
    _wait_for(lambda: (run_dir / "results.json").is_file(), 60, "results.json")
    log = Path(json.loads((run_dir / "job.json").read_text())["log"]).read_text()
    assert "requeueing the job" in log and "Requeued job" in log
    assert compare(capsys, SHALLOW, *long, "--out", tmp_path / "local")[0] == 0
    assert per_task(out) == per_task(tmp_path / "local")


def test_a_job_of_two_tasks_trains_one_run_data_parallel(slurm, tmp_path, capsys):
    code, _, err = compare(capsys, SHALLOW, "--no-progress", *GRID, "--out", tmp_path,
                           "--launcher", "slurm", "--slurm", "tasks_per_node=2",
                           "cpus_per_task=1", "time=10", "--wait")
    assert code == 0, err
    results = json.loads((tmp_path / "Shallow" / "seed0" / "results.json").read_text())
    assert results["world_size"] == 2 and results["iterations_done"] == 12


def test_an_unknown_slurm_key_is_one_line_naming_it(slurm, tmp_path, capsys):
    code, _, err = compare(capsys, SHALLOW, *GRID, "--out", tmp_path / "out", "--launcher",
                           "slurm", "--slurm", "partitionn=debug")
    assert code == 2 and "partitionn" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out" / "Shallow" / "seed0" / "job.json").exists()
