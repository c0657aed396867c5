"""The depth/width figure and tables come from run folders by one command."""
import json
from pathlib import Path

import pytest

from experiments import curve
from gbml_ext.runner.evaluate import summarize


def fake_results(folder: Path, accuracies: list) -> None:
    folder.mkdir(parents=True)
    evaluation = {"steps": 3, "accuracy": summarize(accuracies), "loss": summarize([1.0, 1.0]),
                  "loss_by_step": [summarize([1.0, 1.0])] * 4,
                  "per_task": {"accuracy": accuracies, "loss_by_step": [[1.0, 1.0]] * 4}}
    (folder / "results.json").write_text(json.dumps({
        "evaluation": evaluation, "seed": int(folder.name.removeprefix("seed")),
        "environment": {"hardware": "test CPU", "torch": "x"}}))


def test_report_tables_and_figure_from_run_folders(tmp_path: Path, capsys) -> None:
    fake_results(tmp_path / "L4-H8" / "omniglot-5w1s-curve-maml" / "seed0", [0.5, 0.7])
    fake_results(tmp_path / "L4-H8" / "omniglot-5w1s-curve-maml" / "seed1", [0.6, 0.6])
    fake_results(tmp_path / "L1-H64" / "omniglot-5w1s-curve-anil" / "seed0", [0.3, 0.5])
    fake_results(tmp_path / "linnet" / "linnet-v2" / "seed0", [0.9, 0.7])
    curve.report(tmp_path)
    table = (tmp_path / "curve.md").read_text()
    maml_row = next(line for line in table.splitlines() if line.startswith("| maml |"))
    assert "60.0 ± " in maml_row  # pooled over both seeds' tasks: mean of 0.5, 0.7, 0.6, 0.6
    assert (tmp_path / "curve.png").stat().st_size > 10_000
    summary = json.loads((tmp_path / "curve.json").read_text())
    assert summary["maml"]["L4-H8"]["seeds"] == [0, 1] and summary["maml"]["L4-H8"]["n"] == 4
    study = (tmp_path / "linnet.md").read_text()
    assert "depth 2, default init | 1 | 80.00 ± " in study


def test_the_curve_plans_every_point_row_and_seed_once_in_its_own_folder(tmp_path):
    root = tmp_path / "omniglot"
    root.mkdir()
    plan = curve.plan([0, 1], root, tmp_path / "runs")
    assert len(plan) == 2 * len(curve.points()) * len(curve.ROWS)
    assert len({spec.run_dir for spec in plan}) == len(plan)
    first = plan[0]
    layers, hidden = curve.points()[0]
    assert first.run_dir == (tmp_path / "runs" / curve.point_name(layers, hidden) /
                             f"omniglot-5w1s-curve-{curve.ROWS[0]}" / "seed0")
    assert first.config.model.options == {"layers": layers, "hidden": hidden}


def test_a_missing_data_root_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit, match="Omniglot not found"):
        curve.plan([0], tmp_path / "nowhere", tmp_path / "runs")
