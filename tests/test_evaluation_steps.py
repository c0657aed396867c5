"""Evaluation steps: every evaluation keeps accuracy after 0..K inner steps on every path, and
`evaluation.choose_steps = "validation"` reports the test tasks after the steps chosen on
validation tasks, never on the test curve; results.md, the compare table and its figure show
the steps."""
import importlib
import json
from pathlib import Path
from typing import Any, Dict, List

import pytest
import torch

import gbml_ext
from gbml_ext.data import LogisticRegressionTasks
from gbml_ext.data.tasks import sample_batch
from gbml_ext.engine import adaptation_curve
from gbml_ext.runner import load_config, train
from gbml_ext.runner.compat import config_differences
from gbml_ext.runner.config import config_to_dict
from gbml_ext.runner.plots import draw_steps, plot_comparison, pyplot
from gbml_ext.runner.report import compare_table
from gbml_ext.runner.summaries import at_step, pooled_summary, step_summaries

evaluate_module = importlib.import_module("gbml_ext.runner.evaluate")
LOGREG = ["data.source=logistic-regression", "data.options={dim=4, n_support=8, n_query=16}",
          "train.iterations=3", "train.meta_batch=2", "train.lr=0.01", "train.log_every=1",
          "train.checkpoint_every=0", "evaluation.tasks=6", "algorithm.test_steps=2",
          "train.plot=false", "device=cpu"]


def logreg_tasks(seed: int = 3) -> LogisticRegressionTasks:
    return LogisticRegressionTasks(dim=4, n_support=8, n_query=16, seed=seed)


# ---- every path keeps accuracy after every step -------------------------------------------

@pytest.mark.parametrize("path", ["per-task", "batched", "compiled"])
def test_accuracy_after_every_step_on_every_path(path: str) -> None:
    """Entry k of accuracy_by_step is each task's query accuracy after k steps, as the per-task
    engine's adaptation curve scores it, task by task, on all three paths."""
    torch.manual_seed(0)
    maml = gbml_ext.MAML(torch.nn.Linear(4, 2), lr=2.0)
    result = evaluate_module.evaluate(maml, logreg_tasks(), 5, 3, path=path)
    tasks = sample_batch(logreg_tasks(), 5)  # the tasks evaluate draws, in order
    expected = [[outcome.accuracy.item() for outcome in adaptation_curve(maml, task, 3)]
                for task in tasks]
    by_step = result["per_task"]["accuracy_by_step"]
    assert len(by_step) == 4 and all(len(values) == 5 for values in by_step)
    torch.testing.assert_close(torch.tensor(by_step).t(), torch.tensor(expected))
    assert result["per_task"]["accuracy"] == by_step[3]
    means = [s["mean"] for s in result["accuracy_by_step"]]
    assert means == pytest.approx([sum(v) / 5 for v in by_step])
    assert len(set(means)) > 1  # the steps differ: a curve, not one number repeated


def test_the_paths_agree_after_every_step() -> None:
    torch.manual_seed(1)
    maml = gbml_ext.MAML(torch.nn.Linear(4, 2), lr=2.0)
    curves = {path: evaluate_module.evaluate(maml, logreg_tasks(), 7, 3, path=path)
              for path in ("per-task", "batched")}
    torch.testing.assert_close(torch.tensor(curves["batched"]["per_task"]["accuracy_by_step"]),
                               torch.tensor(curves["per-task"]["per_task"]["accuracy_by_step"]))


def test_regression_has_no_accuracy_curve() -> None:
    maml = gbml_ext.MAML(torch.nn.Linear(4, 1), lr=0.1)
    result = evaluate_module.evaluate(maml, gbml_ext.data.LinearRegressionTasks(dim=4), 3, 2)
    assert result["accuracy_by_step"] is None and result["per_task"]["accuracy_by_step"] is None
    assert len(result["loss_by_step"]) == 3


# ---- the choice reads validation only -----------------------------------------------------

