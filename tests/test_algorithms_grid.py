"""The every-algorithm sweep's grid (`plan`), and moving finished runs between the runs folder
and the committed results (`archive`, `restore`)."""
from pathlib import Path

import pytest

from experiments import algorithms, algorithms_grid
from gbml_ext.launch import build_plan


def test_plan_goes_seed_by_seed_alternating_settings_cheapest_rows_first(tmp_path: Path) -> None:
    grid = algorithms.plan(["5w1s", "20w1s"], [0, 1], "/data/omniglot", out=tmp_path)
    blocks = [(p.parent.name, seed) for p, seed, _, _ in grid]
    assert blocks == ([("5w1s-all", 0)] * 11 + [("20w1s-all", 0)] * 10
                      + [("5w1s-all", 1)] * 11 + [("20w1s-all", 1)] * 10)
    first = [p.stem for p, _, _, _ in grid[:11]]
    assert first[:3] == ["anil", "anil_linnet", "anil_kfo"] and first[-1] == "imaml"
    assert first.index("fomaml") < first.index("maml") < first.index("maml_kfo")
    assert sorted(first) == sorted(algorithms_grid.rows("5w1s"))
    assert "l2l_maml" not in [p.stem for p, _, _, _ in grid[11:21]]
    assert all(o == ["data.root='/data/omniglot'"] for _, _, o, _ in grid)
    assert {f for _, _, _, f in grid} == {tmp_path / "5w1s", tmp_path / "20w1s"}


def test_plan_runs_land_where_the_report_reads_them(tmp_path: Path) -> None:
    for config, seed, overrides, out in algorithms.plan(["20w1s"], [1], "/d", out=tmp_path):
        run = build_plan([config], [seed], overrides, out=out)[0]
        assert run.run_dir == out / algorithms_grid.run_name("20w1s", config.stem) / "seed1"


def write_run(folder: Path, finished: bool) -> None:
    folder.mkdir(parents=True)
    for name in ("config.json", "metrics.jsonl", "checkpoint.pt", "checkpoint.prev.pt"):
        (folder / name).write_text(name)
    if finished:
        (folder / "results.json").write_text("{}")
        (folder / "results.md").write_text("table")


def test_archive_copies_finished_runs_without_checkpoints_and_restore_brings_them_back(
        tmp_path: Path) -> None:
    runs, results = tmp_path / "runs", tmp_path / "results"
    write_run(runs / "5w1s" / "omniglot-5w1s-all-maml" / "seed0", finished=True)
    write_run(runs / "5w1s" / "omniglot-5w1s-all-maml" / "seed1", finished=False)
    assert algorithms.archive(runs, results) == 1
    kept = results / "5w1s" / "omniglot-5w1s-all-maml" / "seed0"
    assert sorted(p.name for p in kept.iterdir()) == sorted(algorithms.KEEP)
    assert not (results / "5w1s" / "omniglot-5w1s-all-maml" / "seed1").exists()
    fresh = tmp_path / "fresh"
    algorithms.restore(fresh, results, "algorithms")
    restored = fresh / "5w1s" / "omniglot-5w1s-all-maml" / "seed0"
    assert (restored / "metrics.jsonl").read_text() == "metrics.jsonl"


def test_unknown_setting_is_a_short_error() -> None:
    with pytest.raises(ValueError, match="use one of 5w1s, 20w1s"):
        algorithms_grid.config_folder("5w5s")
