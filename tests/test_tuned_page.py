"""docs/omniglot-tuned.md, rebuilt from results only: the tuned table beside the untuned one,
the steps each row reports, the headline rows and their learning curves, and the page that
the committed results give."""
import json
from pathlib import Path
from typing import Dict, List

import pytest

from experiments import algorithms_grid, tuned, tuned_headline, tuned_report
from gbml_ext.runner.plots import pyplot
from helpers import ci_cell as cell
from helpers import table_row as row

RATE = "algorithm.inner_lr"


def fake_run(folder: Path, seed: int, curves: List[List[float]], steps: int,
             chosen: bool = True, iterations: int = 300) -> None:
    """A results.json whose task i scores curves[i][k] after k steps, reporting `steps`."""
    by_step = [list(values) for values in zip(*curves, strict=True)]
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps({
        "seed": seed, "iterations_done": iterations, "split": "test",
        "config": {"train": {"iterations": iterations, "meta_batch": 8}}, "evaluation": {
            "steps": steps, "steps_chosen": steps if chosen else None,
            "per_task": {"loss_by_step": [[1.0] * len(curves)] * len(by_step),
                         "accuracy_by_step": by_step if chosen else None,
                         "accuracy": by_step[steps]}}}))


@pytest.fixture
def tree(tmp_path: Path) -> Dict[str, Path]:
    results, untuned = tmp_path / "tuned", tmp_path / "algorithms"
    study = results / "5w1s" / "studies" / "imaml"
    study.mkdir(parents=True)
    (study / "trials.json").write_text(json.dumps({"trials": [
        {"trial": 0, "state": "complete", "accuracy": 0.61, RATE: 0.3,
         "algorithm.imaml_lam": 2.5},
        {"trial": 1, "state": "pruned", "accuracy": 0.2, RATE: 0.9, "algorithm.imaml_lam": 0.2},
        {"trial": 2, "state": "complete", "accuracy": 0.7, RATE: 0.123,
         "algorithm.imaml_lam": 1.5}]}))
    (study / "best.toml").write_text('[algorithm]\ninner_lr = 0.123\nimaml_lam = 1.5\n')
    final = results / "5w1s" / "omniglot-5w1s-tuned-imaml"
    fake_run(final / "seed0", 0, [[0.2, 0.6, 0.8, 0.7], [0.2, 0.4, 0.6, 0.5]], 2)
    fake_run(final / "seed1", 1, [[0.2, 0.5, 0.6, 0.9], [0.2, 0.5, 0.7, 0.9]], 3)
    fake_run(untuned / "5w1s" / algorithms_grid.run_name("5w1s", "imaml") / "seed0", 0,
             [[0.1, 0.3, 0.5, 0.4], [0.1, 0.3, 0.3, 0.4]], 3, chosen=False)
    fake_run(results / "headline" / "omniglot-5w1s-headline-maml" / "seed0", 0,
             [[0.2, 0.9, 1.0], [0.2, 0.8, 0.9]], 1, iterations=3000)
    validation_log(results / "headline" / "omniglot-5w1s-headline-maml" / "seed0",
                   {1500: 0.7, 3000: 0.9})
    # an earlier run that a re-run moved aside: never read
    fake_run(final / "seed1.old-20261207-101500", 1, [[0.0, 0.0, 0.0, 0.0]], 1)
    validation_log(results / "headline" / "omniglot-5w1s-headline-maml" / "seed0.old-1",
                   {1500: 0.1, 3000: 0.1})
    return {"results": results, "untuned": untuned, "root": tmp_path}


def test_a_study_still_running_is_named_in_the_table(tree: Dict[str, Path]) -> None:
    text = tuned_report.setting_section(tree["results"], "5w1s", [0, 1], tree["untuned"])
    assert row(text, "iMAML")[9] == "5 trials"  # 3 of 8 ended: its settings are not final yet


def test_the_table_puts_the_tuned_row_next_to_the_untuned_one(tree: Dict[str, Path],
                                                               monkeypatch) -> None:
    monkeypatch.setattr(tuned_report, "TRIALS", 3)  # the fixture's iMAML study has ended
    text = tuned_report.setting_section(tree["results"], "5w1s", [0, 1], tree["untuned"])
    imaml = row(text, "iMAML")
    assert imaml[1] == "inner_lr 0.123, imaml_lam 1.5"
    assert imaml[2:4] == ["2 / 1 / 0", "70.0"]
    assert imaml[4] == cell([0.8, 0.6, 0.9, 0.9])  # seed 0 after 2 steps, seed 1 after 3
    assert imaml[5] == "2, 3"
    assert imaml[6:8] == [cell([0.4, 0.4]), "3"]
    assert imaml[8] == f"{100 * (0.8 - 0.4):+.1f}" and imaml[9] == "–"
    assert row(text, "MAML")[9] == "study; seeds 0, 1"
    steps = row(text, "iMAML", 1)  # accuracy after 0..3 steps, pooled over both seeds
    assert steps[1:] == ["20.0", "50.0", "**67.5**", "**75.0**"]
    trials = [row(text, "iMAML", 2 + i) for i in range(3)]
    assert [t[1:4] for t in trials] == [["0", "complete", "61.0"], ["1", "pruned", "20.0"],
                                        ["2", "complete", "70.0"]]


