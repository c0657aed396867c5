"""The one grammar of gbml-train, gbml-compare and gbml-eval: overrides anywhere, --set, the
shared options, --allow-change, one-line usage errors.

The helpers (tiny configs, checksums, the read-only simulation) are in run_fixtures.py; where
something could be lost, the tests compare files' checksums before and after.
"""
import json
from pathlib import Path

import pytest

from gbml_ext.compare import main as compare_main
from gbml_ext.runner import train
from gbml_ext.runner.cli import eval_main, main
from run_fixtures import FAST, REPO, SHALLOW, TINY, TINY6, clean_error, cli, tiny


def test_overrides_go_anywhere_and_print_config_shows_ranges(tmp_path, capsys):
    config = REPO / "experiments/configs/synthetic/linreg_shallow.toml"
    code, out, _ = cli(capsys, main, config, "--print-config", "train.iterations=7")
    assert code == 0 and "iterations = 7  # int, >= 1" in out
    assert "inner_lr = 0.5  # float, > 0" in out
    args = [config, *TINY6, f"output_dir='{tmp_path}'", "--no-progress"]
    assert cli(capsys, main, *args)[0] == 0
    code, _, err = cli(capsys, main, config, "--resume", *TINY6, "train.iterations=8",
                       f"output_dir='{tmp_path}'", "--no-progress")
    assert code == 0, err
    assert json.loads((tmp_path / "results.json").read_text())["iterations_done"] == 8


def test_compare_takes_the_allow_change_it_recommends(tmp_path, capsys):
    out = tmp_path / "cmp"
    common = [SHALLOW, "--in-process", "--out", out, "--no-progress", *FAST]
    assert cli(capsys, compare_main, *common)[0] == 0
    code, _, err = cli(capsys, compare_main, *common, "--resume", "algorithm.inner_lr=0.3")
    assert code == 2 and "--allow-change algorithm.inner_lr" in err, err
    # the recommended flag, before the config as the trial wrote it
    code, _, err = cli(capsys, compare_main, "--resume", "--allow-change", "algorithm.inner_lr",
                       "algorithm.inner_lr=0.3", *common)
    assert code == 0, err
    results = json.loads(next(out.glob("*/seed0/results.json")).read_text())
    assert results["changes"] == [{"iteration": 3, "key": "algorithm.inner_lr", "from": 0.5,
                                   "to": 0.3}]


@pytest.mark.parametrize("command,runs", [(main, True), (compare_main, True),
                                          (eval_main, False)])
