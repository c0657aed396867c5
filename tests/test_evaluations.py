"""gbml-eval and load_run: re-evaluating a saved run without retraining, and its errors.

The helpers (tiny configs, checksums, the read-only simulation) are in run_fixtures.py; where
something could be lost, the tests compare files' checksums before and after.
"""
import json
import random

import numpy as np
import pytest
import torch

from gbml_ext.runner import CheckpointError, load_run, train
from gbml_ext.runner.cli import eval_main
from run_fixtures import checksums, clean_error, cli, tiny, tiny6


def test_evaluation_divergence_is_an_error(tmp_path, capsys):
    train(tiny6(tmp_path), progress=False)
    before = checksums(tmp_path)
    code, _, err = cli(capsys, eval_main, tmp_path, "--steps", "3", "algorithm.inner_lr=1e30",
                       "--no-progress")
    assert code == 1 and "diverges at test time" in err
    assert checksums(tmp_path) == before


def test_gbml_eval_and_load_run(tmp_path, capsys):
    trained = train(tiny6(tmp_path), progress=False)
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
    for a, b in zip(run.learner.state_dict().values(), trained.algorithm.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    assert run.iteration == 6 and run.config.train.iterations == 6


def test_load_run_of_an_empty_folder_is_clear(tmp_path):
    with pytest.raises(CheckpointError, match="config.json"):
        load_run(tmp_path)


def test_gbml_eval_prints_a_result_it_cannot_save(tmp_path, read_only, capsys):
    trained = train(tiny(tmp_path / "run"), progress=False)
    before = checksums(tmp_path)
    read_only(tmp_path)
    code, out, err = cli(capsys, eval_main, tmp_path / "run", "--tasks", "4", "--no-progress")
    assert code == 1 and clean_error(err), err
    assert f"{tmp_path}/run" in err and "eval-test-1steps-4tasks" in err and "--out" in err
    loss = trained.results["evaluation"]["loss"]
    assert f"{loss['mean']:.4f} ± {loss['ci95']:.4f}" in out  # the result is printed anyway
    assert checksums(tmp_path) == before
    # and --out saves it elsewhere
    code, out, err = cli(capsys, eval_main, tmp_path / "run", "--tasks", "4", "--no-progress",
                         "--out", tmp_path.parent / "elsewhere")
    assert code == 0, err
    saved = json.loads((tmp_path.parent / "elsewhere/eval-test-1steps-4tasks.json").read_text())
    assert saved["evaluation"]["loss"] == loss and saved["evaluation_peak_memory_mb"] >= 0


def test_gbml_eval_with_a_damaged_config_json_says_so_and_uses_the_checkpoint(tmp_path, capsys):
    trained = train(tiny(tmp_path), progress=False)
    (tmp_path / "config.json").write_text('{"name": "experi')
    before = checksums(tmp_path)["config.json"]
    code, out, err = cli(capsys, eval_main, tmp_path, "--no-progress")
    assert code == 0 and "Traceback" not in err, err
    assert f"{tmp_path}/config.json is damaged" in err and "checkpoint" in err
    saved = json.loads((tmp_path / "eval-test-1steps-4tasks.json").read_text())
    assert saved["evaluation"]["loss"] == trained.results["evaluation"]["loss"]
    assert checksums(tmp_path)["config.json"] == before
    assert load_run(tmp_path).iteration == 3


def test_a_damaged_config_json_without_a_checkpoint_names_the_file(tmp_path, capsys):
    (tmp_path / "config.json").write_text("{")
    code, _, err = cli(capsys, eval_main, tmp_path, "--no-progress")
    assert code == 1 and clean_error(err) and f"{tmp_path}/config.json is damaged" in err, err


def test_gbml_eval_device_errors_are_one_line(tmp_path, monkeypatch, capsys):
    train(tiny(tmp_path), progress=False)
    before = checksums(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, _, err = cli(capsys, eval_main, tmp_path, "--device", "cuda", "--no-progress")
    assert code == 1 and clean_error(err, 1) and "no GPU" in err and "--device cpu" in err, err
    code, _, err = cli(capsys, eval_main, tmp_path, "--device", "tpu", "--no-progress")
    assert code == 2 and clean_error(err, 1) and "'tpu'" in err and "cpu" in err, err
    assert checksums(tmp_path) == before


def test_gbml_eval_names_its_own_flags_in_config_errors(tmp_path, capsys):
    train(tiny(tmp_path), progress=False)
    code, _, err = cli(capsys, eval_main, tmp_path, "--tasks", "1", "--no-progress")
    assert code == 2 and clean_error(err) and "--tasks 1" in err, err
    assert "saved in" not in err


def test_evaluations_with_other_settings_are_all_kept(tmp_path, capsys):
    train(tiny(tmp_path), progress=False)
    out = tmp_path.parent / f"{tmp_path.name}-evals"
    code, _, err = cli(capsys, eval_main, tmp_path, "--out", out, "--no-progress")
    assert code == 0, err
    first = checksums(out)
    code, _, err = cli(capsys, eval_main, tmp_path, "--out", out, "algorithm.inner_lr=0.05",
                       "--no-progress")
    assert code == 0, err
    after = checksums(out)
    assert {name: after[name] for name in first} == first  # the first is untouched
    changed = json.loads((out / "eval-test-1steps-4tasks-algorithm.inner_lr=0.05.json")
                         .read_text())
    assert changed["changed"] == {"algorithm.inner_lr": 0.05}
    assert changed["config"]["algorithm"]["inner_lr"] == 0.05
    assert (out / "eval-test-1steps-4tasks-algorithm.inner_lr=0.05.md").is_file()
    assert json.loads((out / "eval-test-1steps-4tasks.json").read_text())["changed"] == {}
    # the same evaluation again keeps the earlier one beside it
    code, _, err = cli(capsys, eval_main, tmp_path, "--out", out, "--no-progress")
    assert code == 0, err
    kept = [p for p in out.glob("eval-test-1steps-4tasks-2*.json")]
    assert len(kept) == 1 and checksums(out)[kept[0].name] == first["eval-test-1steps-4tasks.json"]
    # many changes make a short name
    code, _, err = cli(capsys, eval_main, tmp_path, "--out", out, "--no-progress",
                       "data.options={dim=4, n_support=8, n_query=8, condition_number=10.0}",
                       "algorithm.inner_lr=0.07", f"data.root='{tmp_path}/a/long/folder/name'")
    assert code == 0, err
    digest = [p.name for p in out.glob("eval-test-1steps-4tasks-changed-*.json")]
    assert len(digest) == 1 and len(digest[0]) < 80
