# The two commands in README.md: `make demo` (the main job) and `make test`.
# Both set up .venv from scratch on first use (scripts/bootstrap.sh).
PY := .venv/bin/python
ARGS ?=

.PHONY: setup test test-fast test-all lint demo bench clean dist docs docs-serve
setup:
	@bash scripts/bootstrap.sh

# Every test, the slow ones included, spread over the CPUs (pytest-xdist). test-fast, a quick
# check while developing, also runs over all CPUs and leaves out the tests marked slow (those
# that train for more than a couple of seconds, the install and the docs-site tests, Slurm).
test: setup
	$(PY) -m pytest -q -n auto $(ARGS)

test-fast: setup
	$(PY) -m pytest -q -n auto -m "not slow" $(ARGS)

test-all: test

# ruff and mypy, configured in pyproject.toml.
lint: setup
	$(PY) -m ruff check .
	$(PY) -m mypy

demo: setup
	$(PY) -m experiments.synthetic --resume $(ARGS)

bench: setup
	$(PY) -m benchmarks.inner_loop $(ARGS)

clean:
	rm -rf .venv runs .pytest_cache .ruff_cache .mypy_cache site dist

# Wheels for `pip install --find-links dist gbml_ext` into another environment: gbml_ext's
# wheel and sdist, and a learn2learn 0.2.0 wheel for that environment's Python
# (scripts/dist.sh). Built with the active Python's build tools (python3 on PATH, or
# PYTHON=...); it never sets up .venv.
dist:
	@bash scripts/dist.sh dist

# The documentation site (mkdocs.yml, docs/) into site/; docs-serve serves it with reload.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

docs-serve: setup
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs serve

# GPU validation. `make wheelhouse` (with a network) writes build/wheelhouse: learn2learn's
# regenerated source and a pure-Python fallback, py3.12 wheels, the Omniglot archive.
# `make gpu-check` (on the GPU machine: python3 with torch, no network; carry build/wheelhouse)
# installs from it and writes $(GPU_OUT)/gpu_check.{md,json} and the steps' reports, in at most
# 4 minutes; `make gpu-check-dry` runs the same steps tiny on the CPU, installing nothing.
# `make gpu-headline MINUTES=4` trains Omniglot 5w1s MAML for that many minutes and evaluates
# 600 test tasks ($(HEADLINE_OUT)/headline.{md,json}).
GPU_OUT ?= build/gpu-check
HEADLINE_OUT ?= build/gpu-headline
MINUTES ?= 4
.PHONY: wheelhouse gpu-check gpu-check-dry gpu-headline
wheelhouse: setup
	$(PY) scripts/build_wheelhouse.py --out build/wheelhouse $(ARGS)

gpu-check:
	python3 scripts/gpu_check.py --out $(GPU_OUT) $(ARGS)

gpu-check-dry: setup
	$(PY) scripts/gpu_check.py --device cpu --dry-run --out $(GPU_OUT) $(ARGS)

gpu-headline:
	python3 scripts/gpu_headline.py --minutes $(MINUTES) --out $(HEADLINE_OUT) $(ARGS)
