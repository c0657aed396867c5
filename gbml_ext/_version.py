"""The package version, written once: `gbml_ext.__version__` imports it and setup.py reads it
with a regular expression (so building the package never imports it)."""

__version__ = "0.2.0"
