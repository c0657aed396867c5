"""The budget study's bookkeeping: a longer budget continues the shorter one's finished run, the
one-layer variant is chosen on validation among the KFO rows, and the tables come from folders."""
import json

from experiments import budget, budget_report
from test_curve_report import fake_results


def test_a_longer_budget_starts_from_the_shorter_ones_checkpoint(tmp_path):
    root = tmp_path / "omniglot"
    root.mkdir()
    point = (2, 64)
    short = budget.row_run_dir(budget.budget_folder(tmp_path, point, 300), "maml", 0)
    # Not finished yet: the 1,200-iteration stage waits.
    assert budget.stage_entry(root, tmp_path, point, "maml", 0, 1) is None
    short.mkdir(parents=True)
    for name in ("config.json", "metrics.jsonl", "checkpoint.pt"):
        (short / name).write_text(name)
    (short / "results.json").write_text(json.dumps({"iterations_done": 300}))
    entry = budget.stage_entry(root, tmp_path, point, "maml", 0, 1)
    long = budget.row_run_dir(budget.budget_folder(tmp_path, point, 1200), "maml", 0)
    assert (long / "checkpoint.pt").read_text() == "checkpoint.pt"
    assert (entry.config.stem, entry.seed, entry.out) == (
        "maml", 0, budget.budget_folder(tmp_path, point, 1200))
    assert "train.iterations=1200" in entry.overrides and "threads=1" in entry.overrides
    # The plan holds the 1,200 stage (not the finished 300 one) for this chain.
    planned = {spec.run_dir for spec in budget.plan([0], root, tmp_path)}
    assert long in planned and short not in planned
    # A finished stage is never run again.
    (long / "results.json").write_text(json.dumps({"iterations_done": 1200}))
    assert budget.stage_entry(root, tmp_path, point, "maml", 0, 1) is None


def test_the_variant_is_chosen_on_validation_among_kfo_rows_and_reported(tmp_path):
    accuracy = {"MAML (no KFO)": 0.9, "MAML-KFO as in the curve": 0.3, "inner lr 0.1": 0.6,
                "factors not PSD": 0.5}
    for label, value in accuracy.items():
        for seed in (0, 1):
            fake_results(budget.ablation_dir(tmp_path, label) / f"seed{seed}", [value, value])
    assert budget.chosen_variant(tmp_path) == "inner lr 0.1"  # MAML itself is not a candidate
    table = budget_report.ablation_table(tmp_path)
    assert "| inner lr 0.1 | 2 | – | 60.0 ± " in table
    for point, budgets in budget.BUDGETS.items():
        for row, value in (("maml", [0.5, 0.5]), ("maml_kfo", [0.7, 0.7])):
            folder = budget.budget_folder(tmp_path, point, budgets[0]) / \
                f"omniglot-5w1s-curve-{row}" / "seed0"
            fake_results(folder, value)
            results = json.loads((folder / "results.json").read_text())
            (folder / "results.json").write_text(json.dumps({**results,
                                                             "iterations_done": budgets[0]}))
    rows = budget_report.budget_table(tmp_path).splitlines()
    assert any(line.startswith("| L2-H64 | 300 | – | – | – | 50.0 ± ") and "+20.0 ± " in line
               for line in rows)
