"""Runs a researcher can trust, part 2: the cases a new-user trial still broke.

Each test reproduces one case of the trial (numbered as in the issue) and checks the
behaviour it asked for: a one- or two-line error that names the problem and the fix, a
non-zero exit and no traceback, or the right result; and, where something could be lost,
that the files there keep their checksums.

A read-only folder is simulated (`read_only`): as root, chmod does not stop writes, so the
writes themselves fail with EROFS, as on a read-only bind mount.
"""
import builtins
import errno
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gbml_ext import _startup
from gbml_ext.runner import ConfigError, load_config, load_run, train
from gbml_ext.runner.cli import eval_main, main
from gbml_ext.runner.compare import COMPARE_FILES
from gbml_ext.runner.compare import main as compare_main
from gbml_ext.runner.report import compare_table
from vision_fixtures import write_omniglot_archive, write_omniglot_tree

TINY = ["data.source=linear-regression", "data.options={dim=4, n_support=8, n_query=8}",
        "train.iterations=3", "train.meta_batch=2", "train.lr=0.01", "train.log_every=1",
        "train.checkpoint_every=0", "evaluation.tasks=4", "algorithm.test_steps=1"]
REPO = Path(__file__).resolve().parents[1]
SHALLOW = REPO / "experiments/configs/synthetic/linreg_shallow.toml"
DEEP = REPO / "experiments/configs/synthetic/linreg_deep.toml"
OMNIGLOT = REPO / "experiments/configs/omniglot/5w1s/maml.toml"
FAST = ["train.iterations=3", "train.meta_batch=2", "evaluation.tasks=4", "train.eval_every=0",
        "train.log_every=1"]


def tiny(out, *extra):
    return load_config(None, TINY + [f"output_dir='{out}'", *extra])


def checksums(folder: Path) -> dict:
    import hashlib

    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def cli(capsys, fn, *args):
    code = fn([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def clean_error(err: str, lines: int = 2) -> bool:
    """One or two lines on stderr, none of them a traceback."""
    return "Traceback" not in err and 0 < len(err.strip().splitlines()) <= lines


@pytest.fixture
def read_only(monkeypatch):
    """`read_only(folder)` makes every write under `folder` fail with EROFS."""
    folders = []

    def inside(path) -> bool:
        if isinstance(path, int):
            return False
        target = Path(os.fsdecode(path)).absolute()
        return any(target == f or f in target.parents for f in folders)

    def refuse(path):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))

    real_open, real_os_open = builtins.open, os.open

    def fake_open(file, mode="r", *args, **kwargs):
        if not isinstance(file, int) and any(c in mode for c in "wax+") and inside(file):
            refuse(file)
        return real_open(file, mode, *args, **kwargs)

    def fake_os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and inside(path):
            refuse(path)
        return real_os_open(path, flags, *args, **kwargs)

    def guard(real):
        def fake(path, *args, **kwargs):
            if inside(path) or any(isinstance(a, (str, os.PathLike)) and inside(a)
                                   for a in args):
                refuse(path)
            return real(path, *args, **kwargs)
        return fake

    for name in ("mkdir", "rename", "replace", "unlink", "rmdir"):
        monkeypatch.setattr(os, name, guard(getattr(os, name)))
    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)
    monkeypatch.setattr(os, "open", fake_os_open)
    return lambda folder: folders.append(Path(folder).absolute())


def test_the_read_only_simulation_refuses_writes_and_allows_reads(tmp_path, read_only):
    (tmp_path / "a.txt").write_text("kept")
    read_only(tmp_path)
    with pytest.raises(OSError, match="Read-only"):
        (tmp_path / "b.txt").write_text("x")
    with pytest.raises(OSError, match="Read-only"):
        (tmp_path / "sub").mkdir()
    assert (tmp_path / "a.txt").read_text() == "kept"


# 1. Read-only places: a clean error, and gbml-eval prints what it cannot save ----------------

