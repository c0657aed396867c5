"""Checkpoints and resume: two kept, a damaged one falls back, harmless changes accepted, changes
that alter the numbers refused or recorded, a run never shortened.

The helpers (tiny configs, checksums, the read-only simulation) are in run_fixtures.py; where
something could be lost, the tests compare files' checksums before and after.
"""
import json
import signal
import subprocess
import sys
import time

import pytest
import torch

from gbml_ext.runner import load_config, train
from gbml_ext.runner.cli import main
from run_fixtures import REPO, TINY, TINY6, checksums, clean_error, cli, tiny, tiny6


@pytest.mark.slow
def test_sigint_writes_a_checkpoint_and_resume_finishes(tmp_path):
    out = tmp_path / "run"
    overrides = [o for o in TINY6 if not o.startswith(("train.iterations", "train.checkpoint"))]
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
    stopped_at = torch.load(out / "checkpoint.pt", weights_only=True)["iteration"]
    assert stopped_at > 3
    resumed = train(load_config(None, overrides + [f"train.iterations={stopped_at + 2}",
                                                   f"output_dir='{out}'"]),
                    resume=True, progress=False)
    assert resumed.results["iterations_done"] == stopped_at + 2


def test_two_checkpoints_kept_and_a_damaged_one_falls_back(tmp_path, capsys):
    train(tiny6(tmp_path), progress=False)
    assert (tmp_path / "checkpoint.pt").is_file() and (tmp_path / "checkpoint.prev.pt").is_file()
    (tmp_path / "checkpoint.pt").write_bytes(b"\x00garbage")
    result = train(tiny6(tmp_path, "train.iterations=8"), resume=True, progress=False)
    assert "falling back" in capsys.readouterr().err
    assert [h["iteration"] for h in result.history][:4] == [1, 2, 3, 4]  # resumed from 3
    assert result.results["iterations_done"] == 8


def test_resume_with_nothing_to_resume_says_so_and_starts_fresh(tmp_path, capsys):
    train(tiny6(tmp_path / "run"), resume=True, progress=False)
    assert "nothing to resume" in capsys.readouterr().err
    assert (tmp_path / "run" / "results.json").is_file()


def test_resume_accepts_harmless_changes(tmp_path):
    train(tiny6(tmp_path / "a", "train.iterations=3"), progress=False)
    (tmp_path / "a").rename(tmp_path / "b")  # output_dir moves too
    result = train(tiny6(tmp_path / "b", "train.iterations=5", "train.log_every=2",
                        "evaluation.tasks=7", "data.root='./x/../data'", "train.eval_every=2"),
                   resume=True, progress=False)
    assert result.results["iterations_done"] == 5 and result.results["evaluation"]["loss"]["n"] == 7


def test_allow_change_of_inner_lr_is_recorded(tmp_path):
    train(tiny6(tmp_path, "train.iterations=3"), progress=False)
    result = train(tiny6(tmp_path, "algorithm.inner_lr=0.05"), resume=True, progress=False,
                   allow_change=["algorithm.inner_lr"])
    assert result.results["changes"] == [{"iteration": 3, "key": "algorithm.inner_lr",
                                          "from": 0.1, "to": 0.05}]
    kept = list(tmp_path.glob("results-*.json"))  # the finished run's results are kept
    assert len(kept) == 1


def test_damaged_checkpoints_and_mismatches_are_clean_errors(tmp_path, capsys):
    train(tiny6(tmp_path), progress=False)
    code, _, err = cli(capsys, main, *TINY6, f"output_dir='{tmp_path}'", "train.lr=0.5", "--resume")
    assert code == 2 and "train.lr" in err and "--allow-change train.lr" in err
    for name in ("checkpoint.pt", "checkpoint.prev.pt"):
        (tmp_path / name).write_bytes(b"broken")
    code, _, err = cli(capsys, main, *TINY6, f"output_dir='{tmp_path}'", "--resume")
    assert code == 1 and "cannot be read" in err and "Traceback" not in err