def fake_evaluation(accuracy_by_step: List[float], tasks: int = 4) -> Dict[str, Any]:
    """An evaluation whose tasks all score `accuracy_by_step[k]` after k steps (loss: 1 - it)."""
    accuracies = [[a] * tasks for a in accuracy_by_step]
    losses = [[1.0 - a] * tasks for a in accuracy_by_step]
    return step_summaries(losses, accuracies, len(accuracy_by_step) - 1)


def choosing(*extra: str):
    return load_config(None, LOGREG + ["evaluation.choose_steps=validation",
                                       "evaluation.max_steps=5", *extra])


def test_steps_are_chosen_on_validation_and_the_test_curve_is_never_read(monkeypatch) -> None:
    """Validation prefers 2 steps, test prefers 5: the run reports test after 2 steps; and
    whatever the test curve, the choice stays 2."""
    validation = [0.2, 0.5, 0.9, 0.8, 0.7, 0.6]
    calls: List[str] = []

    curves = {"validation": validation}

    def fake(algorithm, source, num_tasks, steps, *args, **kwargs):
        calls.append(source)
        assert steps == 5
        return fake_evaluation(curves[source])

    monkeypatch.setattr(evaluate_module, "evaluate", fake)
    for test in ([0.2, 0.3, 0.4, 0.5, 0.6, 0.95], [0.99, 0.1, 0.1, 0.1, 0.1, 0.1]):
        curves["test"] = test
        result = evaluate_module.final_evaluation(None, {"validation": "validation",
                                                         "test": "test"}, choosing())
        assert result["steps_chosen"] == 2 and result["steps"] == 2
        assert result["accuracy"]["mean"] == test[2]
        assert result["loss"]["mean"] == pytest.approx(1 - test[2])
        assert [s["mean"] for s in result["accuracy_by_step"]] == test  # the whole test curve
        chosen_on = result["chosen_on"]
        assert [s["mean"] for s in chosen_on["accuracy_by_step"]] == validation
        assert (chosen_on["split"], chosen_on["metric"], chosen_on["candidates"]) == (
            "validation", "accuracy", [1, 5])
    assert calls == ["validation", "test"] * 2  # validation first, then the test tasks


def test_ties_go_to_fewer_steps_and_regression_to_the_lowest_loss(monkeypatch) -> None:
    curves = {"validation": [0.1, 0.7, 0.9, 0.9, 0.9, 0.2], "test": [0.5] * 6}
    monkeypatch.setattr(evaluate_module, "evaluate",
                        lambda a, source, n, steps, *x, **k: fake_evaluation(curves[source]))
    sources = {"validation": "validation", "test": "test"}
    assert evaluate_module.final_evaluation(None, sources, choosing())["steps_chosen"] == 2

    def regression(a, source, n, steps, *x, **k):
        losses = {"validation": [5.0, 3.0, 1.0, 0.5, 2.0, float("nan")], "test": [1.0] * 6}
        return step_summaries([[v] * 3 for v in losses[source]], None, steps)

    monkeypatch.setattr(evaluate_module, "evaluate", regression)
    result = evaluate_module.final_evaluation(None, sources, choosing())
    assert result["steps_chosen"] == 3 and result["chosen_on"]["metric"] == "loss"


def test_step_zero_is_never_chosen(monkeypatch) -> None:
    """The unadapted learner is not a candidate: the choice is among 1..K steps."""
    curves = {"validation": [0.9, 0.3, 0.2, 0.1, 0.1, 0.1], "test": [0.5] * 6}
    monkeypatch.setattr(evaluate_module, "evaluate",
                        lambda a, source, n, steps, *x, **k: fake_evaluation(curves[source]))
    result = evaluate_module.final_evaluation(None, {"validation": "validation", "test": "test"},
                                              choosing())
    assert result["steps_chosen"] == 1


