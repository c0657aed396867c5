"""The launcher: a plan checked before anything starts, local worker processes that give the
same numbers as one process, run states read from the folders, and idempotent re-runs."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gbml_ext.compare import main as compare_main
from gbml_ext.launch import build_plan, format_status, launch, plan_status, write_job
from gbml_ext.runner.errors import RunError, RunFolderError

REPO = Path(__file__).resolve().parents[1]
SHALLOW = REPO / "experiments/configs/synthetic/linreg_shallow.toml"
KFO = REPO / "experiments/configs/synthetic/linreg_kfo.toml"
GRID = ["train.iterations=12", "train.meta_batch=4", "evaluation.tasks=16", "train.eval_every=0",
        "train.log_every=4"]


def per_task_losses(out: Path) -> dict:
    """{run folder: every test task's loss after every step}, from results.json files."""
    found = {}
    for path in sorted(out.rglob("seed*/results.json")):
        results = json.loads(path.read_text())
        found[str(path.parent.relative_to(out))] = results["evaluation"]["per_task"]
    return found


def compare(capsys, *args) -> tuple:
    code = compare_main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.slow
def test_two_local_jobs_give_the_numbers_of_one_bit_for_bit(tmp_path, capsys):
    grid = [SHALLOW, KFO, "--seeds", "0", "1", "--no-progress", *GRID]
    assert compare(capsys, *grid, "--out", tmp_path / "one", "--jobs", "1")[0] == 0
    code, _, err = compare(capsys, *grid, "--out", tmp_path / "two", "--jobs", "2")
    assert code == 0, err
    one, two = per_task_losses(tmp_path / "one"), per_task_losses(tmp_path / "two")
    assert len(one) == 4 and one == two  # exact equality of every float
    assert (tmp_path / "two" / "Shallow" / "seed1" / "launch.log").is_file()
    # The same command again starts nothing and leaves every result as it was.
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "two").rglob("results.json")}
    code, _, err = compare(capsys, *grid, "--out", tmp_path / "two", "--jobs", "2", "--resume")
    assert code == 0 and "4 of 4 runs need nothing (4 done); starting 0" in err, err
    assert before == {p: p.stat().st_mtime_ns for p in (tmp_path / "two").rglob("results.json")}


def test_status_reads_every_state_from_the_run_folders(tmp_path, capsys):
    plan = build_plan([SHALLOW], [0, 1, 2, 3], GRID, tmp_path)
    launch(plan[:1])                                       # seed 0: done
    running = plan[1].run_dir                              # seed 1: a live process holds it
    running.mkdir(parents=True)
    (running / "run.lock").write_text(json.dumps({"pid": os.getpid(),
                                                  "host": os.uname().nodename}))
    failed = plan[2].run_dir                               # seed 2: exited 1, with its log
    failed.mkdir(parents=True)
    (failed / "launch.log").write_text("loading\ngbml-train: error: out of memory\n")
    write_job(failed, {"launcher": "local", "pid": 1, "exit_code": 1,
                       "log": str(failed / "launch.log")})
    states = plan_status(plan)
    assert [s.state for s in states] == ["done", "running", "failed", "not started"]
    assert "out of memory" in states[2].detail and str(os.getpid()) in states[1].detail
    table = format_status(plan, states)
    assert "1 done, 1 running, 1 failed, 1 not started" in table
    # --status on the command line shows the same and starts nothing.
    code, out, _ = compare(capsys, SHALLOW, "--seeds", "0", "1", "2", "3", "--out", tmp_path,
                           "--status", *GRID)
    assert code == 0 and "failed" in out and not (plan[3].run_dir / "results.json").exists()


def test_a_worker_still_starting_reads_as_running_so_nothing_starts_it_twice(tmp_path):
    """Before a local worker takes its run.lock (it is importing torch), job.json's pid and the
    process's command line, which names the run folder, say it is running."""
    import socket

    plan = build_plan([SHALLOW], [0], GRID, tmp_path)
    run_dir = plan[0].run_dir
    run_dir.mkdir(parents=True)
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                               f"output_dir={run_dir}"])
    try:
        write_job(run_dir, {"launcher": "local", "pid": worker.pid,
                            "host": socket.gethostname()})
        state = plan_status(plan)[0]
        assert state.state == "running" and str(worker.pid) in state.detail
        assert [s.state for s in launch(plan)] == ["running"]  # not started a second time
        assert not (run_dir / "results.json").exists()
    finally:
        worker.kill()
        worker.wait()
    assert plan_status(plan)[0].state != "running"  # a dead pid is not running