def test_runs_written_before_a_new_key_still_resume(tmp_path):
    """A key added to the config later (here algorithm.path) takes its default on resume."""
    train(tiny6(tmp_path, "train.iterations=3"), progress=False)
    for path in tmp_path.glob("checkpoint*.pt"):
        state = torch.load(path, weights_only=True)
        del state["config"]["algorithm"]["path"]
        torch.save(state, path)
    assert train(tiny6(tmp_path), resume=True, progress=False).results["iterations_done"] == 6


def test_resume_with_fewer_iterations_is_refused_and_nothing_changes(tmp_path, capsys):
    code, _, err = cli(capsys, main, *TINY, "train.iterations=5", f"output_dir='{tmp_path}'",
                       "--no-progress")
    assert code == 0, err
    before = checksums(tmp_path)
    code, _, err = cli(capsys, main, *TINY, "train.iterations=3", f"output_dir='{tmp_path}'",
                       "--resume", "--no-progress")
    assert code == 2 and clean_error(err), err
    assert "train.iterations=3" in err and "5 meta-iterations" in err and "--overwrite" in err
    assert checksums(tmp_path) == before
    assert json.loads((tmp_path / "results.json").read_text())["iterations_done"] == 5


def test_the_runs_guide_says_a_short_run_writes_one_checkpoint(tmp_path):
    train(tiny(tmp_path), progress=False)  # checkpoints only at the end
    assert sorted(p.name for p in tmp_path.glob("checkpoint*")) == ["checkpoint.pt"]
    guide = " ".join((REPO / "docs" / "runs.md").read_text().split())
    assert "two checkpoints" not in guide
    assert "`checkpoint.pt` (and `checkpoint.prev.pt`" in guide


def test_a_mismatch_without_an_allowed_key_reads_as_one_sentence(tmp_path, capsys):
    train(tiny(tmp_path), progress=False)
    code, _, err = cli(capsys, main, *TINY, f"output_dir='{tmp_path}'", "--resume",
                       "model.linnet_depth=2", "--no-progress")
    assert code == 2 and clean_error(err, 1), err
    assert "model.linnet_depth: 0 -> 2). Resume with the same settings" in err
    assert "Otherwise" not in err


def test_a_damaged_metrics_file_is_rewritten_from_the_checkpoint_on_resume(tmp_path):
    train(tiny(tmp_path), progress=False)
    (tmp_path / "metrics.jsonl").write_text("{")
    result = train(tiny(tmp_path, "train.iterations=5"), resume=True, progress=False)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in lines if r["split"] == "train"] == [1, 2, 3, 4, 5]
    assert result.results["iterations_done"] == 5


def test_the_stop_file_stops_a_run_with_a_checkpoint_and_resume_finishes_it_unchanged(
        tmp_path, capsys):
    stopped, whole = tmp_path / "stopped", tmp_path / "whole"
    train(tiny6(stopped, "train.iterations=3"), progress=False)
    (stopped / "stop").write_text("pruned: validation loss above the median\n")
    args = [*TINY6, f"output_dir='{stopped}'", "--resume", "--no-progress"]
    code, _, err = cli(capsys, main, *args)
    assert code == 3 and clean_error(err, 1), err
    # Seen before the first resumed iteration: the run stops where its checkpoint is.
    assert "(pruned: validation loss above the median); stopped at iteration 3 of 6" in err
    assert not (stopped / "stop").exists()  # taken: --resume goes on
    assert torch.load(stopped / "checkpoint.pt", weights_only=True)["iteration"] == 3
    # No evaluation: the results are still those of the first three iterations.
    assert json.loads((stopped / "results.json").read_text())["iterations_done"] == 3
    assert cli(capsys, main, *args)[0] == 0
    train(tiny6(whole), progress=False)
    per_task = [json.loads((folder / "results.json").read_text())["evaluation"]["per_task"]
                for folder in (stopped, whole)]
    assert per_task[0] == per_task[1]  # the same numbers as the run never stopped