def test_on_the_validation_split_the_final_evaluation_is_the_choices(monkeypatch) -> None:
    calls: List[str] = []

    def fake(algorithm, source, num_tasks, steps, *args, **kwargs):
        calls.append(source)
        return fake_evaluation([0.1, 0.4, 0.6, 0.5, 0.3, 0.2], num_tasks)

    monkeypatch.setattr(evaluate_module, "evaluate", fake)
    result = evaluate_module.final_evaluation(
        None, {"validation": "validation", "test": "test"},
        choosing("evaluation.split=validation", "evaluation.tasks=9"))
    assert calls == ["validation"] and result["steps_chosen"] == 2
    assert result["chosen_on"]["tasks"] == 9 and result["accuracy"]["mean"] == 0.6


def test_fixed_steps_report_test_steps_of_a_longer_curve(monkeypatch) -> None:
    monkeypatch.setattr(evaluate_module, "evaluate",
                        lambda a, source, n, steps, *x, **k: fake_evaluation([0.1 * i for i in
                                                                              range(steps + 1)]))
    config = load_config(None, LOGREG + ["evaluation.max_steps=5"])
    result = evaluate_module.final_evaluation(None, {"test": "test"}, config)
    assert (result["steps"], result["max_steps"], result["steps_chosen"]) == (2, 5, None)
    assert result["accuracy"]["mean"] == pytest.approx(0.2)


# ---- runs record it, and runs stored before keep their meaning ------------------------------

def test_a_run_chooses_its_steps_and_records_every_curve(tmp_path: Path) -> None:
    config = choosing(f"output_dir='{tmp_path}'", "train.eval_every=3", "train.eval_tasks=4",
                      "evaluation.choice_tasks=8")
    results = train(config, progress=False).results
    evaluation = results["evaluation"]
    validation = [s["mean"] for s in evaluation["chosen_on"]["accuracy_by_step"]]
    best = max(validation[1:])
    assert evaluation["steps_chosen"] == validation.index(best, 1)  # first best, from step 1
    assert evaluation["chosen_on"]["tasks"] == 8 and len(validation) == 6
    test = evaluation["per_task"]["accuracy_by_step"]
    assert len(test) == 6 and evaluation["per_task"]["accuracy"] == test[evaluation["steps"]]
    assert pooled_summary([results], "accuracy")["mean"] == pytest.approx(
        sum(test[evaluation["steps"]]) / 6)
    record = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()
              if '"validation"' in line][0]
    assert len(record["accuracy_by_step"]) == 6 and len(record["loss_by_step"]) == 6
    assert record["accuracy"] == record["accuracy_by_step"][2]  # algorithm.test_steps
    markdown = (tmp_path / "results.md").read_text()
    assert f"steps {evaluation['steps']}, chosen among 1..5 on 8 validation tasks" in markdown
    assert "chosen on validation" in markdown.splitlines()[0]
    assert "Test accuracy % after 0..5 inner steps" in markdown


def test_a_fixed_run_records_what_it_did_before(tmp_path: Path) -> None:
    results = train(load_config(None, LOGREG + [f"output_dir='{tmp_path}'"]),
                    progress=False).results
    evaluation = results["evaluation"]
    assert (evaluation["steps"], evaluation["max_steps"], evaluation["steps_chosen"]) == (2, 2,
                                                                                          None)
    assert len(evaluation["loss_by_step"]) == 3
    assert "inner steps" not in (tmp_path / "results.md").read_text()


