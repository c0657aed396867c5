"""Benchmarks for gbml_ext; run them as modules, e.g. `python -m benchmarks.inner_loop`."""

__all__ = []
