"""gbml-compare and its Python form: several configs side by side on the same tasks and seeds,
above the launchers (`gbml_ext.launch`) and the runner (`gbml_ext.runner`).

    gbml-compare maml.toml fomaml.toml --seeds 0 1 2 --out runs/cmp train.iterations=500

`comparison`: run a plan and write its table (`compare`, `collect_results`,
`write_comparison`); `command`: the command line (`main`).

Example:
    >>> runs = compare(["a.toml", "b.toml"], seeds=[0, 1], out="runs/cmp")  # doctest: +SKIP
"""
from .command import main
from .comparison import (
    COMPARE_FILES,
    collect_results,
    compare,
    move_comparison_aside,
    run_in_process,
    write_comparison,
)

__all__ = ["COMPARE_FILES", "collect_results", "compare", "main", "move_comparison_aside",
           "run_in_process", "write_comparison"]
