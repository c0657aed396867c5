"""The runner benchmarks: gbml-train on config s against learn2learn (runner_speed), and a
meta-iteration's parts (loop_parts)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import loop_parts, runner_speed

__all__ = []


def _result(seconds: float, path: str, first: float | None = None) -> dict:
    return {"seconds_per_iteration": seconds, "first_call_s": first,
            "evaluation_first_call_s": first, "train_path": path, "wall_s": 10.0,
            "train_seconds": 1.0}


def test_the_speed_up_is_the_median_of_per_round_ratios() -> None:
    runs = {"l2l-maml": [_result(0.010, "per-task"), _result(0.020, "per-task"),
                         _result(0.012, "per-task")],
            "compiled warm": [_result(0.001, "compiled", 2.0), _result(0.001, "compiled", 3.0),
                              _result(0.004, "compiled", 4.0)]}
    rows = {row["variant"]: row for row in runner_speed.table(runs)}
    # Per round 10x, 20x, 3x: the median ratio is 10x, not 12 ms / 1 ms.
    assert rows["compiled warm"]["vs_l2l"] == pytest.approx(10.0)
    assert rows["compiled warm"]["ms_per_iteration"] == pytest.approx(1.0)
    assert rows["compiled warm"]["first_call_s"] == pytest.approx(3.0)
    assert rows["l2l-maml"]["vs_l2l"] == pytest.approx(1.0)
    text = runner_speed.markdown(list(rows.values()))
    assert "| compiled warm | compiled | 1.000 | 10.0x | 3.0 / 3.0 |" in text


@pytest.mark.slow
def test_the_command_runs_every_variant_and_writes_its_json_and_figure(tmp_path: Path) -> None:
    out, png = tmp_path / "runner.json", tmp_path / "runner.png"
    assert runner_speed.main(["--rounds", "1", "--iterations", "3", "--json", str(out),
                              "--png", str(png)]) == 0
    rows = {row["variant"]: row for row in json.loads(out.read_text())["rows"]}
    assert {name: row["path"] for name, row in rows.items()} == {
        "l2l-maml": "per-task", "batched": "batched", "compiled cold": "compiled",
        "compiled warm": "compiled", "compiled + fused": "compiled"}
    assert rows["compiled cold"]["first_call_s"] > 0
    assert rows["batched"]["first_call_s"] is None
    assert png.stat().st_size > 1000


def test_loop_parts_times_each_part_of_a_meta_iteration(tmp_path: Path) -> None:
    out = tmp_path / "parts.json"
    config = runner_speed.REPO / runner_speed.CONFIG
    assert loop_parts.main([str(config), "algorithm.path=batched", "--iterations", "20",
                            "--warmup", "2", "--json", str(out)]) == 0
    medians = json.loads(out.read_text())["median_ms"]
    assert list(medians) == list(loop_parts.PARTS)
    assert all(value > 0 for value in medians.values())
    assert medians["whole iteration"] >= medians["meta-step"] + medians["optimizer step"]


def test_the_figure_redraws_from_a_stored_json_without_measuring(tmp_path: Path,
                                                                  monkeypatch) -> None:
    def refuse(*args: object) -> None:
        raise AssertionError("measured")

    monkeypatch.setattr(runner_speed, "measure", refuse)
    stored = tmp_path / "runner.json"
    runs = {"l2l-maml": [_result(0.012, "per-task")],
            "compiled warm": [_result(0.001, "compiled", 3.0)]}
    stored.write_text(json.dumps({"command": "x", "date": "2026-12-07 06:58 UTC",
                                  "runs": runs}))
    png = tmp_path / "runner.png"
    assert runner_speed.main(["--from-json", str(stored), "--png", str(png)]) == 0
    assert png.stat().st_size > 1000
