#!/usr/bin/env bash
# `make dist`: everything `pip install --find-links dist gbml_ext` needs beyond PyPI, in OUT_DIR
# (default dist/):
#   gbml_ext-<version>-py3-none-any.whl and gbml_ext-<version>.tar.gz
#   learn2learn-0.2.0-<python>-<platform>.whl, built by scripts/build_learn2learn.sh for this
#   Python and platform (kept when it is newer than that script).
#
#   scripts/dist.sh [OUT_DIR]        PYTHON=... picks the interpreter (default: the active
#                                    one, python3 on PATH)
#
# It builds with that interpreter's own tools and never creates an environment: it needs
# build, Cython 3, setuptools >= 64 and wheel there (`pip install build 'cython>=3' wheel`),
# a C compiler, Python's headers, and PyPI for learn2learn's sdist.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-$(command -v python3 || command -v python || echo python3)}
OUT=${1:-dist}
fail() { echo "dist: $*" >&2; exit 1; }

command -v "$PYTHON" >/dev/null 2>&1 \
  || fail "no Python at '$PYTHON': activate an environment or set PYTHON=..."
"$PYTHON" -c "import build" >/dev/null 2>&1 \
  || fail "the 'build' package is missing: $PYTHON -m pip install build"
mkdir -p "$OUT"

tag=$("$PYTHON" -c "import sys; print(f'cp{sys.version_info[0]}{sys.version_info[1]}')")
l2l=$(ls "$OUT"/learn2learn-0.2.0-"$tag"-*.whl 2>/dev/null | head -n1 || true)
if [ -n "$l2l" ] && [ "$l2l" -nt scripts/build_learn2learn.sh ]; then
  echo "dist: keeping $l2l"
else
  echo "dist: building learn2learn 0.2.0 ($tag)"
  bash scripts/build_learn2learn.sh "$PYTHON" "$OUT" >/dev/null
fi

echo "dist: building gbml_ext"
rm -f "$OUT"/gbml_ext-*.whl "$OUT"/gbml_ext-*.tar.gz
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! "$PYTHON" -m build --no-isolation --sdist --wheel --outdir "$OUT" . >"$log" 2>&1; then
  tail -n 20 "$log" >&2
  fail "building gbml_ext failed (output above)"
fi
ls -1 "$OUT"/gbml_ext-* "$OUT"/learn2learn-*