def test_the_three_commands_share_their_options(command, runs, capsys):
    with pytest.raises(SystemExit) as stop:
        command(["--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--set", "--print-config", "--no-progress", "--debug", "key=value"):
        assert flag in text, flag
    for flag in ("--resume", "--overwrite", "--allow-change"):
        assert (flag in text) == runs, flag


def test_usage_errors_are_one_line(capsys):
    for command, args in ((main, ["--resume", "--overwrite"]),
                          (compare_main, ["a.toml", "--allow-change", "data.ways"]),
                          (eval_main, ["--tasks", "x", "run"])):
        with pytest.raises(SystemExit) as stop:
            command(args)
        err = capsys.readouterr().err
        assert stop.value.code == 2 and clean_error(err, 1), err


def test_allow_change_keys_leave_the_config_positional(tmp_path, capsys):
    train(tiny(tmp_path, "train.lr=0.01"), progress=False)
    config = tmp_path.parent / f"{tmp_path.name}.toml"
    config.write_text('[train]\nlr = 0.02\n')
    code, _, err = cli(capsys, main, "--resume", "--allow-change", "train.lr", config, *TINY,
                       "train.lr=0.02", "train.iterations=4", f"output_dir='{tmp_path}'",
                       "--no-progress")
    assert code == 0, err
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["changes"][0]["key"] == "train.lr" and results["iterations_done"] == 4


def test_a_folder_given_as_the_config_is_called_a_folder(capsys):
    folder = SHALLOW.parent
    code, _, err = cli(capsys, main, folder, "--print-config")
    assert code == 2 and clean_error(err) and "is a folder" in err, err
    assert "does not exist" not in err and ".toml" in err


def test_gbml_eval_help_says_overrides_work(capsys):
    with pytest.raises(SystemExit):
        eval_main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "key=value" in text and "run's saved config" in text


@pytest.mark.parametrize("form", ["separate", "joined"])
def test_set_takes_key_value_as_one_or_two_words_on_every_command(form, tmp_path, capsys):
    def set_(item):
        return ["--set", item] if form == "separate" else [f"--set={item}"]

    code, out, err = cli(capsys, main, SHALLOW, *set_("train.lr=0.125"), "--print-config")
    assert code == 0 and "lr = 0.125" in out, err
    code, out, err = cli(capsys, compare_main, SHALLOW, *set_("train.lr=0.125"),
                         "--print-config")
    assert code == 0 and "lr = 0.125" in out, err
    train(tiny(tmp_path), progress=False)
    code, out, err = cli(capsys, eval_main, tmp_path, *set_("algorithm.inner_lr=0.25"),
                         "--print-config")
    assert code == 0 and "inner_lr = 0.25" in out, err
    code, _, err = cli(capsys, main, *set_("train.lr=0.02"), *set_("train.iterations=4"), *TINY,
                       f"output_dir='{tmp_path}/run'", "--no-progress")
    assert code == 0, err
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    # --set comes after the bare words, so it wins over TINY's train.iterations=3
    assert saved["train"]["lr"] == 0.02 and saved["train"]["iterations"] == 4


def test_paths_holding_an_equals_sign_are_paths(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = Path("runs/lr=0.5")
    folder.mkdir(parents=True)
    config = folder / "shallow.toml"
    config.write_text(f'extends = "{SHALLOW}"\n')
    code, _, err = cli(capsys, main, config, *FAST, f"output_dir='{folder / 'run'}'",
                       "--no-progress")
    assert code == 0, err
    # the run folder given to gbml-eval, and an --out value, are not overrides
    code, _, err = cli(capsys, eval_main, folder / "run", "--out", "eval=1", "--no-progress")
    assert code == 0, err
    assert list(Path("eval=1").glob("eval-test-*.json"))
    code, _, err = cli(capsys, eval_main, "runs/lr=0.5/run", "--tasks", "5", "--no-progress")
    assert code == 0 and list((folder / "run").glob("eval-test-*-5tasks.json")), err


def test_an_unknown_key_is_still_named_in_one_line(tmp_path, capsys):
    train(tiny(tmp_path), progress=False)
    for command, first in ((main, SHALLOW), (eval_main, tmp_path), (compare_main, SHALLOW)):
        code, _, err = cli(capsys, command, first, "trian.lr=0.1", "--print-config")
        assert code == 2 and clean_error(err, 1) and "trian" in err, err
    # a missing run folder whose name holds "=" is called missing, not an unknown key
    code, _, err = cli(capsys, eval_main, tmp_path / "lr=0.5" / "run", "--no-progress")
    assert code == 1 and clean_error(err, 1) and "lr=0.5" in err and "config key" not in err, err


def test_a_config_key_without_a_value_says_so(capsys):
    for command in (main, compare_main):
        with pytest.raises(SystemExit) as stop:
            command([str(SHALLOW), "train.lr", "--print-config"])
        err = capsys.readouterr().err
        assert stop.value.code == 2 and clean_error(err, 1), err
        assert "train.lr is a config key without a value; write train.lr=VALUE" in err


def test_a_config_file_that_is_not_toml_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("x = \n")
    for path, words in ((bad, "is not valid TOML"), (tmp_path / "nope.toml", "does not exist")):
        code, _, err = cli(capsys, main, path, "--print-config")
        assert code == 2 and clean_error(err, 1) and str(path) in err and words in err, err
