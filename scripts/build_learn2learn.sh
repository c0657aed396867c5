#!/usr/bin/env bash
# Builds a learn2learn 0.2.0 wheel for this Python and platform into OUT_DIR.
#
#   scripts/build_learn2learn.sh PYTHON OUT_DIR
#
# learn2learn 0.2.0 ships only an sdist whose generated C predates Python 3.11 (it includes
# longintrepr.h, which 3.11 moved), so `pip install learn2learn` fails to build there. This
# script downloads that sdist, regenerates the C of its three Cython modules with Cython 3,
# and builds a wheel from the result. scripts/bootstrap.sh installs that wheel into .venv and
# `make dist` puts it in dist/.
#
# The wheel declares only what learn2learn needs to import (numpy, gym, torch, torchvision,
# scipy, requests, tqdm): the sdist also lists gsutil and qpth, used by a few optional
# modules only, and qpth pins numpy<2.
#
# PYTHON's environment must hold Cython 3, setuptools and wheel; a C compiler and Python's
# headers must be present. A missing one is a one-line error and exit status 1.
set -euo pipefail

L2L_VERSION=0.2.0
if [ "$#" -ne 2 ]; then
  echo "usage: scripts/build_learn2learn.sh PYTHON OUT_DIR" >&2
  exit 2
fi
PYTHON=$1
OUT=$2
fail() { echo "build_learn2learn: $*" >&2; exit 1; }

command -v "$PYTHON" >/dev/null 2>&1 || fail "no Python at '$PYTHON'"
command -v "${CC:-cc}" >/dev/null 2>&1 \
  || fail "no C compiler ('${CC:-cc}' not found): install one (Debian: apt-get install gcc)"
"$PYTHON" -c "import Cython, sys; sys.exit(int(Cython.__version__.split('.')[0]) < 3)" \
  >/dev/null 2>&1 || fail "Cython 3 is missing: $PYTHON -m pip install 'cython>=3'"
"$PYTHON" -c "import setuptools, wheel" >/dev/null 2>&1 \
  || fail "setuptools or wheel is missing: $PYTHON -m pip install 'setuptools>=64' wheel"
"$PYTHON" -c "import sysconfig, os, sys; \
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h')))" \
  || fail "Python's headers (Python.h) are missing: install the python3-dev package"

PIP() { "$PYTHON" -m pip --disable-pip-version-check -q "$@" 2>&1 \
          | grep -v "is ignored: it is neither" || true; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
PIP download --no-deps --no-binary learn2learn --no-build-isolation \
  "learn2learn==$L2L_VERSION" -d "$work"
[ -f "$work/learn2learn-$L2L_VERSION.tar.gz" ] \
  || fail "could not download the learn2learn $L2L_VERSION sdist (is PyPI reachable?)"
tar xzf "$work/learn2learn-$L2L_VERSION.tar.gz" -C "$work"
src="$work/learn2learn-$L2L_VERSION"
for pyx in "$src"/learn2learn/data/*.pyx; do
  "$PYTHON" -m cython -3 "$pyx" >/dev/null
done
# Keep only the import-time requirements (see above).
sed -i -e "/'gsutil',/d" -e "/'qpth>=/d" "$src/setup.py"
mkdir -p "$OUT"
rm -f "$OUT"/learn2learn-"$L2L_VERSION"-*.whl
PIP wheel --no-build-isolation --no-deps -w "$OUT" "$src"
wheel=$(ls "$OUT"/learn2learn-"$L2L_VERSION"-*.whl 2>/dev/null | head -n1)
[ -n "$wheel" ] || fail "the learn2learn wheel was not built"
echo "$wheel"