def test_a_seed_override_beside_seeds_is_refused_before_anything_runs(tmp_path, capsys):
    code, _, err = compare(capsys, SHALLOW, "--seeds", "0", "1", "seed=5", "--out", tmp_path,
                           *GRID)
    assert code != 0 and "seed=5 beside --seeds" in err and "--seeds 5" in err
    assert len(err.strip().splitlines()) == 1 and not any(tmp_path.iterdir())


def test_two_runs_of_one_folder_are_refused_before_anything_runs(tmp_path):
    with pytest.raises(RunFolderError, match="listed twice"):
        build_plan([SHALLOW, SHALLOW], [0], GRID, tmp_path)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("jobs", ["0", "-1"])
def test_jobs_below_one_is_a_clear_error(tmp_path, capsys, jobs):
    code, _, err = compare(capsys, SHALLOW, "--out", tmp_path, "--jobs", jobs, *GRID)
    assert code == 1 and f"--jobs {jobs}: give 1 or more" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_more_jobs_than_runs_is_clamped_and_said(tmp_path):
    plan = build_plan([SHALLOW], [0], GRID, tmp_path)
    with pytest.raises(RunError, match="give 1 or more"):
        launch(plan, jobs=0)
    states = launch(plan, jobs=3)
    assert [s.state for s in states] == ["done"]


def test_slurm_without_sbatch_is_one_line_and_submits_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    code, _, err = compare(capsys, SHALLOW, "--out", tmp_path / "out", "--launcher", "slurm",
                           *GRID)
    assert code == 2 and ("needs Slurm's sbatch" in err or "needs submitit" in err)
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_ctrl_c_checkpoints_every_running_run_and_a_rerun_resumes(tmp_path):
    out = tmp_path / "cmp"
    long = ["train.iterations=4000", "train.meta_batch=4", "evaluation.tasks=8",
            "train.eval_every=0", "train.log_every=50", "train.checkpoint_every=0"]
    command = [sys.executable, "-m", "gbml_ext.compare", str(SHALLOW), "--seeds", "0",
               "1", "--jobs", "2", "--out", str(out), "--no-progress", *long]
    parent = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    logs = [out / "Shallow" / f"seed{s}" / "metrics.jsonl" for s in (0, 1)]
    deadline = time.monotonic() + 120
    while not all(p.is_file() and p.stat().st_size for p in logs):  # both runs are training
        assert parent.poll() is None and time.monotonic() < deadline, parent.stderr.read()
        time.sleep(0.2)
    parent.send_signal(signal.SIGINT)
    _, err = parent.communicate(timeout=120)
    assert parent.returncode == 130, err
    assert "checkpointed and stopped" in err and "--resume" in err and "Traceback" not in err
    for seed in (0, 1):  # each run wrote its checkpoint on the way out
        assert (out / "Shallow" / f"seed{seed}" / "checkpoint.pt").is_file()
        assert not (out / "Shallow" / f"seed{seed}" / "results.json").exists()


def test_slurm_without_submitit_is_one_line_naming_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit -> ImportError
    code, _, err = compare(capsys, SHALLOW, "--out", tmp_path / "out", "--launcher", "slurm",
                           *GRID)
    assert code == 2 and "pip install 'gbml_ext[cluster]'" in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_status_of_a_finished_grid_says_what_a_rerun_would_do(tmp_path, capsys):
    grid = [SHALLOW, "--seeds", "0", "1", "--out", tmp_path, "--no-progress", *GRID]
    assert compare(capsys, *grid, "--in-process")[0] == 0
    code, out, _ = compare(capsys, *grid, "--status", "train.iterations=20")
    assert code == 0 and "failed" not in out and "checkpoint kept" not in out, out
    assert out.count("changed      finished 12 meta-iterations; a re-run extends it to 20") == 2
    code, out, _ = compare(capsys, *grid, "--status", "train.lr=0.05")
    assert code == 0 and "failed" not in out and "2 changed" in out, out
    assert "train.lr 0.01 -> 0.05; a re-run refuses to change it: add --allow-change train.lr" \
        in out
    code, out, _ = compare(capsys, *grid, "--status", "train.lr=0.05", "--allow-change",
                           "train.lr")
    assert "a re-run evaluates it again with the new values" in out and "refuses" not in out
    code, out, _ = compare(capsys, *grid, "--status", "train.iterations=6")
    assert "a run cannot be shortened: give train.iterations=12 or more" in out, out
    code, out, _ = compare(capsys, *grid, "--status")
    assert "2 done" in out