def test_train_into_a_read_only_folder_is_a_clean_error(tmp_path, read_only, capsys):
    read_only(tmp_path)
    code, _, err = cli(capsys, main, *TINY, f"output_dir='{tmp_path}/run'", "--no-progress")
    assert code == 1 and clean_error(err), err
    assert "Read-only file system" in err and f"{tmp_path}/run" in err and "output_dir=" in err


def test_resume_in_a_read_only_folder_is_a_clean_error_and_touches_nothing(
        tmp_path, read_only, capsys):
    train(tiny(tmp_path), progress=False)
    before = checksums(tmp_path)
    read_only(tmp_path)
    code, _, err = cli(capsys, main, *TINY, f"output_dir='{tmp_path}'", "--resume",
                       "--no-progress")
    assert code == 1 and clean_error(err), err
    assert "run.lock" in err and "Read-only file system" in err and "gbml-eval" in err
    assert checksums(tmp_path) == before


def test_gbml_eval_prints_a_result_it_cannot_save(tmp_path, read_only, capsys):
    trained = train(tiny(tmp_path / "run"), progress=False)
    before = checksums(tmp_path)
    read_only(tmp_path)
    code, out, err = cli(capsys, eval_main, tmp_path / "run", "--tasks", "4", "--no-progress")
    assert code == 1 and clean_error(err), err
    assert f"{tmp_path}/run" in err and "eval-test-1steps-4tasks" in err and "--out" in err
    loss = trained.results["evaluation"]["loss"]
    assert f"{loss['mean']:.4f} ± {loss['ci95']:.4f}" in out  # the result is printed anyway
    assert checksums(tmp_path) == before
    # and --out saves it elsewhere
    code, out, err = cli(capsys, eval_main, tmp_path / "run", "--tasks", "4", "--no-progress",
                         "--out", tmp_path.parent / "elsewhere")
    assert code == 0, err
    saved = json.loads((tmp_path.parent / "elsewhere/eval-test-1steps-4tasks.json").read_text())
    assert saved["evaluation"]["loss"] == loss and saved["evaluation_peak_memory_mb"] >= 0


# 2. Shrinking train.iterations on --resume is refused -----------------------------------------

def test_resume_with_fewer_iterations_is_refused_and_nothing_changes(tmp_path, capsys):
    code, _, err = cli(capsys, main, *TINY, "train.iterations=5", f"output_dir='{tmp_path}'",
                       "--no-progress")
    assert code == 0, err
    before = checksums(tmp_path)
    code, _, err = cli(capsys, main, *TINY, "train.iterations=3", f"output_dir='{tmp_path}'",
                       "--resume", "--no-progress")
    assert code == 2 and clean_error(err), err
    assert "train.iterations=3" in err and "5 meta-iterations" in err and "--overwrite" in err
    assert checksums(tmp_path) == before
    assert json.loads((tmp_path / "results.json").read_text())["iterations_done"] == 5


# 3. Re-evaluation keeps training's peak memory ------------------------------------------------

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


# 4. One-way classification is a config error --------------------------------------------------

def test_one_way_classification_is_a_config_error(tmp_path, capsys):
    """Checked with the config, before any data is read (a one-way task is 100% right)."""
    args = [OMNIGLOT, f"data.root='{tmp_path}/omniglot-py.tar.gz'", "data.ways=1",
            f"output_dir='{tmp_path}/run'", "--no-progress"]
    code, _, err = cli(capsys, main, *args)
    assert code == 2 and clean_error(err) and "data.ways = 1" in err and ">= 2" in err, err
    assert not (tmp_path / "run").exists()
    code, _, err = cli(capsys, compare_main, OMNIGLOT, "data.ways=1", "--out", tmp_path / "cmp")
    assert code == 2 and "data.ways" in err and not (tmp_path / "cmp").exists()
    with pytest.raises(ConfigError, match="data.ways"):
        load_config(None, ["data.source=omniglot", "data.ways=1"])
    assert load_config(OMNIGLOT, ["data.ways=2"]).data.ways == 2
    # the synthetic sources do not use data.ways (logistic regression has its two classes)
    assert load_config(None, ["data.source=logistic-regression", "data.ways=1"])


