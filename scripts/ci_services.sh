#!/usr/bin/env bash
# What the tests need outside .venv, installed (or started) before `make test`; .ci/run calls
# it, and it works the same by hand. Each need is one function, called at the bottom: add a
# function and its call for a new one. Idempotent: what is already there is left alone.
# The Python packages the tests need come with .venv (the dev, docs and cluster extras).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[ci-services] %s\n' "$*"; }
fail() { echo "ci-services: $*" >&2; exit 1; }
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo

apt_install() {
  command -v apt-get >/dev/null 2>&1 || fail "no apt-get: install $* with this system's tools"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >/dev/null
  $SUDO apt-get install -y -qq "$@" >/dev/null
}

# tests/test_docs_site.py: the site in a real headless browser.
browser() {
  if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    return 0
  fi
  log "installing chromium and chromium-driver"
  apt_install chromium chromium-driver
  command -v chromedriver >/dev/null 2>&1 || fail "chromedriver is still missing after the install"
}

# tests/test_slurm.py: the launcher on a real one-node Slurm cluster.
slurm() {
  bash scripts/slurm_local.sh start >/dev/null || fail "the one-node Slurm cluster did not start (scripts/slurm_local.sh status)"
}

browser
slurm
