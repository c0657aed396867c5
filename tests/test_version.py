"""One version: gbml_ext/_version.py, the wheel's metadata and CHANGELOG.md's latest release."""
import re
import subprocess
import sys
from pathlib import Path

import gbml_ext
from gbml_ext._version import __version__

REPO = Path(__file__).resolve().parents[1]
RELEASE = re.compile(r"^## \[(\d+\.\d+\.\d+)\] - (\d{4}-\d{2}-\d{2})$", flags=re.M)


def test_wheel_metadata_has_the_package_version(tmp_path):
    # The PEP 517 hook that `make dist` (python -m build) calls for the wheel's METADATA.
    code = ("import sys; from setuptools import build_meta; "
            "print(build_meta.prepare_metadata_for_build_wheel(sys.argv[1]))")
    made = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    metadata = (tmp_path / made.stdout.strip().splitlines()[-1] / "METADATA").read_text()
    assert re.search(r"^Version: (.+)$", metadata, flags=re.M).group(1) == __version__
    assert gbml_ext.__version__ == __version__


def test_changelog_latest_release_is_the_package_version():
    text = (REPO / "CHANGELOG.md").read_text()
    releases = RELEASE.findall(text)
    assert releases, "CHANGELOG.md has no '## [X.Y.Z] - YYYY-MM-DD' heading"
    assert text.index("## [Unreleased]") < text.index(f"## [{releases[0][0]}]")
    assert releases[0][0] == __version__, (
        f"CHANGELOG.md's latest release is {releases[0][0]}, the package is {__version__}: "
        "add the release to CHANGELOG.md or fix gbml_ext/_version.py")
    dates = [date for _, date in releases]
    assert dates == sorted(dates, reverse=True), "releases must be listed newest first"