# 5. A damaged JSON file names itself; compare goes on ----------------------------------------

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


def test_gbml_eval_with_a_damaged_config_json_says_so_and_uses_the_checkpoint(tmp_path, capsys):
    trained = train(tiny(tmp_path), progress=False)
    (tmp_path / "config.json").write_text('{"name": "experi')
    before = checksums(tmp_path)["config.json"]
    code, out, err = cli(capsys, eval_main, tmp_path, "--no-progress")
    assert code == 0 and "Traceback" not in err, err
    assert f"{tmp_path}/config.json is damaged" in err and "checkpoint" in err
    saved = json.loads((tmp_path / "eval-test-1steps-4tasks.json").read_text())
    assert saved["evaluation"]["loss"] == trained.results["evaluation"]["loss"]
    assert checksums(tmp_path)["config.json"] == before
    assert load_run(tmp_path).iteration == 3


def test_a_damaged_config_json_without_a_checkpoint_names_the_file(tmp_path, capsys):
    (tmp_path / "config.json").write_text("{")
    code, _, err = cli(capsys, eval_main, tmp_path, "--no-progress")
    assert code == 1 and clean_error(err) and f"{tmp_path}/config.json is damaged" in err, err


# 6. gbml-eval --device: one clean line ---------------------------------------------------------