def test_the_headline_table_compares_the_longer_budget(tree: Dict[str, Path]) -> None:
    anil = tree["results"] / "headline" / "omniglot-5w1s-headline-anil"
    fake_run(anil / "seed1", 1, [[0.2, 0.6], [0.2, 0.6]], 1, iterations=3000)
    fake_run(anil / "seed0", 0, [[0.2, 0.7], [0.2, 0.7]], 1, iterations=3000)
    text = tuned_report.headline_section(tree["results"], [0, 1])
    maml = row(text, "MAML")
    assert maml[1:5] == ["3000/3000", cell([0.9, 0.8]), "85.0", "1"]
    assert maml[5:8] == ["–", "–", "–"] and maml[8] == "headline 1"
    assert row(text, "ANIL")[3] == "70.0, 60.0"  # seed 0, then seed 1
    assert row(text, "MAML-KFO")[2:5] == ["–", "–", "–"]
    # 60,000 meta-iterations of 32 tasks against 3,000 of 8
    assert "98.7 ± 0.4 %" in text and "80x the 24,000 tasks of a headline run" in text
    # validation during training, per 500 meta-iterations, from seed0 only (not seed0.old-1)
    curve = row(text, "MAML", 1)
    assert curve[1:] == ["0", "–", "–", "70.0", "–", "–", "90.0"]


def test_the_page_and_its_figure(tree: Dict[str, Path]) -> None:
    doc, png = tree["root"] / "doc" / "page.md", tree["root"] / "doc" / "img" / "steps.png"
    doc.parent.mkdir()
    doc.write_text(f"# Page\n\n{tuned_report.BEGIN}\nstale\n{tuned_report.END}\n\nreading\n")
    assert tuned_report.write_report(tree["results"], doc, png, (0, 1), tree["untuned"])
    text = doc.read_text()
    assert text.startswith("# Page\n") and text.endswith("\n\nreading\n") and "stale" not in text
    assert "![test accuracy against inner steps](img/steps.png)" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    curves = f"img/{tuned_report.HEADLINE_FIGURE}"
    assert f"validation accuracy during training]({curves})" in text
    assert (doc.parent / curves).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc.write_text("# hand-written\n")
    with pytest.raises(SystemExit, match="lacks the lines"):
        tuned_report.write_report(tree["results"], doc, png, (0, 1), tree["untuned"])
    assert doc.read_text() == "# hand-written\n"


def test_a_row_searched_again_past_its_first_ranges_edge_says_so(tree: Dict[str, Path]) -> None:
    first = tree["results"] / "5w1s" / "first-range" / "anil"
    first.mkdir(parents=True)
    (first / "trials.json").write_text(json.dumps({"trials": [
        {"trial": 0, "state": "complete", "accuracy": 0.55, RATE: 0.26},
        {"trial": 1, "state": "complete", "accuracy": 0.72, RATE: 0.9}]}))
    with pytest.raises(SystemExit, match="space.json does not give the range"):
        tuned_report.setting_section(tree["results"], "5w1s", [0, 1], tree["untuned"])
    (first / "space.json").write_text(json.dumps({RATE: {"name": "FloatDistribution",
                                                        "attributes": {"low": 0.05, "high": 1.0,
                                                                       "log": True}}}))
    again = tree["results"] / "5w1s" / "studies" / "anil"
    again.mkdir(parents=True)
    (again / "trials.json").write_text(json.dumps({"trials": [
        {"trial": 0, "state": "complete", "accuracy": 0.75, RATE: 3.5}]}))
    (again / "best.toml").write_text("[algorithm]\ninner_lr = 3.5\n")
    text = tuned_report.setting_section(tree["results"], "5w1s", [0, 1], tree["untuned"])
    assert row(text, "ANIL")[1] == "inner_lr 3.5 (at the high edge of 0.25..4)"
    assert ("ANIL, first over 0.05..1 (best: 72.0 % at α 0.9, the high edge), again over "
            "0.25..4." in text)
    assert row(text, "iMAML")[1] == "inner_lr 0.123, imaml_lam 1.5"  # inside its range
    firsts = [line for line in text.splitlines() if line.startswith("| ANIL, 0.05..1 |")]
    assert [line.split(" | ")[1:4] for line in firsts] == [["0", "complete", "55.0"],
                                                           ["1", "complete", "72.0"]]
    doc = tree["root"] / "page.md"
    doc.write_text(f"{tuned_report.BEGIN}\n{tuned_report.END}\n")
    tuned_report.write_report(tree["results"], doc, tree["root"] / "img" / "steps.png", (0, 1),
                              tree["untuned"])
    assert "(img/omniglot-tuned-trials-5w1s.png)" in doc.read_text()
    assert (tree["root"] / "img" / "omniglot-tuned-trials-5w1s.png").stat().st_size > 1000


