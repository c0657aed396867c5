"""What runs record: results.json, results.md and the compare table say what was measured, on
which split and how, and nothing false.

The helpers (tiny configs, checksums, the read-only simulation) are in run_fixtures.py; where
something could be lost, the tests compare files' checksums before and after.
"""
import json

import pytest

from gbml_ext.compare import main as compare_main
from gbml_ext.runner import train
from gbml_ext.runner.cli import eval_main
from gbml_ext.runner.report import compare_table
from run_fixtures import DEEP, FAST, SHALLOW, cli, tiny


def test_reevaluation_keeps_trainings_peak_memory_and_records_its_own(tmp_path):
    train(tiny(tmp_path), progress=False)
    results = json.loads((tmp_path / "results.json").read_text())
    results["peak_memory_mb"] = 8.56  # what the trial's run measured while training
    (tmp_path / "results.json").write_text(json.dumps(results))
    again = train(tiny(tmp_path, "evaluation.tasks=6"), resume=True, progress=False).results
    assert again["evaluation"]["loss"]["n"] == 6
    assert again["peak_memory_mb"] == 8.56
    assert isinstance(again["evaluation_peak_memory_mb"], float)
    kept = [json.loads(p.read_text()) for p in tmp_path.glob("results-*.json")]
    assert [k["peak_memory_mb"] for k in kept] == [8.56]
    row = compare_table({"run": [again]}).splitlines()[2].split(" | ")
    assert row[4] == "9"  # the table shows training's peak, not the re-evaluation's


def test_compare_resume_that_reevaluates_keeps_the_peak_in_compare_md(tmp_path, capsys):
    out = tmp_path / "cmp"
    common = [SHALLOW, "--in-process", "--out", out, "--no-progress", *FAST]
    assert cli(capsys, compare_main, *common)[0] == 0
    results_path = next(out.glob("*/seed0/results.json"))
    results = json.loads(results_path.read_text())
    results["peak_memory_mb"] = 8.56
    results_path.write_text(json.dumps(results))
    code, _, err = cli(capsys, compare_main, *common, "--resume", "evaluation.tasks=6")
    assert code == 0, err
    row = (out / "compare.md").read_text().splitlines()[2].split(" | ")
    assert row[4] == "9" and row[8] == "+0%"


def test_cpu_runs_record_both_peaks_and_name_their_kinds(tmp_path):
    results = train(tiny(tmp_path), progress=False).results
    assert results["peak_memory_kind"] == "peak_rss_increase"
    assert results["peak_memory_note"] is None
    assert results["process_peak_memory_kind"] == "peak_rss"
    # the process's whole peak holds at least torch itself, and the increase above the start
    assert results["process_peak_memory_mb"] > 50
    assert 0 <= results["peak_memory_mb"] <= results["process_peak_memory_mb"]
    markdown = (tmp_path / "results.md").read_text()
    assert "(peak_rss_increase)" in markdown and "(peak_rss)" in markdown
    assert f"{results['process_peak_memory_mb']:.0f} MB" in markdown


def test_compare_in_process_records_no_peak_of_its_own_and_says_why(tmp_path, capsys):
    out = tmp_path / "cmp"
    code, _, err = cli(capsys, compare_main, SHALLOW, DEEP, "--in-process", "--out", out,
                       "--no-progress", *FAST)
    assert code == 0, err
    for name in ("Shallow", "Deep"):
        results = json.loads((out / name / "seed0" / "results.json").read_text())
        assert results["peak_memory_mb"] is None and results["process_peak_memory_mb"] is None
        assert "--in-process" in results["peak_memory_note"]
        assert "--in-process" in (out / name / "seed0" / "results.md").read_text()
    table = (out / "compare.md").read_text()
    assert table.splitlines()[2].split(" | ")[4] == "–" and "run without --in-process" in table


@pytest.mark.slow
def test_compare_in_its_own_processes_records_each_runs_peak(tmp_path, capsys):
    out = tmp_path / "cmp"
    code, _, err = cli(capsys, compare_main, SHALLOW, "--out", out, "--no-progress", *FAST)
    assert code == 0, err
    results = json.loads((out / "Shallow" / "seed0" / "results.json").read_text())
    assert results["peak_memory_mb"] >= 0 and results["process_peak_memory_mb"] > 0


def test_a_validation_evaluation_is_labelled_validation(tmp_path, capsys):
    results = train(tiny(tmp_path, "evaluation.split='validation'"), progress=False).results
    assert results["split"] == "validation"
    header = (tmp_path / "results.md").read_text().splitlines()[0]
    assert "validation loss (1 steps)" in header and "test" not in header
    assert "held-out validation tasks" in (tmp_path / "results.md").read_text()
    table = compare_table({"run": [results]})
    assert "validation loss" in table.splitlines()[0] and "test" not in table.splitlines()[0]
    # gbml-eval --split validation, and a run evaluated on test, keep their own labels
    code, out, err = cli(capsys, eval_main, tmp_path, "--split", "validation", "--no-progress")
    assert code == 0 and "validation loss" in out.splitlines()[0], err
    code, out, err = cli(capsys, eval_main, tmp_path, "--split", "test", "--no-progress")
    assert code == 0 and "| test loss" in out.splitlines()[0], err
    assert json.loads(next(tmp_path.glob("eval-test-*.json")).read_text())["split"] == "test"


def test_a_run_stopped_by_its_time_limit_says_so_in_results_md(tmp_path):
    results = train(tiny(tmp_path, "train.max_minutes=1e-6"), progress=False).results
    assert results["stopped_by_time_limit"] and results["iterations_done"] == 1
    markdown = (tmp_path / "results.md").read_text()
    assert "| 1 of 3 |" in markdown
    assert "Stopped by train.max_minutes = 1e-06 after 1 of 3 meta-iterations" in markdown
    finished = train(tiny(tmp_path / "full"), progress=False).results
    assert not finished["stopped_by_time_limit"]
    markdown = (tmp_path / "full" / "results.md").read_text()
    assert "| 3 of 3 |" in markdown and "Stopped" not in markdown
