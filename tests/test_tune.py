"""gbml-tune through the local launcher: trials as run folders evaluated on validation tasks
only, the report and a best.toml that gbml-train runs unchanged (on the test split), pruning
that stops a running trial through its stop file, and the pruner's plumbing on a study."""
from __future__ import annotations

import csv
import json
import math

import optuna
import pytest
import torch

from gbml_ext.launch.status import RunStatus
from gbml_ext.runner.cli import main as train_main
from gbml_ext.tune.cli import main as tune_main
from gbml_ext.tune.space import read_setup
from gbml_ext.tune.trials import PRUNED_AT, TrialWatch, outcome, trial_spec
from run_fixtures import REPO, cli

EXAMPLE = REPO / "experiments/configs/synthetic/linreg_tune.toml"
# The example made quick: tiny tasks, a validation record every 10 meta-iterations.
TINY = ["data.options={dim=4, n_support=8, n_query=8}", "train.iterations=30",
        "train.meta_batch=2", "train.eval_every=10", "train.eval_tasks=4", "train.log_every=10",
        "evaluation.tasks=8", "train.plot=false", "algorithm.test_steps=1"]


def _records(path, split):
    return [json.loads(line) for line in path.read_text().splitlines()
            if json.loads(line)["split"] == split]


@pytest.mark.slow
def test_a_local_study_tunes_on_validation_and_writes_a_best_config_gbml_train_runs(
        tmp_path, capsys, monkeypatch):
    out = tmp_path / "tune"
    args = [EXAMPLE, "--trials", "3", "--jobs", "2", "--out", out, *TINY, "tune.pruner=none"]
    code, stdout, err = cli(capsys, tune_main, *args)
    assert code == 0, err
    table = json.loads((out / "trials.json").read_text())
    rows = table["trials"]
    assert [r["state"] for r in rows] == ["complete"] * 3 and table["split"] == "validation"
    for row in rows:
        folder = out / "trials" / f"trial-{row['trial']:04d}"
        results = json.loads((folder / "results.json").read_text())
        # Each trial is a run of its sampled values, evaluated on validation tasks only.
        assert results["split"] == "validation"
        assert results["config"]["evaluation"]["split"] == "validation"
        assert results["config"]["algorithm"]["inner_lr"] == row["algorithm.inner_lr"]
        assert results["config"]["train"]["lr"] == row["train.lr"]
        assert row["loss"] == results["evaluation"]["loss"]["mean"]
        assert 0.05 <= row["algorithm.inner_lr"] <= 1.0 and 0.001 <= row["train.lr"] <= 0.1
    assert len({r["train.lr"] for r in rows}) == 3  # three different draws
    best = min(rows, key=lambda r: r["loss"])
    assert table["best_trial"] == best["trial"] and f"| **{best['trial']}** |" in stdout
    with open(out / "trials.csv") as stream:
        assert [int(r["trial"]) for r in csv.DictReader(stream)] == [0, 1, 2]
    assert (out / "trials.png").stat().st_size > 1000 and (out / "study.db").is_file()
    assert "gbml-train " + str(out / "best.toml") in err

    # best.toml: the best trial's values, the config's own (test) evaluation, a new name.
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(capsys, train_main, out / "best.toml", "--no-progress")
    assert code == 0, err
    results = json.loads((tmp_path / "runs/Shallow-tune-tuned/seed0/results.json").read_text())
    assert results["split"] == "test" and results["evaluation"]["loss"]["n"] == 8
    assert results["config"]["algorithm"]["inner_lr"] == best["algorithm.inner_lr"]
    assert results["config"]["train"]["lr"] == best["train.lr"]
    assert results["config"]["data"]["options"] == {"dim": 4, "n_support": 8, "n_query": 8}

    # The same command again runs nothing; a larger --trials adds only the new trials.
    code, _, err = cli(capsys, tune_main, *args)
    assert code == 0 and "started" not in err, err
    code, _, err = cli(capsys, tune_main, *[a if a != "3" else "4" for a in args])
    assert code == 0 and err.count("started in") == 1 and "trial 3: validation loss" in err, err
    assert len(json.loads((out / "trials.json").read_text())["trials"]) == 4


@pytest.mark.slow
def test_a_pruned_trial_is_stopped_mid_run_with_a_checkpoint(tmp_path, capsys):
    out = tmp_path / "tune"
    # A threshold no loss is under: every trial is pruned at its first validation record.
    code, _, err = cli(capsys, tune_main, EXAMPLE, "--trials", "1", "--out", out, *TINY,
                       "train.iterations=20000", "tune.pruner=threshold",
                       "tune.pruner_options={upper=0.0}")
    assert code == 0, err
    row = json.loads((out / "trials.json").read_text())["trials"][0]
    assert row["state"] == "pruned" and row["pruned_at"] == 10
    folder = out / "trials" / "trial-0000"
    assert row["loss"] == _records(folder / "metrics.jsonl", "validation")[0]["loss"]
    stopped = torch.load(folder / "checkpoint.pt", weights_only=False)["iteration"]
    assert 10 <= stopped < 20000 and not (folder / "results.json").exists()
    assert not (folder / "stop").exists()  # the run took the request
    assert "trial 0: pruned at meta-iteration 10" in err
    assert not (out / "best.toml").exists()  # no trial completed: no best config


def _study_with_a_finished_trial():
    study = optuna.create_study(pruner=optuna.pruners.MedianPruner(n_startup_trials=1))
    first = study.ask({"train.lr": optuna.distributions.FloatDistribution(0.001, 0.1)})
    first.report(1.0, 10)
    first.report(0.5, 20)
    study.tell(first, 0.5)
    return study


