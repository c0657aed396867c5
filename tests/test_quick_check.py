"""`make test-fast`, the quick check while developing: all CPUs, and none of the tests that
train for long or build and install the wheels or the documentation site."""
from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_quick_check_runs_over_all_cpus_without_the_slow_tests():
    dry = subprocess.run(["make", "-n", "test-fast"], cwd=REPO, capture_output=True, text=True,
                         timeout=60)
    assert dry.returncode == 0, dry.stderr
    pytest_line = next(line for line in dry.stdout.splitlines() if "-m pytest" in line)
    assert "-n auto" in pytest_line and '-m "not slow"' in pytest_line, pytest_line


def _slow(module, name: str) -> bool:
    module_marks = getattr(module, "pytestmark", [])
    marks = [*(module_marks if isinstance(module_marks, list) else [module_marks]),
             *getattr(getattr(module, name), "pytestmark", [])]
    return any(mark.name == "slow" for mark in marks)


def test_the_building_tests_are_left_out_of_the_quick_check():
    import test_docs_site
    import test_install
    import test_slurm

    for module in (test_install, test_slurm):
        tests = [name for name in dir(module) if name.startswith("test_")]
        assert tests and all(_slow(module, name) for name in tests), module.__name__
    # the docs site's checks that build it are left out, those that need no build stay in
    assert not _slow(test_docs_site, "test_the_markdown_pages_put_a_blank_line_before_every_list")
    for name in ("test_home_page_renders", "test_config_reference_is_generated_at_build_time",
                 "test_every_page_renders_its_lists_placeholders_tables_and_keys"):
        assert _slow(test_docs_site, name), name