def test_choosing_later_reevaluates_a_stored_run_without_retraining(tmp_path: Path) -> None:
    """The keys are evaluation settings: a run stored without them is the same run, and
    resuming it with them re-evaluates its trained weights."""
    first = train(load_config(None, LOGREG + [f"output_dir='{tmp_path}'"]), progress=False)
    stored = json.loads((tmp_path / "config.json").read_text())
    for key in ("max_steps", "choose_steps", "choice_tasks"):
        stored["evaluation"].pop(key)
    again_config = choosing(f"output_dir='{tmp_path}'")
    assert config_differences(stored, config_to_dict(again_config)) == []
    again = train(again_config, resume=True, progress=False)
    assert again.results["iterations_done"] == 3 and again.results["changes"] == []
    for a, b in zip(first.algorithm.state_dict().values(),
                    again.algorithm.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert again.results["evaluation"]["steps_chosen"] in range(1, 6)
    assert list(tmp_path.glob("results-*.json"))  # the fixed evaluation is kept beside it


def test_reading_an_old_evaluation_at_another_step_says_how() -> None:
    old = {"steps": 1, "loss": {"mean": 1.0}, "loss_by_step": [{}, {}],
           "per_task": {"loss_by_step": [[1.0], [0.5]], "accuracy": [0.5]}}
    assert at_step(old, 1) is old
    with pytest.raises(ValueError, match="gbml-eval"):
        at_step(old, 0)
    assert pooled_summary([{"evaluation": old}], "accuracy", 0) is None
    assert pooled_summary([{"evaluation": old}], "accuracy", -1)["mean"] == 0.5


# ---- tables and the figure ------------------------------------------------------------------

def result(seed: int, chosen: int, curve: List[float]) -> Dict[str, Any]:
    evaluation = {**at_step(fake_evaluation(curve), chosen), "steps_chosen": chosen,
                  "chosen_on": None}
    return {"name": "run", "seed": seed, "evaluation": evaluation, "split": "test",
            "train_seconds": 1.0, "seconds_per_iteration": 0.1, "peak_memory_mb": 1.0,
            "peak_memory_kind": "peak_rss_increase", "final_train_loss": 0.5,
            "environment": {"hardware": "cpu", "torch": "2", "date": "today"}}


def test_the_compare_table_reports_the_chosen_steps() -> None:
    runs = {"run": [result(0, 2, [0.1, 0.5, 0.8, 0.6]), result(1, 3, [0.1, 0.5, 0.6, 0.7])]}
    table = compare_table(runs)
    row = table.splitlines()[2].strip("|").split(" | ")
    assert row[-1].strip() == "2*, 3*" and "chosen on validation" in table
    assert row[5].startswith("75.00 ± ")  # 0.8 after 2 steps (seed 0), 0.7 after 3 (seed 1)


def test_loss_is_read_after_the_reported_steps() -> None:
    """A run reporting 1 of 3 steps pools its loss after 1 step, not after the last."""
    run = result(0, 1, [0.1, 0.5, 0.8, 0.6])
    assert pooled_summary([run], "loss")["mean"] == pytest.approx(0.5)
    assert pooled_summary([run], "loss", -1)["mean"] == pytest.approx(0.4)


def test_the_figure_draws_accuracy_against_steps(tmp_path: Path) -> None:
    runs = {"a": [result(0, 2, [0.1, 0.5, 0.8, 0.6])], "b": [result(0, 1, [0.2, 0.4, 0.3, 0.2])]}
    fig, ax = pyplot().subplots()
    assert draw_steps(ax, runs)
    lines = [line for line in ax.get_lines() if line.get_label() in ("a", "b")]
    assert [list(line.get_ydata()) for line in lines] == [
        pytest.approx([10.0, 50.0, 80.0, 60.0]), pytest.approx([20.0, 40.0, 30.0, 20.0])]
    rings = [list(line.get_xdata()) for line in ax.get_lines() if line.get_marker() == "o"]
    assert rings == [[2], [1]]
    png = plot_comparison(runs, {}, tmp_path / "compare.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_run_keeps_the_colour_it_is_given_with_its_ring() -> None:
    runs = {"a": [result(0, 2, [0.1, 0.5, 0.8, 0.6])], "b": [result(0, 1, [0.2, 0.4, 0.3, 0.2])]}
    fig, ax = pyplot().subplots()
    assert draw_steps(ax, runs, colors={"b": "#123456"})
    colours = {line.get_label(): line.get_color() for line in ax.get_lines()
               if line.get_label() in ("a", "b")}
    assert colours["b"] == "#123456" and colours["a"] != "#123456"
    ring = [line for line in ax.get_lines() if line.get_marker() == "o"
            and list(line.get_xdata()) == [1]]
    assert ring[0].get_color() == "#123456"