@pytest.mark.slow
def test_resume_refused_by_every_run_says_the_runs_hold_another_configs_results(tmp_path,
                                                                                capsys):
    grid = [SHALLOW, "--seeds", "0", "--out", tmp_path, "--no-progress", *GRID]
    assert compare(capsys, *grid, "--in-process")[0] == 0
    before = {p: p.read_bytes() for p in tmp_path.rglob("results.json")}
    code, _, err = compare(capsys, *grid, "--resume", "train.lr=0.05")
    last = err.strip().splitlines()[-1]
    assert code == 1 and "Traceback" not in err and "has no results:" not in err, err
    assert "Shallow seed 0" in last and "has no results of this config" in last, err
    assert "a re-run refuses to change it: add --allow-change train.lr" in last
    assert before == {p: p.read_bytes() for p in tmp_path.rglob("results.json")}


@pytest.mark.slow
def test_ctrl_c_while_the_runs_start_says_nothing_was_checkpointed(tmp_path):
    out = tmp_path / "cmp"
    command = [sys.executable, "-m", "gbml_ext.compare", str(SHALLOW), "--seeds", "0", "1",
               "--jobs", "2", "--out", str(out), "--no-progress", *GRID]
    parent = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    jobs = [out / "Shallow" / f"seed{s}" / "job.json" for s in (0, 1)]
    deadline = time.monotonic() + 120
    while not all(p.is_file() for p in jobs):  # both workers are starting (importing torch)
        assert parent.poll() is None and time.monotonic() < deadline, parent.stderr.read()
        time.sleep(0.02)
    parent.send_signal(signal.SIGINT)
    _, err = parent.communicate(timeout=120)
    assert parent.returncode == 130, err
    assert "checkpointed and stopped" not in err, err
    assert "2 run(s) stopped before their first checkpoint (nothing to resume" in err, err
    assert not list(out.rglob("checkpoint.pt"))


OTHER_COMMAND = """
import shutil, sys, time
from pathlib import Path
from gbml_ext.runner.rundir import run_lock
run_dir, finished = Path(sys.argv[1]), Path(sys.argv[2])
with run_lock(run_dir):
    while not (run_dir / "release").exists():
        time.sleep(0.02)
    (run_dir / "release").unlink()
    for name in ("config.json", "metrics.jsonl", "results.json"):
        shutil.copy(finished / name, run_dir / name)
"""


@pytest.mark.slow
def test_a_run_another_command_holds_is_waited_for_and_not_a_failure(tmp_path, capsys,
                                                                     monkeypatch):
    """Two commands on one --out: the second's worker finds the run locked by the first; the
    second waits for it and reports it done by another process."""
    from gbml_ext.launch import local

    reference = tmp_path / "reference"
    assert compare(capsys, SHALLOW, "--out", reference, "--in-process", "--no-progress",
                   *GRID)[0] == 0
    real_start, others = local._start, []

    def start_after_another(spec, *args):
        others.append(subprocess.Popen([sys.executable, "-c", OTHER_COMMAND, str(spec.run_dir),
                                        str(reference / "Shallow" / "seed0")]))
        while not (spec.run_dir / "run.lock").is_file():
            assert others[0].poll() is None
            time.sleep(0.02)
        run = real_start(spec, *args)

        def release_once_the_worker_ended():
            stat = Path(f"/proc/{run.process.pid}/stat")
            while stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z":
                time.sleep(0.02)
            (spec.run_dir / "release").write_text("")

        threading.Thread(target=release_once_the_worker_ended, daemon=True).start()
        return run

    monkeypatch.setattr(local, "_start", start_after_another)
    code, out, err = compare(capsys, SHALLOW, "--out", tmp_path / "cmp", "--resume",
                             "--no-progress", *GRID)
    assert others[0].wait(timeout=60) == 0
    assert code == 0, err
    assert "failed" not in err and "Shallow seed 0: done by another process" in err, err
    assert "| Shallow |" in out


def test_a_run_its_stop_file_stopped_is_not_reported_as_failed():
    """gbml-tune prunes a trial through its stop file: the run exits 3 with a checkpoint, and
    the launcher's progress line says it stopped and can resume, not that it failed."""
    from gbml_ext.launch.local import _ended
    from gbml_ext.runner.errors import STOPPED_EXIT_CODE, RunStopped

    assert RunStopped("x").exit_code == STOPPED_EXIT_CODE
    assert _ended(STOPPED_EXIT_CODE).startswith("stopped by its stop file")
    assert "failed" not in _ended(STOPPED_EXIT_CODE)
    assert _ended(1) == "failed (exit 1)" and _ended(0) == "done"
    from gbml_ext.launch.local import LocalLauncher

    view = LocalLauncher().view({"exit_code": STOPPED_EXIT_CODE}, None)
    assert view is not None and view.detail.startswith("stopped by its stop file")
    assert LocalLauncher().view({"exit_code": 1}, None).detail == "exit 1"

