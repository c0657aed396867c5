"""Runs a researcher can trust: the run-folder rule, locks, resume, errors, saved runs.

Every bad input must get its message and a non-zero exit, and nothing that existed before may
be lost: the tests compare files' checksums before and after.
"""
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from gbml_ext.runner import (
    CheckpointError,
    ConfigError,
    NonFiniteLossError,
    RunFolderError,
    load_config,
    load_run,
    train,
)
from gbml_ext.runner.cli import eval_main, main
from gbml_ext.runner.compare import main as compare_main

TINY = ["data.source=linear-regression", "data.options={dim=4, n_support=8, n_query=8}",
        "train.iterations=6", "train.meta_batch=2", "train.lr=0.01", "train.log_every=1",
        "train.checkpoint_every=3", "evaluation.tasks=5", "algorithm.test_steps=2"]
REPO = Path(__file__).resolve().parents[1]


def tiny(out, *extra):
    return load_config(None, TINY + [f"output_dir='{out}'", *extra])


def checksums(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def cli(capsys, fn, *args):
    code = fn([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# 1. One rule for run folders ---------------------------------------------------------------

def test_new_run_in_a_used_folder_is_refused_and_nothing_is_touched(tmp_path):
    train(tiny(tmp_path), progress=False)
    before = checksums(tmp_path)
    with pytest.raises(RunFolderError, match=f"{tmp_path}.*--resume.*--overwrite.*output_dir"):
        train(tiny(tmp_path, "train.lr=0.02"), progress=False)
    assert checksums(tmp_path) == before


def test_overwrite_moves_the_old_run_aside_never_deletes(tmp_path):
    run = tmp_path / "run"
    train(tiny(run), progress=False)
    before = checksums(run)
    train(tiny(run, "train.lr=0.02"), progress=False, overwrite=True)
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("run.old-")]
    assert len(aside) == 1 and checksums(aside[0]) == before
    assert json.loads((run / "results.json").read_text())["config"]["train"]["lr"] == 0.02


def test_a_live_lock_is_refused_and_a_stale_one_is_replaced(tmp_path, capsys):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "run.lock").write_text(json.dumps({"pid": sleeper.pid,
                                                       "host": os.uname().nodename}))
        with pytest.raises(RunFolderError, match=f"pid {sleeper.pid}"):
            train(tiny(tmp_path), progress=False)
        assert not (tmp_path / "metrics.jsonl").exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    train(tiny(tmp_path), progress=False)  # the process is gone: the lock is stale
    assert "stale lock" in capsys.readouterr().err
    assert not (tmp_path / "run.lock").exists() and (tmp_path / "results.json").exists()


def test_compare_out_puts_every_run_under_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    config = REPO / "experiments/configs/synthetic/linreg_shallow.toml"
    code, out, err = cli(capsys, compare_main, config, "--in-process", "--out", "cmp",
                         "train.iterations=3", "evaluation.tasks=4", "train.eval_every=0")
    assert code == 0, err
    assert not (tmp_path / "runs").exists()
    assert list((tmp_path / "cmp").glob("*/seed0/results.json"))
    written = {p.name for p in (tmp_path / "cmp").iterdir()}
    assert {"compare.md", "compare.json", "compare.png"} <= written
    assert "[1/1]" in err


@pytest.mark.slow
def test_compare_resume_reuses_only_runs_of_the_same_config(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    config = REPO / "experiments/configs/synthetic/linreg_shallow.toml"
    common = [config, "--in-process", "--out", "cmp", "train.eval_every=0"]
    assert cli(capsys, compare_main, *common, "train.iterations=3", "evaluation.tasks=4")[0] == 0
    code, _, err = cli(capsys, compare_main, *common, "--resume", "train.iterations=3",
                       "evaluation.tasks=4")
    assert code == 0 and "reused" in err
    code, _, err = cli(capsys, compare_main, *common, "--resume", "train.iterations=5",
                       "evaluation.tasks=6")
    assert code == 0 and "reused" not in err
    results = json.loads(next((tmp_path / "cmp").glob("*/seed0/results.json")).read_text())
    assert results["iterations_done"] == 5 and results["evaluation"]["loss"]["n"] == 6


# 2. Resume that always works ---------------------------------------------------------------

@pytest.mark.slow
def test_sigint_writes_a_checkpoint_and_resume_finishes(tmp_path):
    out = tmp_path / "run"
    overrides = [o for o in TINY if not o.startswith(("train.iterations", "train.checkpoint"))]
    command = [sys.executable, "-m", "gbml_ext.runner", *overrides, "train.iterations=100000",
               f"output_dir='{out}'", "--no-progress"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and metrics.read_text().count("\n") > 3):
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "SIGINT" in err and "--resume" in err and "Traceback" not in err
    assert (out / "checkpoint.pt").is_file()
    stopped_at = torch.load(out / "checkpoint.pt", weights_only=False)["iteration"]
    assert stopped_at > 3
    resumed = train(load_config(None, overrides + [f"train.iterations={stopped_at + 2}",
                                                   f"output_dir='{out}'"]),
                    resume=True, progress=False)
    assert resumed.results["iterations_done"] == stopped_at + 2


def test_two_checkpoints_kept_and_a_damaged_one_falls_back(tmp_path, capsys):
    train(tiny(tmp_path), progress=False)
    assert (tmp_path / "checkpoint.pt").is_file() and (tmp_path / "checkpoint.prev.pt").is_file()
    (tmp_path / "checkpoint.pt").write_bytes(b"\x00garbage")
    result = train(tiny(tmp_path, "train.iterations=8"), resume=True, progress=False)
    assert "falling back" in capsys.readouterr().err
    assert [h["iteration"] for h in result.history][:4] == [1, 2, 3, 4]  # resumed from 3
    assert result.results["iterations_done"] == 8


def test_resume_with_nothing_to_resume_says_so_and_starts_fresh(tmp_path, capsys):
    train(tiny(tmp_path / "run"), resume=True, progress=False)
    assert "nothing to resume" in capsys.readouterr().err
    assert (tmp_path / "run" / "results.json").is_file()


def test_resume_accepts_harmless_changes(tmp_path):
    train(tiny(tmp_path / "a", "train.iterations=3"), progress=False)
    (tmp_path / "a").rename(tmp_path / "b")  # output_dir moves too
    result = train(tiny(tmp_path / "b", "train.iterations=5", "train.log_every=2",
                        "evaluation.tasks=7", "data.root='./x/../data'", "train.eval_every=2"),
                   resume=True, progress=False)
    assert result.results["iterations_done"] == 5 and result.results["evaluation"]["loss"]["n"] == 7


def test_allow_change_of_inner_lr_is_recorded(tmp_path):
    train(tiny(tmp_path, "train.iterations=3"), progress=False)
    result = train(tiny(tmp_path, "algorithm.inner_lr=0.05"), resume=True, progress=False,
                   allow_change=["algorithm.inner_lr"])
    assert result.results["changes"] == [{"iteration": 3, "key": "algorithm.inner_lr",
                                          "from": 0.1, "to": 0.05}]
    kept = list(tmp_path.glob("results-*.json"))  # the finished run's results are kept
    assert len(kept) == 1


def test_the_divergence_advice_works(tmp_path):
    train(tiny(tmp_path, "train.iterations=3"), progress=False)
    with pytest.raises(NonFiniteLossError) as error:
        train(tiny(tmp_path, "algorithm.inner_lr=1e6"), resume=True,
              progress=False, allow_change=["algorithm.inner_lr"])
    message = str(error.value)
    assert "the inner loop diverges" in message
    assert "Continue from the checkpoint of iteration 3" in message
    assert "--resume --allow-change algorithm.inner_lr algorithm.inner_lr=" in message
    # following the advice (a lower rate, from the same checkpoint) finishes the run
    result = train(tiny(tmp_path, "algorithm.inner_lr=0.05"), resume=True, progress=False,
                   allow_change=["algorithm.inner_lr"])
    assert result.results["iterations_done"] == 6


# 3. Nothing nonsensical exits 0 --------------------------------------------------------------

@pytest.mark.parametrize("override", ["algorithm.inner_lr=inf", "algorithm.inner_lr=nan",
                                      "train.lr=-1", "data.ways=0", "data.shots=0",
                                      "data.queries=0", "evaluation.tasks=0",
                                      "train.iterations=0", "train.explode_factor=1"])
def test_nonsense_values_are_config_errors(override, tmp_path, capsys):
    key = override.split("=")[0]
    code, _, err = cli(capsys, main, *TINY, f"output_dir='{tmp_path}'", override)
    assert code == 2 and key in err and "must be" in err
    assert not any(tmp_path.iterdir())


def test_an_exploding_inner_loop_exits_non_zero(tmp_path, capsys):
    code, _, err = cli(capsys, main, *TINY, f"output_dir='{tmp_path}'", "algorithm.inner_lr=1e6",
                       "--no-progress")
    assert code == 1 and "diverges" in err and "--overwrite algorithm.inner_lr=" in err
    assert not (tmp_path / "results.json").exists()


def test_evaluation_divergence_is_an_error(tmp_path, capsys):
    train(tiny(tmp_path), progress=False)
    before = checksums(tmp_path)
    code, _, err = cli(capsys, eval_main, tmp_path, "--steps", "3", "algorithm.inner_lr=1e30",
                       "--no-progress")
    assert code == 1 and "diverges at test time" in err
    assert checksums(tmp_path) == before


# 4. Clean errors ----------------------------------------------------------------------------

@pytest.mark.parametrize("overrides,expected", [
    (["data.source=omniglot", "data.root=/nonexistent/omniglot", "model.name=omniglot_cnn4",
      "data.options={}"],
     "/nonexistent/omniglot"),
    (["device=cuda"], "no GPU"),
    (["model.options={nope=1}"], "model.options"),
    (["data.options={nope=1}"], "data.options"),
    (["algorithm.batched=true", "algorithm.name=reptile"], "batched"),
])
def test_user_errors_print_a_short_message_not_a_traceback(overrides, expected, tmp_path, capsys):
    if expected == "no GPU" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, _, err = cli(capsys, main, *TINY, f"output_dir='{tmp_path}'", *overrides, "--no-progress")
    assert code != 0 and expected in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 2, err


def test_damaged_checkpoints_and_mismatches_are_clean_errors(tmp_path, capsys):
    train(tiny(tmp_path), progress=False)
    code, _, err = cli(capsys, main, *TINY, f"output_dir='{tmp_path}'", "train.lr=0.5", "--resume")
    assert code == 2 and "train.lr" in err and "--allow-change train.lr" in err
    for name in ("checkpoint.pt", "checkpoint.prev.pt"):
        (tmp_path / name).write_bytes(b"broken")
    code, _, err = cli(capsys, main, *TINY, f"output_dir='{tmp_path}'", "--resume")
    assert code == 1 and "cannot be read" in err and "Traceback" not in err


def test_debug_shows_the_traceback(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"broken")
    with pytest.raises(CheckpointError):
        main([*TINY, f"output_dir='{tmp_path}'", "--resume", "--debug", "--no-progress"])


def test_compare_config_errors_are_clean(capsys):
    code, _, err = cli(capsys, compare_main,
                       REPO / "experiments/configs/synthetic/linreg_shallow.toml", "train.nope=3")
    assert code == 2 and "unknown config key" in err and "Traceback" not in err


# 5. One command-line grammar ----------------------------------------------------------------

def test_overrides_go_anywhere_and_print_config_shows_ranges(tmp_path, capsys):
    config = REPO / "experiments/configs/synthetic/linreg_shallow.toml"
    code, out, _ = cli(capsys, main, config, "--print-config", "train.iterations=7")
    assert code == 0 and "iterations = 7  # int, >= 1" in out
    assert "inner_lr = 0.5  # float, > 0" in out
    args = [config, *TINY, f"output_dir='{tmp_path}'", "--no-progress"]
    assert cli(capsys, main, *args)[0] == 0
    code, _, err = cli(capsys, main, config, "--resume", *TINY, "train.iterations=8",
                       f"output_dir='{tmp_path}'", "--no-progress")
    assert code == 0, err
    assert json.loads((tmp_path / "results.json").read_text())["iterations_done"] == 8


# 6. Saved runs are first-class --------------------------------------------------------------

def test_gbml_eval_and_load_run(tmp_path, capsys):
    trained = train(tiny(tmp_path), progress=False)
    code, out, err = cli(capsys, eval_main, tmp_path, "--tasks", "9", "--steps", "1",
                         "--split", "validation", "--no-progress")
    assert code == 0, err
    written = json.loads((tmp_path / "eval-validation-1steps-9tasks.json").read_text())
    assert written["evaluation"]["loss"]["n"] == 9 and written["split"] == "validation"
    # re-evaluating with the run's own settings gives the run's own numbers
    assert eval_main([str(tmp_path), "--no-progress"]) == 0
    again = json.loads((tmp_path / "eval-test-2steps-5tasks.json").read_text())
    assert again["evaluation"]["loss"] == trained.results["evaluation"]["loss"]

    states = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state())
    run = load_run(tmp_path)
    assert random.getstate() == states[0] and np.array_equal(np.random.get_state()[1], states[1])
    assert torch.equal(torch.get_rng_state(), states[2])
    for a, b in zip(run.learner.state_dict().values(), trained.algorithm.state_dict().values()):
        assert torch.equal(a, b)
    assert run.iteration == 6 and run.config.train.iterations == 6


def test_load_run_of_an_empty_folder_is_clear(tmp_path):
    with pytest.raises(CheckpointError, match="config.json"):
        load_run(tmp_path)


def test_config_error_type_is_kept(tmp_path):
    with pytest.raises(ConfigError):
        tiny(tmp_path, "data.shots=0")


def test_runs_written_before_a_new_key_still_resume(tmp_path):
    """A key added to the config later (here algorithm.path) takes its default on resume."""
    train(tiny(tmp_path, "train.iterations=3"), progress=False)
    for path in tmp_path.glob("checkpoint*.pt"):
        state = torch.load(path, weights_only=False)
        del state["config"]["algorithm"]["path"]
        torch.save(state, path)
    assert train(tiny(tmp_path), resume=True, progress=False).results["iterations_done"] == 6
