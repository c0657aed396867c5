"""What runs record: results.json, results.md and the compare table say what was measured, on
which split and how, and nothing false.

The helpers (tiny configs, checksums, the read-only simulation) are in run_fixtures.py; where
something could be lost, the tests compare files' checksums before and after.
"""
import json

from gbml_ext.runner import train
from gbml_ext.runner.compare import main as compare_main
from gbml_ext.runner.report import compare_table
from run_fixtures import FAST, SHALLOW, cli, tiny


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
