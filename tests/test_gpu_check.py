"""scripts/gpu_check.py cannot rot: its dry run (every step, tiny, on the CPU, nothing
installed) passes here, and the offline-install helpers behave."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

from gpu_install import _distribution, install  # noqa: E402
from gpu_steps import TRAINING_RUNS, cuda_test_ids  # noqa: E402
from l2l_purepy import convert_pyx  # noqa: E402


def _dry_run(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    # No wheelhouse: the training step then uses a random-stroke stand-in for Omniglot.
    command = [sys.executable, str(REPO / "scripts/gpu_check.py"), "--device", "cpu",
               "--dry-run", "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work"),
               "--wheelhouse", str(tmp_path / "no-wheelhouse"), *extra]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=1200)


@pytest.mark.slow
def test_dry_run_passes_every_step_and_writes_the_reports_as_it_goes(tmp_path):
    # The step budgets are a GPU machine's; a CPU shared with the rest of the suite (make test
    # runs it in parallel) gets more time for each, still inside the deadline.
    # The compiled step compiles for minutes on a CPU: it has a slow test of its own below.
    result = _dry_run(tmp_path, "--deadline", "600", "--tests-budget", "120",
                      "--benchmark-budget", "150", "--training-budget", "150",
                      "--profile-budget", "90", "--no-compiled")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == [
        "benchmark.json", "benchmark.md", "gpu_check.json", "gpu_check.md", "profile.json",
        "profile.md", "training.json"]  # at most 8 files come back from a GPU machine
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["verdict"] == "pass" and report["dry_run"]
    steps = {step["name"]: step for step in report["steps"]}
    assert list(steps) == ["cuda tests", "benchmark", "omniglot training", "profile"]
    assert [s["status"] for s in steps.values()] == ["pass"] * 4
    assert set(steps["benchmark"]["results"]) == {"a-maml", "a-fomaml", "b-maml", "c-anil-kfo",
                                                  "s-linreg"}
    for results in steps["benchmark"]["results"].values():
        assert not {"compiled", "compiled-nhwc"} & set(results)  # only with --compiled
    runs = steps["omniglot training"]["runs"]
    assert list(runs) == [name for name, *_ in TRAINING_RUNS]
    assert all(run["error"] is None and run["iterations"] == 1 for run in runs.values())
    assert {run["path"] for run in runs.values()} == {"per-task", "batched"}
    assert runs["maml_kfo_adapted"]["overrides"] == ["algorithm.adapt_transform=true"]
    assert steps["profile"]["summary"]["wall_s"] > 0
    assert "DRY RUN" in (out / "gpu_check.md").read_text()


@pytest.mark.slow  # compiles a CNN's second-order meta-step on the CPU: minutes
def test_dry_run_of_the_compiled_step(tmp_path):
    """Config s beside the batched path (CUDA graphs: CUDA only), then MAML trained through the
    runner on the compiled path with CUDA graphs asked, with its first calls; the check's page
    shows both tables."""
    from gpu_check import markdown_report
    from gpu_compiled import DRY_RUN_RUNS, compiled
    from gpu_data import omniglot_archive

    from benchmarks.configs import CONFIGS, tiny
    from benchmarks.peers.compiled import unsupported

    work = tmp_path / "work"
    work.mkdir()
    data = omniglot_archive(tmp_path / "no-wheelhouse", work, dry_run=True)
    step = compiled(REPO, work, tmp_path / "out", data, "cpu", True, repeats=1, iterations=1,
                    timeout=900)
    assert step["status"] == "pass", step["detail"] + step["output_tail"][-3000:]
    assert list(step["results"]) == ["s-linreg"]  # config a too on a GPU (COMPILED_CONFIGS)
    results, skipped = step["results"]["s-linreg"], step["skipped_peers"]["s-linreg"]
    assert unsupported(tiny(CONFIGS["s-linreg"])) is None
    assert {"batched", "compiled"} <= set(results) and results["compiled"]["first_call_s"] > 0
    assert "CUDA graphs need a CUDA device" in skipped["compiled-cudagraphs"]
    runs = step["runs"]
    assert list(runs) == [name for name, *_ in DRY_RUN_RUNS] == ["maml-compiled-cudagraphs"]
    run = runs["maml-compiled-cudagraphs"]
    assert run["error"] is None and run["path_asked"] == "compiled" and run["cuda_graphs"], run
    assert run["train_path"] == run["path"] == "compiled" and run["first_call_s"] > 0
    report = {"verdict": "pass", "date": "-", "command": "-", "device": "cpu", "dry_run": True,
              "seconds": 1, "deadline": 1, "environment": {}, "install": {}, "steps": [step]}
    page = markdown_report(report)
    assert "## compiled: pass" in page and "| s-linreg | compiled |" in page
    assert "| maml-compiled-cudagraphs | compiled | 1 |" in page


def test_a_deadline_skips_the_steps_it_leaves_no_time_for_and_says_so(tmp_path):
    result = _dry_run(tmp_path, "--deadline", "1", "--least-step-seconds", "5")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "out/gpu_check.json").read_text())
    assert report["verdict"] == "partial" and len(report["incomplete_steps"]) == 5
    assert all("deadline" in step["detail"] for step in report["steps"])


def test_training_runs_cover_every_config_with_a_gpu_path():
    paths = {(config, path) for _, config, path, _ in TRAINING_RUNS}
    for config in ("maml", "fomaml", "metasgd", "maml_kfo", "anil", "anil_kfo"):
        assert {(config, "per-task"), (config, "batched")} <= paths
    assert ("imaml", "per-task") in paths and ("imaml", "batched") not in paths
    for _, config, _, _ in TRAINING_RUNS:
        assert (REPO / f"experiments/configs/omniglot/5w1s/{config}.toml").is_file()


def test_a_step_cut_off_by_its_time_limit_is_partial_and_keeps_its_output(tmp_path):
    from gpu_steps import run_step

    step = run_step("sleepy", [sys.executable, "-c",
                               "import time; print('measured', flush=True); time.sleep(30)"],
                    tmp_path, timeout=3, timeout_status="partial")
    assert step["status"] == "partial" and "measured" in step["output_tail"]
    assert "time limit" in step["detail"]


def test_cuda_tests_are_found_by_their_decorators():
    ids = cuda_test_ids(REPO)
    assert "tests/test_benchmark_peers.py::test_every_peer_gives_gbml_ext_meta_gradient_on_cuda" \
        in ids
    assert all("::test" in test_id for test_id in ids)


def test_missing_wheelhouse_is_a_clear_failure(tmp_path):
    outcome = install(tmp_path / "none", REPO)
    assert not outcome["ok"] and "make wheelhouse" in outcome["error"]


def test_wheel_names_map_to_distributions():
    assert _distribution(Path("gym_notices-0.1.0-py3-none-any.whl")) == "gym-notices"
    assert _distribution(Path("optree-0.20.0-cp312-cp312-manylinux_2_28_x86_64.whl")) == "optree"


PYX = '''# cython: language_version=3
cimport cython
from cpython cimport array, bool
import random


class Sub(Base):
    def twice(self):
        return 2 * self.value()


cdef class Base:

    cdef public:
        int n
        list items

    def __init__(self, dataset, int n=2, list items=None):
        cdef long i
        cdef list kept = []
        for i in range(n):
            kept.append(i)
        self.n = n
        self.items = kept

    @cython.boundscheck(False)
    cpdef value(self):
        cdef set chosen = set(self.items)
        found = <list>chosen
        return len(found)
'''


def test_pyx_rewrite_runs_as_python():
    namespace: dict = {}
    exec(compile(convert_pyx(PYX), "<pyx>", "exec"), namespace)
    assert namespace["Sub"](None, n=3).twice() == 6


def test_rewrite_refuses_what_is_not_python():
    with pytest.raises(SyntaxError):
        convert_pyx("cdef extern from 'x.h':\n    int f(int)\n")


def test_wheelhouse_carries_the_whole_omniglot_archive_or_says_it_is_absent(tmp_path, capsys):
    from build_wheelhouse import omniglot_archive
    from gpu_data import fake_omniglot

    archive = fake_omniglot(tmp_path / "source", characters=6, drawings=2)
    whole = omniglot_archive(tmp_path / "whole", archive)
    assert (whole["present"], whole["characters"], whole["subset"]) == (True, 6, False)
    assert (tmp_path / "whole/omniglot/omniglot-py.tar.gz").read_bytes() == archive.read_bytes()
    subset = omniglot_archive(tmp_path / "subset", archive, characters=3)
    assert (subset["present"], subset["characters"], subset["drawings"]) == (True, 3, 6)
    absent = omniglot_archive(tmp_path / "absent", tmp_path / "nothing.tar.gz")
    assert not absent["present"]
    assert "nothing.tar.gz" in (tmp_path / "absent/omniglot/ABSENT.txt").read_text()
    assert "Omniglot ABSENT" in capsys.readouterr().err


@pytest.mark.slow  # a whole runner process on Omniglot-shaped data: about 10 s
def test_headline_dry_run_stops_at_its_time_budget_and_reports_beside_the_papers(tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, str(REPO / "scripts/gpu_headline.py"), "--device", "cpu",
               "--dry-run", "--minutes", "0.005", "--out", str(out), "--work",
               str(tmp_path / "work"), "--wheelhouse", str(tmp_path / "no-wheelhouse")]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["headline.json", "headline.md",
                                                     "metrics.jsonl", "results.json"]
    summary = json.loads((out / "headline.json").read_text())
    assert summary["stopped_by_time_limit"] and 1 <= summary["iterations"] < 60000
    assert (summary["path_asked"], summary["cuda_graphs"], summary["first_call_s"]) == (
        "auto", False, None)
    assert summary["test_tasks"] == 4 and 0 <= summary["accuracy"]["mean"] <= 1
    page = (out / "headline.md").read_text()
    assert "98.7 % ± 0.4 %" in page and "99.1 %" in page and "DRY RUN" in page


def test_headline_page_names_the_path_and_its_first_call():
    from gpu_headline import markdown

    summary = {"minutes": 4, "dry_run": False, "date": "today", "command": "gpu_headline.py",
               "device": "H100", "torch": "2.14.1", "data": "omniglot", "overrides": [],
               "path_asked": "compiled", "cuda_graphs": True, "train_path": "compiled",
               "first_call_s": 42.25, "iterations": 100, "train_seconds": 240.0,
               "seconds_per_iteration": 0.004, "accuracy": {"mean": 0.9, "ci95": 0.01}}
    page = markdown(summary)
    assert ("- path: compiled (asked: compiled, CUDA graphs); first call 42.2 s (compiling "
            "included)") in page
    plain = markdown({**summary, "path_asked": "auto", "cuda_graphs": False,
                      "train_path": "batched", "first_call_s": None})
    assert "- path: batched (asked: auto)\n" in plain
