"""The every-algorithm tables and figure are rebuilt from run folders by one command."""
import json
from pathlib import Path
from typing import List

import pytest

from experiments import algorithms, algorithms_grid, algorithms_report
from helpers import ci_cell as cell
from helpers import table_row as row

ENV = {"date": "2026-11-25T10:00:00+00:00", "hardware": "Test CPU, 1 threads", "torch": "2.x",
       "commit": "abcdef123456"}


def fake_run(folder: Path, seed: int, accuracies: List[float], seconds: float, peak: float,
             validation: List[float], date: str = ENV["date"]) -> None:
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps({
        "seed": seed, "environment": {**ENV, "date": date}, "iterations_done": 300,
        "config": {"train": {"iterations": 300}}, "seconds_per_iteration": seconds,
        "peak_memory_mb": peak, "peak_memory_kind": "peak_rss_increase",
        "stopped_by_time_limit": False,
        "evaluation": {"per_task": {"accuracy": accuracies, "loss_by_step": [[1.0]]}}}))
    (folder / "metrics.jsonl").write_text("".join(
        json.dumps({"iteration": 50 * (i + 1), "split": "validation", "accuracy": a}) + "\n"
        for i, a in enumerate(validation)))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    five = tmp_path / "results" / "5w1s"
    maml = five / algorithms_grid.run_name("5w1s", "maml")
    fake_run(maml / "seed0", 0, [0.6, 0.8, 1.0, 0.4], 0.2, 100.0, [0.3, 0.5])
    fake_run(maml / "seed1", 1, [0.2, 0.4, 0.9, 0.7], 0.3, 200.0, [0.5, 0.7],
             date="2026-11-25T12:00:00+00:00")
    anil = five / algorithms_grid.run_name("5w1s", "anil")
    fake_run(anil / "seed0", 0, [0.5, 0.5, 0.6, 0.7], 0.1, 50.0, [0.4])
    (anil / "seed1").mkdir()
    (anil / "seed1" / "config.json").write_text(json.dumps({"train": {"iterations": 300}}))
    (anil / "seed1" / "metrics.jsonl").write_text(
        json.dumps({"iteration": 120, "split": "train", "loss": 1.0}) + "\n")
    (five / "not-run.json").write_text(json.dumps({"imaml": "over the CPU budget"}))
    return tmp_path


def test_table_numbers_come_from_the_run_folders(tree: Path) -> None:
    text = algorithms_report.setting_section(tree / "results", "5w1s", [0, 1], tree / "none")
    maml = row(text, "MAML")
    assert maml[1] == "0, 1"
    assert maml[2] == cell([0.6, 0.8, 1.0, 0.4, 0.2, 0.4, 0.9, 0.7])  # pooled over both seeds
    assert maml[3] == f"0: {cell([0.6, 0.8, 1.0, 0.4])}; 1: {cell([0.2, 0.4, 0.9, 0.7])}"
    assert maml[4:8] == ["300/300", "0.250*", "150 (peak_rss_increase)", "–"]
    assert "in the sweep, contended" in text
    anil = row(text, "ANIL")
    assert anil[2] == cell([0.5, 0.5, 0.6, 0.7])
    assert anil[7] == "seed 1 unfinished (iteration 120 of 300)"
    assert row(text, "iMAML")[2:] == ["not run", "–", "–", "–", "–",
                                      "over the CPU budget; seeds 0, 1 not run"]
    assert row(text, "FOMAML")[7] == "seeds 0, 1 not run"
    assert [r[0] for r in (row(text, algorithms_grid.LABELS[k]) for k in algorithms_grid.ROWS)] == [
        algorithms_grid.LABELS[k] for k in algorithms_grid.ROWS]
    assert "2026-11-25T10:00:00+00:00 to 2026-11-25T12:00:00+00:00" in text
    assert "commit abcdef123456" in text and "Test CPU, 1 threads" in text
    assert "seeds 0, 1 (asked: 0, 1)" in text


def test_benchmark_seconds_replace_the_contended_ones(tree: Path) -> None:
    timing = tree / "timing"
    timing.mkdir()
    algorithms_report.timing_file("5w1s", timing).write_text(json.dumps({
        "repeats": 3, "iterations": 5, "environment": {"hardware": "Bench CPU", "date": "d"},
        "rows": {"maml": {"seconds_per_iteration": 0.1234}}}))
    text = algorithms_report.setting_section(tree / "results", "5w1s", [0, 1], timing)
    assert row(text, "MAML")[5] == "0.123"
    assert row(text, "ANIL")[5] == "0.100*"  # not in the benchmark: the sweep's own time
    assert "3 repeats of 5 meta-iterations" in text and "Bench CPU" in text


def test_report_rewrites_only_its_part_of_the_page(tree: Path) -> None:
    doc = tree / "page.md"
    doc.write_text(f"# Page\n\nintro\n\n{algorithms_report.BEGIN}\nold\n{algorithms_report.END}"
                   f"\n\nwhat the numbers show\n")
    for _ in range(2):
        algorithms_report.write_report(tree / "results", doc, [0, 1], tree / "none")
    text = doc.read_text()
    assert text.startswith("# Page\n\nintro\n\n") and text.endswith("\n\nwhat the numbers show\n")
    assert "old" not in text and text.count("### Omniglot 5-way 1-shot") == 1
    assert text.count("### Omniglot 20-way 1-shot") == 1


def test_page_without_markers_is_left_alone(tree: Path) -> None:
    doc = tree / "page.md"
    doc.write_text("# hand-written\n")
    with pytest.raises(SystemExit, match="lacks the lines"):
        algorithms_report.write_report(tree / "results", doc, [0, 1], tree / "none")
    assert doc.read_text() == "# hand-written\n"


def test_validation_curve_is_the_mean_over_seeds(tree: Path) -> None:
    folder = tree / "results" / "5w1s" / algorithms_grid.run_name("5w1s", "maml")
    assert algorithms_report.validation_curve(folder) == pytest.approx({50: 40.0, 100: 60.0})


def test_figure_writes_a_png(tree: Path) -> None:
    png = tree / "img" / "figure.png"
    assert algorithms_report.figure(tree / "results", png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert not algorithms_report.figure(tree / "empty", tree / "none.png")
    assert not (tree / "none.png").exists()


def test_command_line_report_and_figure(tree: Path) -> None:
    doc, png = tree / "doc.md", tree / "fig.png"
    assert algorithms.main(["report", "--out", str(tree / "results"), "--doc", str(doc)]) == 0
    assert "| MAML | 0, 1 |" in doc.read_text()
    assert algorithms.main(["figure", "--out", str(tree / "results"), "--png", str(png)]) == 0
    assert png.is_file()
    with pytest.raises(SystemExit, match="no validation accuracy"):
        algorithms.main(["figure", "--out", str(tree / "empty"), "--png", str(png)])


def test_the_committed_page_rebuilds_unchanged_from_the_committed_results() -> None:
    """docs/omniglot-algorithms.md's tables are what `report` writes from
    experiments/results/algorithms and docs/data, not typed."""
    page = algorithms_report.DOC.read_text()
    tables = algorithms_report.report_text(algorithms_grid.RESULTS, (0, 1),
                                           algorithms_report.TIMING)
    begin, end = algorithms_report.BEGIN, algorithms_report.END
    committed = page.split(begin, 1)[1].split(end, 1)[0]
    assert committed.startswith(f"\n\n{tables}\n")
