"""gbml-tune's input: the [tune] table (gbml-train ignores it), its checks against the schema and
Optuna, and the study store that refuses another search. Every bad input is one line, exit 2,
and leaves what was there unchanged."""
from __future__ import annotations

import json
import tomllib
from pathlib import Path

import optuna
import pytest

from gbml_ext.runner import load_config
from gbml_ext.runner.cli import main as train_main
from gbml_ext.tune.cli import main as tune_main
from gbml_ext.tune.report import best_config, config_toml
from gbml_ext.tune.space import TuneError, read_setup, setup_notes, toml_value
from gbml_ext.tune.study import open_study, searched_space
from run_fixtures import REPO, checksums, clean_error, cli

EXAMPLE = REPO / "experiments/configs/synthetic/linreg_tune.toml"


def test_gbml_train_ignores_the_tune_table_and_gbml_tune_reads_it(capsys):
    config = load_config(EXAMPLE)
    assert config.name == "Shallow-tune" and config.algorithm.inner_lr == 0.5  # the file's own
    code, out, _ = cli(capsys, train_main, EXAMPLE, "--print-config")
    assert code == 0 and "[tune" not in out and "distribution" not in out
    setup = read_setup(EXAMPLE, ["tune.trials=3", "train.iterations=7"])
    assert setup.trials == 3 and setup.config.train.iterations == 7
    assert setup.overrides == ["train.iterations=7"]  # tune.* words change the table only
    lr = setup.space["algorithm.inner_lr"]
    assert isinstance(lr, optuna.distributions.FloatDistribution)
    assert (lr.low, lr.high, lr.log) == (0.05, 1.0, True)
    assert read_setup(EXAMPLE, trials=5).trials == 5  # --trials wins over tune.trials


def test_a_space_written_as_nested_tables_reads_like_quoted_keys(tmp_path):
    nested = tmp_path / "nested.toml"
    nested.write_text(f'extends = "{EXAMPLE}"\n[tune.space.train.lr]\ndistribution = "float"\n'
                      f'low = 0.002\nhigh = 0.02\n')
    space = read_setup(nested).space
    assert list(space) == ["algorithm.inner_lr", "train.lr"]
    assert (space["train.lr"].low, space["train.lr"].high, space["train.lr"].log) == (
        0.002, 0.02, False)


@pytest.mark.parametrize("words,message", [
    (["tune.space.algorithm.inner_rate={distribution='float', low=0.1, high=1.0}"],
     "tune.space: algorithm.inner_rate is not a config key; did you mean algorithm.inner_lr?"),
    (["tune.space.algorithm.inner_lr={distribution='float', low=0.0, high=1.0}"],
     "tune.space: algorithm.inner_lr = 0.0 is outside what the config allows: config key "
     "'algorithm.inner_lr' must be > 0"),
    (["tune.space.model.linnet_depth={distribution='int', low=1, high=40}"],
     "model.linnet_depth = 40 is outside what the config allows"),
    (["tune.space.algorithm.name={distribution='categorical', choices=['maml', 'mammal']}"],
     "algorithm.name = 'mammal' is outside what the config allows"),
    (["tune.space.train.lr={distribution='normal', low=0.1, high=1.0}"],
     "tune.space: train.lr: distribution 'normal' is not one Optuna knows here; use float, "
     "int, categorical"),
    (["tune.space.train.lr={distribution='float', low=0.1, high=1.0, scale='log'}"],
     "scale is not a setting of a float distribution; it takes low, high, log, step"),
    (["tune.space.train.lr={distribution='float', low=-1.0, high=1.0, log=true}"],
     "tune.space: train.lr: "),
    (["tune.space.seed={distribution='int', low=0, high=9}"],
     "seed cannot be tuned (tuning the seed fits the noise"),
    (["tune.space.evaluation.split={distribution='categorical', choices=['test']}"],
     "evaluation.split cannot be tuned"),
    (["--trials", "0"], "--trials = 0: a study needs 1 or more trials"),
    (["tune.trials=0"], "tune.trials = 0: a study needs 1 or more trials"),
    (["tune.metric=accuracy_at_5"], "tune.metric = 'accuracy_at_5': choose one of loss, accuracy"),
    (["tune.pruner=early"], "tune.pruner = 'early': choose one of median"),
    (["tune.budget=3"], "unknown [tune] setting(s) budget"),
])
def test_bad_tune_input_is_one_line_and_exit_2(tmp_path, capsys, words, message):
    out = tmp_path / "tune"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    before = checksums(out)
    code, _, err = cli(capsys, tune_main, EXAMPLE, "--out", out, *words)
    assert code == 2 and clean_error(err, 1), err
    assert message in err, err
    assert checksums(out) == before and sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_a_config_without_a_tune_table_says_how_to_write_one(tmp_path, capsys):
    shallow = REPO / "experiments/configs/synthetic/linreg_shallow.toml"
    code, _, err = cli(capsys, tune_main, shallow, "--out", tmp_path / "t")
    assert code == 2 and clean_error(err, 1) and "has no [tune.space] table" in err


def test_optuna_options_it_does_not_take_are_one_line(tmp_path, capsys):
    for words, message in ((["tune.pruner_options={n_startup=2}"],
                            "tune.pruner_options for median (MedianPruner)"),
                           (["tune.sampler=random", "tune.sampler_options={n_startup_trials=2}"],
                            "tune.sampler_options for random (RandomSampler)")):
        code, _, err = cli(capsys, tune_main, EXAMPLE, "--out", tmp_path / "t", *words)
        assert code == 2 and clean_error(err, 1), err
        assert message in err and "n_startup" in err, err
        assert not (tmp_path / "t").exists()  # no store is made for a search that cannot run