def test_the_committed_page_rebuilds_unchanged_from_the_committed_results() -> None:
    """docs/omniglot-tuned.md's tables are what `report` writes from experiments/results."""
    page = tuned_report.DOC.read_text()
    tables = tuned_report.report_text(tuned.RESULTS, (0, 1))
    committed = page.split(tuned_report.BEGIN, 1)[1].split(tuned_report.END, 1)[0]
    assert committed.startswith(f"\n\n{tables}\n")


def validation_log(folder: Path, points: Dict[int, float], meta_batch: int = 8) -> None:
    """A seed folder whose metrics.jsonl holds train records and validation `points`."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [{"iteration": i, "split": "train", "accuracy": 0.99} for i in points]
    lines += [{"iteration": i, "split": "validation", "accuracy": a} for i, a in points.items()]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines)
                                          + '{"iteration": 9')  # a line cut off by a crash
    (folder / "config.json").write_text(json.dumps({
        "train": {"meta_batch": meta_batch, "eval_tasks": 40}, "algorithm": {"test_steps": 3}}))


def test_the_headline_curves_are_the_validation_records_per_seed(tmp_path: Path) -> None:
    run = tmp_path / "headline" / "omniglot-5w1s-headline-maml"
    validation_log(run / "seed1", {200: 0.7, 100: 0.5})
    validation_log(run / "seed0", {100: 0.6, 200: 0.8, 300: 0.9})
    curves = tuned_headline.headline_curves(run)
    assert curves == {0: [(100, 0.6), (200, 0.8), (300, 0.9)], 1: [(100, 0.5), (200, 0.7)]}


def test_the_headline_figure_draws_the_mean_where_every_seed_has_a_point(tmp_path: Path) -> None:
    run = tmp_path / "headline" / "omniglot-5w1s-headline-maml"
    validation_log(run / "seed0", {100: 0.6, 200: 0.8, 300: 0.9})
    validation_log(run / "seed1", {100: 0.5, 200: 0.7})
    png = tmp_path / "curves.png"
    assert not tuned_headline.headline_figure(tmp_path / "nothing", png) and not png.exists()
    assert tuned_headline.headline_figure(tmp_path, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fig, ax = pyplot().subplots()
    assert tuned_headline.draw_headline(ax, tmp_path, {"MAML": "#123456"})
    (mean,) = [line for line in ax.get_lines() if line.get_label() == "MAML (seeds 0, 1)"]
    assert list(mean.get_xdata()) == [100, 200]
    assert list(mean.get_ydata()) == pytest.approx([55.0, 75.0])
    assert mean.get_color() == "#123456"
    assert ax.get_xlabel() == "meta-iteration (8 tasks each)"
    assert ax.get_ylabel() == "validation accuracy %, 40 tasks, 3 steps"


def test_the_curve_table_averages_each_block_of_meta_iterations(tmp_path: Path) -> None:
    assert tuned_headline.curve_table(tmp_path) == ""
    run = tmp_path / "headline" / "omniglot-5w1s-headline-anil"
    validation_log(run / "seed0", {250: 0.6, 500: 0.8, 750: 0.5, 1000: 0.7})
    validation_log(run / "seed1", {250: 0.4, 500: 0.6, 750: 0.7, 1000: 0.9})
    text = tuned_headline.curve_table(tmp_path)
    assert row(text, "row")[1:] == ["seeds", "1–500", "501–1,000"]
    # (0.6 + 0.8 + 0.4 + 0.6) / 4 and (0.5 + 0.7 + 0.7 + 0.9) / 4
    assert row(text, "ANIL")[1:] == ["0, 1", "60.0", "70.0"]
