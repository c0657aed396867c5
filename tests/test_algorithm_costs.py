"""benchmarks/algorithm_costs.py writes the JSON the every-algorithm tables read their seconds
per meta-iteration from (structure only: no timing is checked)."""
import json
from pathlib import Path

import pytest

from benchmarks import algorithm_costs
from experiments import algorithms_grid, algorithms_report
from vision_fixtures import write_omniglot_tree

TINY = ["data.queries=1", "data.options={split_sizes=[5, 5, 5]}", "model.options={hidden=8}",
        "train.meta_batch=2", "device=cpu"]


@pytest.mark.slow
def test_rounds_are_written_and_the_report_takes_them(tmp_path: Path) -> None:
    root = write_omniglot_tree(tmp_path / "data", {"images_background": {"A": 5, "B": 5},
                                                   "images_evaluation": {"C": 5}}, drawings=2)
    out = tmp_path / "timing" / "algorithm-costs-5w1s.json"
    assert algorithm_costs.main(["--setting", "5w1s", "--root", str(root), "--rows", "anil",
                                 "--iterations", "3", "--repeats", "2", "--json", str(out),
                                 *TINY]) == 0
    data = json.loads(out.read_text())
    assert (data["setting"], data["iterations"], data["repeats"]) == ("5w1s", 3, 2)
    assert list(data["rows"]) == ["anil"] and len(data["rows"]["anil"]["rounds"]) == 2
    assert data["rows"]["anil"]["seconds_per_iteration"] > 0
    assert data["environment"]["hardware"] and data["overrides"] == TINY
    results = tmp_path / "results" / "5w1s" / algorithms_grid.run_name("5w1s", "anil") / "seed0"
    results.mkdir(parents=True)
    (results / "results.json").write_text(json.dumps({
        "seed": 0, "environment": {}, "iterations_done": 1, "config": {"train": {"iterations": 1}},
        "seconds_per_iteration": 99.0, "peak_memory_mb": 1.0, "peak_memory_kind": "k",
        "evaluation": {"per_task": {"accuracy": [0.5, 0.7], "loss_by_step": [[1.0]]}}}))
    text = algorithms_report.setting_section(tmp_path / "results", "5w1s", [0], out.parent)
    anil = next(line for line in text.splitlines() if line.startswith("| ANIL |"))
    assert f"| {data['rows']['anil']['seconds_per_iteration']:.3f} |" in anil
    assert "99.000" not in anil


def test_bad_arguments_are_one_line_errors(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as missing:
        algorithm_costs.main(["--root", str(tmp_path / "nowhere")])
    assert missing.value.code == 2 and "Omniglot not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        algorithm_costs.main(["--root", str(tmp_path), "--rows", "maml_typo"])
    assert "no row maml_typo" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        algorithm_costs.main(["--root", str(tmp_path), "--iterations", "1"])
    assert "at least 2" in capsys.readouterr().err
