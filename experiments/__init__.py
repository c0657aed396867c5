"""Command-line entry points over gbml_ext.runner: `python -m experiments.<name>`."""
