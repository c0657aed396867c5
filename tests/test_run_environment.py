"""What results.json records to trace a run back: the source commit of the checkout."""
import subprocess
from pathlib import Path

import torch

from gbml_ext.runner.report import environment_info, source_commit


def git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@t",
                           *args], check=True, capture_output=True, text=True).stdout.strip()


def test_commit_of_a_checkout_and_its_local_changes(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    (tmp_path / "a.txt").write_text("one")
    git(tmp_path, "add", "a.txt")
    git(tmp_path, "commit", "-q", "-m", "first")
    head = git(tmp_path, "rev-parse", "HEAD")
    assert source_commit(tmp_path) == head[:12]
    (tmp_path / "new.txt").write_text("untracked files are not the checkout's changes")
    assert source_commit(tmp_path) == head[:12]
    (tmp_path / "a.txt").write_text("two")
    assert source_commit(tmp_path) == head[:12] + "+changes"


def test_no_commit_outside_a_checkout(tmp_path: Path) -> None:
    assert source_commit(tmp_path) is None


def test_environment_records_this_checkouts_commit() -> None:
    root = Path(__file__).resolve().parents[1]
    commit = environment_info(torch.device("cpu"))["commit"]
    if (root / ".git").exists():
        assert commit.split("+")[0] == git(root, "rev-parse", "HEAD")[:12]
    else:
        assert commit is None
