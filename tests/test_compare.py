"""gbml-compare: every run folder checked before the first run, --out, --resume reusing only
runs of the same config, --overwrite keeping the previous comparison.

The helpers (tiny configs, checksums, the read-only simulation) are in run_fixtures.py; where
something could be lost, the tests compare files' checksums before and after.
"""
import json

import pytest

from gbml_ext.compare import COMPARE_FILES
from gbml_ext.compare import main as compare_main
from run_fixtures import DEEP, FAST, REPO, SHALLOW, checksums, clean_error, cli


def test_compare_out_puts_every_run_under_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    config = REPO / "experiments/configs/synthetic/linreg_shallow.toml"
    code, out, err = cli(capsys, compare_main, config, "--in-process", "--out", "cmp",
                         "train.iterations=3", "evaluation.tasks=4", "train.eval_every=0")
    assert code == 0, err
    assert not (tmp_path / "runs").exists()
    assert list((tmp_path / "cmp").glob("*/seed0/results.json"))
    written = {p.name for p in (tmp_path / "cmp").iterdir()}
    assert {"compare.md", "compare.json", "compare.png"} <= written
    assert "[1/1]" in err


@pytest.mark.slow
def test_compare_resume_reuses_only_runs_of_the_same_config(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    config = REPO / "experiments/configs/synthetic/linreg_shallow.toml"
    common = [config, "--in-process", "--out", "cmp", "train.eval_every=0"]
    assert cli(capsys, compare_main, *common, "train.iterations=3", "evaluation.tasks=4")[0] == 0
    code, _, err = cli(capsys, compare_main, *common, "--resume", "train.iterations=3",
                       "evaluation.tasks=4")
    assert code == 0 and "reused" in err
    code, _, err = cli(capsys, compare_main, *common, "--resume", "train.iterations=5",
                       "evaluation.tasks=6")
    assert code == 0 and "reused" not in err
    results = json.loads(next((tmp_path / "cmp").glob("*/seed0/results.json")).read_text())
    assert results["iterations_done"] == 5 and results["evaluation"]["loss"]["n"] == 6


def test_compare_config_errors_are_clean(capsys):
    code, _, err = cli(capsys, compare_main,
                       REPO / "experiments/configs/synthetic/linreg_shallow.toml", "train.nope=3")
    assert code == 2 and "unknown config key" in err and "Traceback" not in err


def test_compare_resume_goes_on_past_a_truncated_results_json(tmp_path, capsys):
    out = tmp_path / "cmp"
    common = [SHALLOW, DEEP, "--in-process", "--out", out, "--no-progress", *FAST]
    assert cli(capsys, compare_main, *common)[0] == 0
    damaged = next(out.glob("Deep/seed0")) / "results.json"
    damaged.write_text(damaged.read_text()[:200])
    truncated = checksums(damaged.parent)["results.json"]
    code, _, err = cli(capsys, compare_main, *common, "--resume")
    assert code == 0 and "Traceback" not in err, err
    assert f"{damaged} is damaged" in err and "resuming Deep seed 0" in err
    assert "Shallow seed 0: reused" in err
    assert json.loads(damaged.read_text())["iterations_done"] == 3  # written again
    kept = {name: digest for name, digest in checksums(damaged.parent).items()
            if name.startswith("results-")}
    assert list(kept.values()) == [truncated]  # the damaged file is kept, not deleted
    assert json.loads((out / "compare.json").read_text()).keys() == {"Shallow", "Deep"}


def test_compare_refuses_the_same_config_twice_before_training(tmp_path, capsys):
    code, _, err = cli(capsys, compare_main, SHALLOW, SHALLOW, "--in-process", "--out",
                       tmp_path / "cmp", *FAST)
    assert code == 1 and clean_error(err) and "same config twice" in err, err
    assert not (tmp_path / "cmp").exists()


def test_compare_refuses_two_configs_of_one_name_before_training(tmp_path, capsys):
    other = tmp_path / "other.toml"
    other.write_text(f'extends = "{DEEP}"\nname = "Shallow"\n')
    code, _, err = cli(capsys, compare_main, SHALLOW, other, "--in-process", "--out",
                       tmp_path / "cmp", *FAST)
    assert code == 1 and clean_error(err) and "'Shallow'" in err and "name" in err, err
    assert not (tmp_path / "cmp").exists()


def test_compare_refuses_a_used_folder_before_the_first_run(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert cli(capsys, compare_main, DEEP, "--in-process", "--out", out, *FAST)[0] == 0
    before = checksums(out)
    code, _, err = cli(capsys, compare_main, SHALLOW, DEEP, "--in-process", "--out", out,
                       "--no-progress", *FAST)
    assert code == 1 and clean_error(err) and "--resume" in err and "--out DIR" in err, err
    assert not (out / "Shallow").exists() and checksums(out) == before


def test_compare_overwrite_keeps_the_previous_comparison(tmp_path, capsys):
    out = tmp_path / "cmp"
    common = [SHALLOW, "--in-process", "--out", out, "--no-progress", *FAST]
    assert cli(capsys, compare_main, *common)[0] == 0
    before = checksums(out)
    code, _, err = cli(capsys, compare_main, *common, "--overwrite", "train.lr=0.002")
    assert code == 0, err
    aside = list(out.glob("compare.old-*"))
    assert len(aside) == 1 and "moved the previous compare.md" in err
    assert checksums(aside[0]) == {name: before[name] for name in COMPARE_FILES}
    old_run = list((out / "Shallow").glob("seed0.old-*"))
    assert len(old_run) == 1 and checksums(old_run[0]) == {
        name.split("/", 2)[2]: digest for name, digest in before.items()
        if name.startswith("Shallow/seed0/")}
    assert all((out / name).is_file() for name in COMPARE_FILES)


def test_compare_without_out_says_where_the_results_are(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(capsys, compare_main, SHALLOW, "--in-process", "--no-progress", *FAST)
    assert code == 0, err
    assert "| Shallow |" in out
    assert "the table is not saved" in err and "runs/Shallow/seed0" in err and "--out DIR" in err


def test_compare_resume_writes_an_empty_compare_json_again(tmp_path, capsys):
    out = tmp_path / "cmp"
    common = [SHALLOW, "--in-process", "--out", out, "--no-progress", *FAST]
    assert cli(capsys, compare_main, *common)[0] == 0
    (out / "compare.json").write_text("")
    code, _, err = cli(capsys, compare_main, *common, "--resume")
    assert code == 0 and "reused" in err, err
    assert json.loads((out / "compare.json").read_text()).keys() == {"Shallow"}


@pytest.mark.parametrize("launcher", [[], ["--jobs", "2"], ["--in-process"]])
def test_an_out_that_cannot_be_a_folder_is_one_line_on_every_launcher(tmp_path, capsys,
                                                                      launcher):
    a_file = tmp_path / "taken"
    a_file.write_text("not a folder")
    for out, named in ((a_file, str(a_file)), ("/proc/no-such/out", "/proc/no-such")):
        code, _, err = cli(capsys, compare_main, SHALLOW, "--seeds", "0", "1", "--out", out,
                           "--no-progress", *launcher, *FAST)
        last = err.strip().splitlines()[-1]
        assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) <= 2, err
        assert last.startswith("gbml-compare: error: ") and named in last, err
        assert "--out DIR" in last
    assert a_file.read_text() == "not a folder"


def test_a_seed_listed_twice_is_named(tmp_path, capsys):
    code, _, err = cli(capsys, compare_main, SHALLOW, "--seeds", "0", "0", "1", "--out",
                       tmp_path / "cmp", *FAST)
    assert code == 1 and clean_error(err, 1), err
    assert "--seeds 0 0 1 lists seed 0 twice; give each seed once" in err
    assert not (tmp_path / "cmp").exists()


def test_a_config_with_its_own_output_dir_and_several_seeds(tmp_path, capsys):
    mine = tmp_path / "mine.toml"
    mine.write_text(f'extends = "{SHALLOW}"\noutput_dir = "{tmp_path}/fixed"\n')
    code, _, err = cli(capsys, compare_main, mine, "--seeds", "0", "1", *FAST)
    assert code == 1 and clean_error(err, 1), err
    assert "seeds 0 and 1 would both write" in err and "Give --out DIR" in err
    assert "remove output_dir" in err and not (tmp_path / "fixed").exists()
    # With --out, each seed goes to OUT/<the config's name>/seed<N>.
    code, _, err = cli(capsys, compare_main, mine, "--seeds", "0", "1", "--in-process",
                       "--out", tmp_path / "cmp", "--no-progress", *FAST)
    assert code == 0, err
    assert sorted(p.parent.name + "/" + p.name for p in (tmp_path / "cmp").glob("*/seed*")) == [
        "Shallow/seed0", "Shallow/seed1"]
