"""The depth/width figure and tables come from run folders by one command."""
import argparse
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


def test_shards_split_the_points_without_overlap():
    shards = [curve.shard_points(curve.parse_shard(f"{k}/3")) for k in range(3)]
    flat = [p for shard in shards for p in shard]
    assert sorted(flat) == sorted(curve.points()) and len(flat) == len(set(flat))


def test_bad_shard_is_a_short_error():
    with pytest.raises(argparse.ArgumentTypeError, match="K/N"):
        curve.parse_shard("2")
    with pytest.raises(argparse.ArgumentTypeError, match="0..N-1"):
        curve.parse_shard("2/2")