def test_gbml_eval_device_errors_are_one_line(tmp_path, monkeypatch, capsys):
    train(tiny(tmp_path), progress=False)
    before = checksums(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, _, err = cli(capsys, eval_main, tmp_path, "--device", "cuda", "--no-progress")
    assert code == 1 and clean_error(err, 1) and "no GPU" in err and "--device cpu" in err, err
    code, _, err = cli(capsys, eval_main, tmp_path, "--device", "tpu", "--no-progress")
    assert code == 2 and clean_error(err, 1) and "'tpu'" in err and "cpu" in err, err
    assert checksums(tmp_path) == before


# 7. One grammar for the three commands ---------------------------------------------------------

def test_compare_takes_the_allow_change_it_recommends(tmp_path, capsys):
    out = tmp_path / "cmp"
    common = [SHALLOW, "--in-process", "--out", out, "--no-progress", *FAST]
    assert cli(capsys, compare_main, *common)[0] == 0
    code, _, err = cli(capsys, compare_main, *common, "--resume", "algorithm.inner_lr=0.3")
    assert code == 2 and "--allow-change algorithm.inner_lr" in err, err
    # the recommended flag, before the config as the trial wrote it
    code, _, err = cli(capsys, compare_main, "--resume", "--allow-change", "algorithm.inner_lr",
                       "algorithm.inner_lr=0.3", *common)
    assert code == 0, err
    results = json.loads(next(out.glob("*/seed0/results.json")).read_text())
    assert results["changes"] == [{"iteration": 3, "key": "algorithm.inner_lr", "from": 0.5,
                                   "to": 0.3}]


@pytest.mark.parametrize("command,runs", [(main, True), (compare_main, True),
                                          (eval_main, False)])
def test_the_three_commands_share_their_options(command, runs, capsys):
    with pytest.raises(SystemExit) as stop:
        command(["--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--set", "--print-config", "--no-progress", "--debug", "key=value"):
        assert flag in text, flag
    for flag in ("--resume", "--overwrite", "--allow-change"):
        assert (flag in text) == runs, flag


def test_usage_errors_are_one_line(capsys):
    for command, args in ((main, ["--resume", "--overwrite"]),
                          (compare_main, ["a.toml", "--allow-change", "data.ways"]),
                          (eval_main, ["--tasks", "x", "run"])):
        with pytest.raises(SystemExit) as stop:
            command(args)
        err = capsys.readouterr().err
        assert stop.value.code == 2 and clean_error(err, 1), err


def test_allow_change_keys_leave_the_config_positional(tmp_path, capsys):
    train(tiny(tmp_path, "train.lr=0.01"), progress=False)
    config = tmp_path.parent / f"{tmp_path.name}.toml"
    config.write_text('[train]\nlr = 0.02\n')
    code, _, err = cli(capsys, main, "--resume", "--allow-change", "train.lr", config, *TINY,
                       "train.lr=0.02", "train.iterations=4", f"output_dir='{tmp_path}'",
                       "--no-progress")
    assert code == 0, err
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["changes"][0]["key"] == "train.lr" and results["iterations_done"] == 4


# 8. gbml-compare checks every run folder before the first run --------------------------------

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


# 9. gbml-compare --overwrite moves the comparison aside too -----------------------------------

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


# 10. Messages that said something untrue ------------------------------------------------------

def run_cli(capsys, tmp_path, *overrides):
    return cli(capsys, main, *TINY, f"output_dir='{tmp_path}/run'", *overrides, "--no-progress")


def test_a_bad_data_option_is_blamed_on_data_options(tmp_path, capsys):
    code, _, err = run_cli(capsys, tmp_path, 'data.options={dim="x", n_support=8, n_query=8}')
    assert code == 2 and clean_error(err) and "data.options.dim" in err, err
    assert "model.options" not in err


def test_an_outer_step_that_diverges_is_blamed_on_train_lr(tmp_path, capsys):
    code, _, err = run_cli(capsys, tmp_path, "train.lr=1e6")
    assert code == 1 and clean_error(err), err
    assert "train.lr" in err and "outer step" in err and "algorithm.inner_lr=" not in err


def test_a_checkpoint_that_holds_the_diverged_parameters_is_not_offered(tmp_path, capsys):
    code, _, err = run_cli(capsys, tmp_path, "train.lr=1e6", "train.checkpoint_every=1")
    assert code == 1 and clean_error(err), err
    assert "from before it" not in err and "--resume" not in err
    assert "already holds these meta-parameters" in err and "--overwrite train.lr=" in err


def test_gbml_eval_names_its_own_flags_in_config_errors(tmp_path, capsys):
    train(tiny(tmp_path), progress=False)
    code, _, err = cli(capsys, eval_main, tmp_path, "--tasks", "1", "--no-progress")
    assert code == 2 and clean_error(err) and "--tasks 1" in err, err
    assert "saved in" not in err


def test_a_folder_with_a_stray_file_is_not_called_a_run(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    before = checksums(tmp_path)
    code, _, err = run_cli(capsys, tmp_path)
    assert code == 1 and clean_error(err), err
    assert "notes.txt" in err and "holds no run" in err and "unfinished" not in err
    assert "--overwrite" in err and checksums(tmp_path) == before


def test_a_folder_given_as_the_config_is_called_a_folder(capsys):
    folder = SHALLOW.parent
    code, _, err = cli(capsys, main, folder, "--print-config")
    assert code == 2 and clean_error(err) and "is a folder" in err, err
    assert "does not exist" not in err and ".toml" in err


def _omniglot(tmp_path, root, *extra):
    return [*TINY, "data.source=omniglot", f"data.root='{root}'", "data.options={}",
            "model.name=omniglot_cnn4",
            "data.ways=2", "data.queries=1", f"output_dir='{tmp_path}/run'", *extra,
            "--no-progress"]


def test_a_truncated_archive_says_fetch_it_again(tmp_path, capsys):
    archive = write_omniglot_archive(write_omniglot_tree(tmp_path / "tree"),
                                     tmp_path / "omniglot-py.tar.gz")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    code, _, err = cli(capsys, main, *_omniglot(tmp_path, archive))
    assert code == 1 and "Traceback" not in err, err
    message = err.split("gbml-train: error: ", 1)[1]
    assert len(message.strip().splitlines()) == 2 and "fetch omniglot-py.tar.gz again" in message
    assert "unzip" not in message and "cache" not in message


def test_a_junk_archive_is_a_two_line_error(tmp_path, capsys):
    junk = tmp_path / "omniglot-py.tar.gz"
    junk.write_bytes(b"<html>not an archive</html>")
    code, _, err = cli(capsys, main, *_omniglot(tmp_path, junk))
    assert code == 1 and clean_error(err), err
    assert "not a tar archive" in err and "fetch omniglot-py.tar.gz again" in err


def test_the_cache_error_names_the_config_key(tmp_path, read_only, capsys):
    archive = write_omniglot_archive(write_omniglot_tree(tmp_path / "tree"),
                                     tmp_path / "omniglot-py.tar.gz")
    read_only(tmp_path / "cache")
    code, _, err = cli(capsys, main, *_omniglot(
        tmp_path, archive, f"data.options={{cache_dir='{tmp_path}/cache/omniglot'}}"))
    assert code == 1 and clean_error(err), err
    assert "data.options.cache_dir" in err


def test_ctrl_c_while_a_command_starts_is_one_line(capsys):
    assert _startup.command_name(["/venv/bin/gbml-train"], []) == "gbml-train"
    assert _startup.command_name(["-m"], ["python", "-m", "gbml_ext.runner.compare"]) == (
        "gbml-compare")
    assert _startup.command_name(["pytest"], ["python", "-m", "pytest"]) is None
    seen = []
    hook = _startup.quiet_interrupt_hook("gbml-eval", lambda *exc: seen.append(exc[0]))
    hook(KeyboardInterrupt, KeyboardInterrupt(), None)
    hook(ValueError, ValueError("x"), None)
    err = capsys.readouterr().err
    assert err == "gbml-eval: interrupted while starting; nothing was run or written.\n"
    assert seen == [ValueError]  # anything else is the previous hook's


@pytest.mark.slow
def test_ctrl_c_while_importing_is_one_line_in_a_real_process(tmp_path):
    script = ("import sys; sys.argv[0] = '/venv/bin/gbml-train'; import gbml_ext; "
              "raise KeyboardInterrupt")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=tmp_path)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip() == "gbml-train: interrupted while starting; nothing was run or " \
                                  "written."


def test_a_failed_start_leaves_no_empty_folder(tmp_path, capsys):
    code, _, err = cli(capsys, main, *TINY, f"output_dir='{tmp_path}/new/run'",
                       "model.options={nope=1}", "--no-progress")
    assert code == 2 and clean_error(err), err
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()  # a folder that existed before is left where it is
    with pytest.raises(ConfigError):
        train(tiny(tmp_path / "kept", "model.options={nope=1}"), progress=False)
    assert (tmp_path / "kept").is_dir() and not any((tmp_path / "kept").iterdir())


# 11. The docs say what the commands do ---------------------------------------------------------

def test_readme_says_a_short_run_writes_one_checkpoint(tmp_path):
    train(tiny(tmp_path), progress=False)  # checkpoints only at the end
    assert sorted(p.name for p in tmp_path.glob("checkpoint*")) == ["checkpoint.pt"]
    readme = " ".join((REPO / "README.md").read_text().split())
    assert "two checkpoints" not in readme
    assert "`checkpoint.pt` (and `checkpoint.prev.pt`, once a second one is written)" in readme


def test_gbml_eval_help_says_overrides_work(capsys):
    with pytest.raises(SystemExit):
        eval_main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "key=value" in text and "run's saved config" in text


def test_compare_without_out_says_where_the_results_are(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(capsys, compare_main, SHALLOW, "--in-process", "--no-progress", *FAST)
    assert code == 0, err
    assert "| Shallow |" in out
    assert "the table is not saved" in err and "runs/Shallow/seed0" in err and "--out DIR" in err



# The shared error handling of the three commands -----------------------------------------------

def test_any_write_a_command_cannot_make_is_one_line(capsys):
    from gbml_ext.runner.options import run_command

    def refused():
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), "/mnt/ro/compare.md")

    assert run_command("gbml-compare", refused, debug=False) == 1
    err = capsys.readouterr().err
    assert clean_error(err, 1) and "cannot write /mnt/ro/compare.md" in err, err
    with pytest.raises(OSError):  # --debug shows the traceback
        run_command("gbml-compare", refused, debug=True)

    def missing():
        raise FileNotFoundError(errno.ENOENT, "No such file", "x")

    with pytest.raises(FileNotFoundError):  # not a file-system refusal: a bug to see
        run_command("gbml-compare", missing, debug=False)
