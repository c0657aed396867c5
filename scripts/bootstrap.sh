#!/usr/bin/env bash
# Sets up .venv from scratch on a machine that has only Python 3.11+ and pip.
# A second run checks a stamp and returns in about a second: nothing is rebuilt.
#
# Why each step is here:
# - torch and torchvision are pinned together: any other spec makes pip fetch
#   several GB, and an unpinned torchvision breaks against a different torch.
# - learn2learn 0.2.0 ships only an sdist whose generated C predates Python 3.11
#   (upstream issue #413): we regenerate the C with a current Cython and install
#   that tree with --no-build-isolation --no-deps. Its declared dependencies
#   (gsutil, qpth, cvxpy) are not needed to import it, and qpth pins numpy<2.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_SPEC="torch==2.14.1 torchvision==0.29.1"
L2L_VERSION=0.2.0
STAMP="$VENV/.gbml_ext-setup"
stamp_key() { cat scripts/bootstrap.sh setup.py | sha256sum | cut -d' ' -f1; }

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(stamp_key)" ] && [ -x "$VENV/bin/python" ]; then
  exit 0
fi

log() { printf '[bootstrap] %s\n' "$*"; }
PIP() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@" 2>&1 | grep -v "is ignored: it is neither" || true; }
has() { "$VENV/bin/python" -c "$1" >/dev/null 2>&1; }

if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi

if ! has "import torch, torchvision; assert torch.__version__.startswith('2.14.1') and torchvision.__version__.startswith('0.29.1')"; then
  log "installing $TORCH_SPEC"
  PIP install $TORCH_SPEC
fi

log "installing learn2learn's import-time dependencies and the build tools"
PIP install "cython>=3" "numpy>=1.24" scipy gym tqdm requests "setuptools>=61" wheel

if ! has "import learn2learn; assert learn2learn.__version__ == '$L2L_VERSION'"; then
  log "building learn2learn $L2L_VERSION from its sdist with regenerated C sources"
  work=$(mktemp -d)
  PIP download --no-deps --no-binary learn2learn --no-build-isolation "learn2learn==$L2L_VERSION" -d "$work"
  tar xzf "$work/learn2learn-$L2L_VERSION.tar.gz" -C "$work"
  src="$work/learn2learn-$L2L_VERSION"
  for pyx in "$src"/learn2learn/data/*.pyx; do "$VENV/bin/cython" -3 "$pyx"; done
  PIP install --no-build-isolation --no-deps "$src"
  rm -rf "$work"
  has "import learn2learn" || { echo "learn2learn failed to import after the build" >&2; exit 1; }
fi

log "installing gbml_ext (editable, with test extras)"
# learn2learn is already installed, so the requirement is satisfied and pip does not rebuild it.
PIP install --no-build-isolation -e ".[test]"
has "import gbml_ext" || { echo "gbml_ext failed to import" >&2; exit 1; }

stamp_key > "$STAMP"
log "done"
