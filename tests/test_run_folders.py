"""The run-folder rule: one config and one live process per folder; a used folder is refused,
--overwrite moves it aside, locks, read-only places and failed starts lose nothing.

The helpers (tiny configs, checksums, the read-only simulation) are in run_fixtures.py; where
something could be lost, the tests compare files' checksums before and after.
"""
import json
import os
import subprocess
import sys

import pytest

from gbml_ext.runner import ConfigError, RunFolderError, train
from gbml_ext.runner.cli import main
from run_fixtures import TINY, checksums, clean_error, cli, run_cli, tiny, tiny6


def test_new_run_in_a_used_folder_is_refused_and_nothing_is_touched(tmp_path):
    train(tiny6(tmp_path), progress=False)
    before = checksums(tmp_path)
    with pytest.raises(RunFolderError, match=f"{tmp_path}.*--resume.*--overwrite.*output_dir"):
        train(tiny6(tmp_path, "train.lr=0.02"), progress=False)
    assert checksums(tmp_path) == before


def test_overwrite_moves_the_old_run_aside_never_deletes(tmp_path):
    run = tmp_path / "run"
    train(tiny6(run), progress=False)
    before = checksums(run)
    train(tiny6(run, "train.lr=0.02"), progress=False, overwrite=True)
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("run.old-")]
    assert len(aside) == 1 and checksums(aside[0]) == before
    assert json.loads((run / "results.json").read_text())["config"]["train"]["lr"] == 0.02


def test_a_live_lock_is_refused_and_a_stale_one_is_replaced(tmp_path, capsys):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "run.lock").write_text(json.dumps({"pid": sleeper.pid,
                                                       "host": os.uname().nodename}))
        with pytest.raises(RunFolderError, match=f"pid {sleeper.pid}"):
            train(tiny6(tmp_path), progress=False)
        assert not (tmp_path / "metrics.jsonl").exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    train(tiny6(tmp_path), progress=False)  # the process is gone: the lock is stale
    assert "stale lock" in capsys.readouterr().err
    assert not (tmp_path / "run.lock").exists() and (tmp_path / "results.json").exists()


def test_the_read_only_simulation_refuses_writes_and_allows_reads(tmp_path, read_only):
    (tmp_path / "a.txt").write_text("kept")
    read_only(tmp_path)
    with pytest.raises(OSError, match="Read-only"):
        (tmp_path / "b.txt").write_text("x")
    with pytest.raises(OSError, match="Read-only"):
        (tmp_path / "sub").mkdir()
    assert (tmp_path / "a.txt").read_text() == "kept"


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


def test_a_folder_with_a_stray_file_is_not_called_a_run(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    before = checksums(tmp_path)
    code, _, err = run_cli(capsys, tmp_path)
    assert code == 1 and clean_error(err), err
    assert "notes.txt" in err and "holds no run" in err and "unfinished" not in err
    assert "--overwrite" in err and checksums(tmp_path) == before


def test_a_failed_start_leaves_no_empty_folder(tmp_path, capsys):
    code, _, err = cli(capsys, main, *TINY, f"output_dir='{tmp_path}/new/run'",
                       "model.options={nope=1}", "--no-progress")
    assert code == 2 and clean_error(err), err
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()  # a folder that existed before is left where it is
    with pytest.raises(ConfigError):
        train(tiny(tmp_path / "kept", "model.options={nope=1}"), progress=False)
    assert (tmp_path / "kept").is_dir() and not any((tmp_path / "kept").iterdir())


def test_a_lock_of_another_host_or_a_damaged_lock_says_what_it_is(tmp_path, capsys):
    (tmp_path / "run.lock").write_text(json.dumps({"pid": 1, "host": "elsewhere"}))
    with pytest.raises(RunFolderError) as error:
        train(tiny(tmp_path), progress=False)
    message = str(error.value)
    assert "pid 1 on host elsewhere" in message and "cannot be checked from here" in message
    assert "None" not in message and not (tmp_path / "metrics.jsonl").exists()
    (tmp_path / "run.lock").write_text("garbage")
    train(tiny(tmp_path), progress=False)
    err = capsys.readouterr().err
    assert "stale lock" in err and "names no process" in err and "None" not in err