def test_the_watch_reports_validation_records_and_prunes_through_the_stop_file(tmp_path):
    study = _study_with_a_finished_trial()
    trial = study.ask({"train.lr": optuna.distributions.FloatDistribution(0.001, 0.1)})
    lines = [{"iteration": 10, "split": "train", "loss": 9.0},
             {"iteration": 10, "split": "validation", "loss": 0.9},   # better than 1.0: kept
             {"iteration": 15, "split": "validation", "loss": math.nan},  # skipped
             {"iteration": 20, "split": "validation", "loss": 2.0},   # worse than 0.5: pruned
             {"iteration": 30, "split": "validation", "loss": 0.1}]   # after the decision
    (tmp_path / "metrics.jsonl").write_text(
        "\n".join(json.dumps(r) for r in lines[:2]) + "\n")
    watch = TrialWatch("loss", {trial.number: (trial, tmp_path, set())})
    assert watch.poll() == [] and not (tmp_path / "stop").exists()
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    assert watch.poll() == [trial.number] and watch.pruned == {trial.number: 20}
    frozen = study.trials[trial.number]
    assert frozen.intermediate_values == {10: 0.9, 20: 2.0}
    assert frozen.user_attrs[PRUNED_AT] == 20
    assert "validation loss 2 at meta-iteration 20" in (tmp_path / "stop").read_text()
    assert watch.poll() == []  # decided once


def test_a_trial_outcome_never_takes_a_test_split_number(tmp_path):
    setup = read_setup(EXAMPLE, TINY)
    spec = trial_spec(setup, tmp_path, 0, {"train.lr": 0.01})
    assert spec.config.evaluation.split == "validation" and spec.label == "trial 0"
    assert spec.run_dir == tmp_path / "trials" / "trial-0000"
    spec.run_dir.mkdir(parents=True)
    results = {"split": "test", "evaluation": {"loss": {"mean": 0.1}}}
    (spec.run_dir / "results.json").write_text(json.dumps(results))
    ended = outcome(spec, RunStatus("done"), "loss", None)
    assert ended.state == "fail" and "not the validation split" in ended.reason
    results["split"] = "validation"
    (spec.run_dir / "results.json").write_text(json.dumps(results))
    assert outcome(spec, RunStatus("done"), "loss", None).value == 0.1
    assert outcome(spec, RunStatus("done"), "loss", 20).state == "pruned"
    assert outcome(spec, RunStatus("failed", "exit 1: diverged"), "loss", None).reason == (
        "exit 1: diverged")


@pytest.mark.parametrize("distribution,labels", [
    (optuna.distributions.FloatDistribution(0.05, 1.0, log=True), ["0.05", "0.1", "0.2", "0.5",
                                                                   "1"]),
    (optuna.distributions.IntDistribution(2, 4), ["2", "3", "4"]),
], ids=["log-float", "int"])
def test_the_figure_spans_each_keys_whole_range_in_plain_numbers(distribution, labels):
    from gbml_ext.runner.plots import pyplot
    from gbml_ext.tune.report import _x_axis

    plt = pyplot()
    fig, ax = plt.subplots()
    ax.scatter([0.2 if distribution.log else 3], [1.0])  # a trial in the middle of the range
    _x_axis(ax, distribution, [])
    fig.canvas.draw()
    low, high = ax.get_xlim()
    assert low < distribution.low and high > distribution.high
    shown = [t.get_text().replace("\u2212", "-") for t in ax.get_xticklabels()
             if low <= t.get_position()[0] <= high]
    assert shown == labels
    assert not any(t.get_text() for t in ax.xaxis.get_minorticklabels())
    plt.close(fig)


def test_a_best_value_at_an_edge_of_its_range_is_noted_in_the_table():
    from types import SimpleNamespace

    from gbml_ext.tune.report import edge_notes, trials_markdown

    space = {"algorithm.inner_lr": optuna.distributions.FloatDistribution(0.05, 1.0, log=True),
             "model.linnet_depth": optuna.distributions.IntDistribution(2, 10),
             "algorithm.transform_psd": optuna.distributions.CategoricalDistribution([True])}
    setup = SimpleNamespace(space=space, metric="accuracy", direction="maximize")
    # 0.06 is 6 % of the way up a log range of 0.05..1, 0.8 is 93 %; depth 4 is inside 2..10.
    inside = {"algorithm.inner_lr": 0.3, "model.linnet_depth": 4, "algorithm.transform_psd": True}
    assert edge_notes(setup, inside) == []
    low = edge_notes(setup, {**inside, "algorithm.inner_lr": 0.06})
    assert len(low) == 1 and "inner_lr, 0.06, lies at the bottom of its range 0.05..1" in low[0]
    high = edge_notes(setup, {**inside, "algorithm.inner_lr": 0.8, "model.linnet_depth": 10})
    assert [note.split(",")[0] for note in high] == ["the best algorithm.inner_lr",
                                                     "the best model.linnet_depth"]
    assert "at the top of its range 2..10" in high[1]
    rows = [{"trial": 0, "state": "complete", "accuracy": 0.7, "pruned_at": None,
             **inside, "algorithm.inner_lr": 0.9, "run_dir": "t/0", "error": ""}]
    table = trials_markdown(rows, setup, 0)
    assert table.rstrip().splitlines()[-1].startswith("Note: the best algorithm.inner_lr, 0.9,")
    assert "Note" not in trials_markdown(rows, setup, None)
