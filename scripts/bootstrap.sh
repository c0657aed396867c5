#!/usr/bin/env bash
# Sets up .venv from scratch on a machine that has only Python 3.11+ and pip.
# A second run checks a stamp and returns in about a second: nothing is rebuilt.
#
# Why each step is here:
# - torch and torchvision are pinned together in requirements/torch.txt (setup.py reads the
#   same file): any other spec makes pip fetch several GB, and an unpinned torchvision breaks
#   against a different torch.
# - learn2learn 0.2.0 ships only an sdist whose generated C predates Python 3.11:
#   scripts/build_learn2learn.sh (also used by `make dist`) regenerates the C with a current
#   Cython and builds a wheel, installed here with --no-deps. Its declared dependencies
#   (gsutil, qpth) are not needed to import it, and qpth pins numpy<2.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_REQUIREMENTS=requirements/torch.txt
L2L_VERSION=0.2.0
STAMP="$VENV/.gbml_ext-setup"
# Everything that decides what gets installed: a change to any of these re-runs the setup.
STAMP_FILES=(scripts/bootstrap.sh scripts/build_learn2learn.sh setup.py pyproject.toml "$TORCH_REQUIREMENTS" gbml_ext/_version.py)
stamp_key() { cat "${STAMP_FILES[@]}" | sha256sum | cut -d' ' -f1; }

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(stamp_key)" ] && [ -x "$VENV/bin/python" ]; then
  exit 0
fi

log() { printf '[bootstrap] %s\n' "$*"; }
# The requirements in $TORCH_REQUIREMENTS (comments and blank lines dropped), and the version
# it pins for one package (`pinned torch` -> 2.14.1).
TORCH_SPEC=$(sed -e 's/#.*//' "$TORCH_REQUIREMENTS" | xargs)
pinned() { sed -n -e 's/#.*//' -e "s/^[[:space:]]*$1[[:space:]]*==[[:space:]]*\([^[:space:]]*\).*/\1/p" "$TORCH_REQUIREMENTS"; }
TORCH_VERSION=$(pinned torch)
TORCHVISION_VERSION=$(pinned torchvision)
if [ -z "$TORCH_VERSION" ] || [ -z "$TORCHVISION_VERSION" ]; then
  echo "$TORCH_REQUIREMENTS must pin torch==X and torchvision==Y" >&2
  exit 1
fi
PIP() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@" 2>&1 | grep -v "is ignored: it is neither" || true; }
has() { "$VENV/bin/python" -c "$1" >/dev/null 2>&1; }

if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi

if ! has "import torch, torchvision; assert torch.__version__.startswith('$TORCH_VERSION') and torchvision.__version__.startswith('$TORCHVISION_VERSION')"; then
  log "installing $TORCH_SPEC"
  PIP install $TORCH_SPEC
fi

log "installing learn2learn's import-time dependencies and the build tools"
PIP install "cython>=3" "numpy>=1.24" scipy gym tqdm requests "setuptools>=64" wheel

if ! has "import learn2learn; assert learn2learn.__version__ == '$L2L_VERSION'"; then
  log "building learn2learn $L2L_VERSION from its sdist with regenerated C sources"
  work=$(mktemp -d)
  wheel=$(bash scripts/build_learn2learn.sh "$VENV/bin/python" "$work" | tail -n1)
  PIP install --no-deps "$wheel"
  rm -rf "$work"
  has "import learn2learn" || { echo "learn2learn failed to import after the build" >&2; exit 1; }
fi

log "installing gbml_ext (editable, with the dev, docs, cluster, tune and logging extras)"
# learn2learn is already installed, so the requirement is satisfied and pip does not rebuild it;
# the exact torch pins installed above satisfy setup.py's ranges, so pip keeps them.
PIP install --no-build-isolation -e ".[dev,docs,cluster,tune,tensorboard,mlflow,wandb]"
has "import gbml_ext" || { echo "gbml_ext failed to import" >&2; exit 1; }

stamp_key > "$STAMP"
log "done"
