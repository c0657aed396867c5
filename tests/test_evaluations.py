"""gbml-eval and load_run: re-evaluating a saved run without retraining, and its errors.

The helpers (tiny configs, checksums, the read-only simulation) are in run_fixtures.py; where
something could be lost, the tests compare files' checksums before and after.
"""
import json
import random

import numpy as np
import pytest
import torch

from gbml_ext.runner import CheckpointError, ConfigError, load_run, train
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


def test_gbml_eval_of_an_unfinished_run_says_which_checkpoint(tmp_path, capsys):
    """A run stopped after its checkpoint of iteration 3 of 6 (here: its later files removed)
    is evaluated as such, on the console and in the .md, with the settings it changed."""
    train(tiny6(tmp_path), progress=False)
    for name in ("checkpoint.pt", "results.json", "results.md"):
        (tmp_path / name).unlink()
    code, out, err = cli(capsys, eval_main, tmp_path, "--no-progress", "algorithm.inner_lr=0.05")
    assert code == 0, err
    md = (tmp_path / "eval-test-2steps-5tasks-algorithm.inner_lr=0.05.md").read_text()
    for text in (out, md):
        assert text.startswith("Evaluation of the checkpoint of iteration 3 of 6: meta-training "
                               "had not finished"), text
        assert "Changed from the run's config: `algorithm.inner_lr=0.05`." in text
    train(tiny6(tmp_path, "train.iterations=6"), resume=True, progress=False)
    code, out, err = cli(capsys, eval_main, tmp_path, "--no-progress")
    assert code == 0, err
    assert "had not finished" not in out and "Checkpoint of iteration 6 of 6." in out
    assert "Changed from the run's config: nothing" in out


def test_gbml_eval_blames_an_override_that_changes_the_model(tmp_path, capsys):
    train(tiny(tmp_path), progress=False)
    before = checksums(tmp_path)
    code, _, err = cli(capsys, eval_main, tmp_path, "model.name=deep_linear", "--no-progress")
    assert code == 2 and clean_error(err, 1), err
    assert "model.name=deep_linear changes the model" in err
    assert "trained with model.name='linear'" in err and "without that change" in err
    assert "of its config" not in err and "Missing key" not in err
    with pytest.raises(ConfigError, match="model.name=deep_linear changes the model"):
        load_run(tmp_path, ["model.name=deep_linear"])
    assert checksums(tmp_path) == before


def test_gbml_eval_refuses_keys_an_evaluation_never_reads(tmp_path, capsys):
    train(tiny(tmp_path), progress=False)
    before = checksums(tmp_path)
    for words, expected in ((["train.lr=0.5"], "train.lr=0.5 cannot change an evaluation"),
                            (["train.iterations=9", "train.meta_batch=4"],
                             "train.iterations=9, train.meta_batch=4 cannot change"),
                            (["device=cpu"], "--device cpu"),
                            ([f"output_dir='{tmp_path}/x'"], "--out DIR")):
        code, _, err = cli(capsys, eval_main, tmp_path, *words, "--no-progress")
        assert code == 2 and clean_error(err, 1) and expected in err, err
    assert checksums(tmp_path) == before
    # the divergence threshold is checked in an evaluation too, so it may change
    code, _, err = cli(capsys, eval_main, tmp_path, "train.explode_factor=50", "--no-progress")
    assert code == 0, err


def test_gbml_eval_runs_at_the_runs_precision(tmp_path, capsys):
    trained = train(tiny(tmp_path, "precision=bf16"), progress=False)
    code, _, err = cli(capsys, eval_main, tmp_path, "--no-progress")
    assert code == 0, err
    again = json.loads((tmp_path / "eval-test-1steps-4tasks.json").read_text())
    assert again["evaluation"]["loss"] == trained.results["evaluation"]["loss"]
