"""A study continues where it stopped: after the gbml-tune process is killed, or stopped with
Ctrl-C, the same command finishes the study with the asked number of trials and never runs a
finished trial again."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest

from gbml_ext.tune.cli import main as tune_main
from run_fixtures import REPO, cli

EXAMPLE = REPO / "experiments/configs/synthetic/linreg_tune.toml"
TINY = ["data.options={dim=4, n_support=8, n_query=8}", "train.meta_batch=2",
        "train.eval_every=10", "train.eval_tasks=4", "train.log_every=10", "evaluation.tasks=8",
        "train.plot=false", "algorithm.test_steps=1", "tune.pruner=none"]
pytestmark = pytest.mark.slow


def _start(out, *extra):
    command = [sys.executable, "-m", "gbml_ext.tune", str(EXAMPLE), "--trials", "3", "--out",
               str(out), *TINY, *extra]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=REPO)


def _wait_for(predicate, seconds, what):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def _finished(out):
    try:
        rows = json.loads((out / "trials.json").read_text())["trials"]
    except (OSError, ValueError):
        return []
    return [r for r in rows if r["state"] == "complete"]


def _study(out):
    return optuna.load_study(study_name="gbml-tune", storage=f"sqlite:///{out / 'study.db'}")


def _stamps(out, numbers):
    """(results.json's modification time, the launcher's job.json) of each trial: both change if
    the trial runs again."""
    folder = out / "trials"
    return {n: ((folder / f"trial-{n:04d}" / "results.json").stat().st_mtime_ns,
                (folder / f"trial-{n:04d}" / "job.json").read_text()) for n in numbers}


def test_a_killed_study_resumes_without_repeating_a_finished_trial(tmp_path, capsys):
    out = tmp_path / "tune"
    process = _start(out, "--jobs", "1", "train.iterations=60")
    _wait_for(lambda: len(_finished(out)) >= 1 and (out / "trials/trial-0001/job.json").exists(),
              600, "the first trial to finish and the second to start")
    process.kill()  # SIGKILL: no clean-up at all; trial 1's run goes on on its own
    process.wait()
    done = [r["trial"] for r in _finished(out)]
    values = {t.number: t.value for t in _study(out).trials if t.number in done}
    before = _stamps(out, done)
    assert 0 in done and len(_study(out).trials) >= 2

    code, _, err = cli(capsys, tune_main, EXAMPLE, "--trials", "3", "--out", out, *TINY,
                       "--jobs", "1", "train.iterations=60")
    assert code == 0, err
    assert "resuming the study" in err
    trials = _study(out).trials
    assert [t.number for t in trials] == [0, 1, 2]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert {t.number: t.value for t in trials if t.number in done} == values
    assert _stamps(out, done) == before  # the finished trials did not run again
    for number in done:
        assert f"trial {number}: algorithm" not in err  # nor were they started
    # Trial 1's run went on after the kill: it is waited for (or found done), not started again.
    assert err.count("started in") == 1 and "trial 2: started in" in err, err
    assert len(json.loads((out / "trials.json").read_text())["trials"]) == 3
    assert (out / "best.toml").is_file()


def test_ctrl_c_checkpoints_the_running_trial_and_the_same_command_finishes_it(tmp_path, capsys):
    out = tmp_path / "tune"
    process = _start(out, "--jobs", "1", "train.iterations=1500", "--trials", "1")
    metrics = out / "trials/trial-0000/metrics.jsonl"
    _wait_for(lambda: metrics.exists() and metrics.read_text().count("validation") >= 2, 600,
              "the first trial to log validation records")
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "checkpointed and stopped" in err, err
    assert err.strip().splitlines()[-1] == (  # the run's own line above it names --resume
        "gbml-tune: stopped: 1 run(s) checkpointed and stopped (0 not started); the same "
        "gbml-tune command continues the study.")
    assert (out / "trials/trial-0000/checkpoint.pt").is_file()
    assert [t.state for t in _study(out).trials] == [optuna.trial.TrialState.RUNNING]

    code, _, err = cli(capsys, tune_main, EXAMPLE, "--trials", "1", "--out", out, *TINY,
                       "--jobs", "1", "train.iterations=1500")
    assert code == 0, err
    assert "1 to finish" in err
    # resumed from its checkpoint: a fresh start would have moved the folder aside
    assert sorted(p.name for p in (out / "trials").iterdir()) == ["trial-0000"]
    trial = _study(out).trials[0]
    assert trial.state == optuna.trial.TrialState.COMPLETE
    results = json.loads((out / "trials/trial-0000/results.json").read_text())
    assert results["iterations_done"] == 1500 and trial.value == results["evaluation"]["loss"][
        "mean"]
