"""`make demo` (experiments.synthetic, which the Makefile calls with --resume): --resume keeps
finished runs, and --overwrite, even beside --resume, trains every run again, moving the old
runs and tables aside rather than deleting them."""
import json

from experiments.synthetic import main
from run_fixtures import checksums

TINY_DEMO = ["--rows", "linreg_shallow", "--seeds", "0", "--set", "train.iterations=2",
             "--set", "train.meta_batch=2", "--set", "evaluation.tasks=4",
             "--set", "train.eval_every=0", "--set", "algorithm.test_steps=1"]


def test_demo_overwrite_beside_resume_trains_again_and_keeps_the_old_runs(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main([*TINY_DEMO, "--out", str(out), "--resume"]) == 0
    run = out / "Shallow" / "seed0"
    before = checksums(run)
    assert main([*TINY_DEMO, "--out", str(out), "--resume"]) == 0
    assert "reused" in capsys.readouterr().err and checksums(run) == before
    tables = checksums(out)
    assert main([*TINY_DEMO, "--out", str(out), "--resume", "--overwrite"]) == 0
    err = capsys.readouterr().err
    assert "reused" not in err and "training in" in err
    assert json.loads((run / "results.json").read_text())["iterations_done"] == 2
    old_runs = list((out / "Shallow").glob("seed0.old-*"))
    assert len(old_runs) == 1 and checksums(old_runs[0]) == before
    old_tables = list(out.glob("synthetic.old-*"))
    assert len(old_tables) == 1 and checksums(old_tables[0]) == {
        name: tables[name] for name in ("results.md", "results.json", "synthetic.png")}
