# The two commands in README.md: `make demo` (the main job) and `make test`.
# Both set up .venv from scratch on first use (scripts/bootstrap.sh).
PY := .venv/bin/python
ARGS ?=

.PHONY: setup test demo bench clean
setup:
	@bash scripts/bootstrap.sh

test: setup
	$(PY) -m pytest -q $(ARGS)

demo: setup
	$(PY) -m experiments.synthetic --resume $(ARGS)

bench: setup
	$(PY) -m benchmarks.inner_loop $(ARGS)

clean:
	rm -rf .venv runs .pytest_cache