def test_a_store_of_another_search_is_refused_and_left_as_it_is(tmp_path, capsys):
    out = tmp_path / "tune"
    study, store = open_study(read_setup(EXAMPLE), out)
    study.tell(study.ask(read_setup(EXAMPLE).space), 0.25)
    before = checksums(out)
    other_space = "tune.space.train.lr={distribution='float', low=0.001, high=0.5, log=true}"
    wider = "train.lr: 0.001..0.1, log there, 0.001..0.5, log here"
    for words, why in ((["--status", other_space], f"another space ({wider})"),
                       ([other_space], f"another space ({wider})"),
                       (["tune.space={'train.lr'={distribution='float', low=0.001, high=0.1}}"],
                        "another space (algorithm.inner_lr, train.lr there; train.lr here)"),
                       (["tune.metric=accuracy"], "another metric (loss there, accuracy here)"),
                       (["train.meta_batch=4"], "another config (train.meta_batch = 16 there, 4 "
                                                "here)")):
        code, _, err = cli(capsys, tune_main, EXAMPLE, "--out", out, *words)
        assert code == 2 and clean_error(err, 1), err
        assert f"{store} holds a study of {why}" in err and "another --out" in err, err
        assert checksums(out) == before
    # The same search reopens it, with its trial.
    assert len(open_study(read_setup(EXAMPLE), out)[0].trials) == 1


def test_a_store_says_which_range_it_searched_after_the_config_changed(tmp_path):
    out = tmp_path / "tune"
    with pytest.raises(TuneError, match="holds no study store"):
        searched_space(out)
    wider = "tune.space.train.lr={distribution='float', low=0.001, high=0.5, log=true}"
    open_study(read_setup(EXAMPLE, [wider]), out)
    before = checksums(out)
    space = searched_space(out)  # the config file still says 0.001..0.1
    assert space["train.lr"]["attributes"] == {"low": 0.001, "high": 0.5, "log": True,
                                               "step": None}
    assert set(space) == {"train.lr", "algorithm.inner_lr"}
    assert checksums(out) == before


def test_a_store_of_another_program_or_not_a_store_is_refused(tmp_path, capsys):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    optuna.create_study(storage=f"sqlite:///{foreign / 'study.db'}", study_name="theirs")
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "study.db").write_bytes(b"not a database at all" * 100)
    for out, message in ((foreign, "holds another study (theirs)"),
                         (garbage, "is not a study store gbml-tune can open")):
        before = checksums(out)
        code, _, err = cli(capsys, tune_main, EXAMPLE, "--out", out)
        assert code == 2 and clean_error(err, 1) and message in err, err
        assert checksums(out) == before


def test_best_config_is_a_plain_toml_file_that_loads_to_the_tuned_config(tmp_path):
    setup = read_setup(EXAMPLE, ["train.iterations=7", "data.options={dim=4, label='a \"b\"'}"])
    params = {"algorithm.inner_lr": 0.123456789, "train.lr": 1e-05}
    data = best_config(setup, params)
    path = tmp_path / "best.toml"
    path.write_text(config_toml(data, "tuned\nsecond line"))
    assert tomllib.loads(path.read_text()) == data
    config = load_config(path)
    assert config.algorithm.inner_lr == 0.123456789 and config.train.lr == 1e-05
    assert config.train.iterations == 7 and config.data.options["label"] == 'a "b"'
    assert config.evaluation.split == "test" and config.name == "Shallow-tune-tuned"
    assert config.output_dir == ""


def test_toml_value_round_trips_what_configs_hold():
    values = [0.1, 1e-05, 3, -2, True, "x'y\"z", [1, "a"], {"a-b": 1, "c d": [0.5]}, 1e300]
    for value in values:
        assert tomllib.loads(f"v = {toml_value(value)}")["v"] == value
    assert Path(EXAMPLE).is_file()


def test_a_pruner_without_a_validation_curve_is_pointed_out():
    assert setup_notes(read_setup(EXAMPLE)) == []
    assert setup_notes(read_setup(EXAMPLE, ["train.eval_every=0", "tune.pruner=none"])) == []
    note = setup_notes(read_setup(EXAMPLE, ["train.eval_every=0"]))
    assert note == ["train.eval_every = 0: the trials log no validation curve, so none is "
                    "pruned (set train.eval_every=N to prune)"]


def test_values_that_load_alone_but_not_together_fail_their_trial_without_running(
        tmp_path, capsys):
    # Each value loads with the config; reptile takes no transform, so together they do not.
    out = tmp_path / "tune"
    code, _, err = cli(capsys, tune_main, EXAMPLE, "--out", out, "--trials", "2",
                       "tune.space={algorithm={name={distribution='categorical', "
                       "choices=['reptile']}, transform={distribution='categorical', "
                       "choices=['kronecker']}}}")
    assert code == 1 and "every trial so far failed; trial 0: its params do not make a valid " \
        "config" in err and "Fix it and run the same command again" in err, err
    rows = json.loads((out / "trials.json").read_text())["trials"]
    assert [(r["state"], r["algorithm.name"]) for r in rows] == [("fail", "reptile")]
    assert "Reptile takes plain SGD" in rows[0]["error"] and not (out / "trials").exists()
