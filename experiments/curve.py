"""The "when MAML cannot adapt fast" curve: Omniglot 5w1s accuracy against backbone depth and
width, for MAML, MAML+LinNet, MAML-KFO, ANIL, ANIL+LinNet and ANIL-KFO (Arnold, Iqbal & Sha,
AISTATS 2021), plus the LinNet study at one narrow point. LinNet rows come twice: with
PyTorch's init (`*_linnet`) and with orthogonal factors (`*_linnet_orth`, the study's winner).

    python -m experiments.curve run --seeds 0 1 --jobs 2   # resumable: run again to go on
    python -m experiments.curve run --status               # done / running / failed, per run
    python -m experiments.curve linnet --seeds 0 1         # LinNet variants (validation)
    python -m experiments.curve report                     # table + figure, from the folders
    python -m experiments.curve restore   # put the committed finished runs back into runs/curve

On a cluster: `run --launcher slurm --slurm partition=... gpus_per_node=1` (docs/cluster.md).

Every point uses the same budget (experiments/configs/omniglot/5w1s-curve/base.toml); only
`model.options={layers=L, hidden=H}` changes. Runs go to `runs/curve/<point>/<row>/seed<N>`,
each in its own process, and a finished run of the same config is reused, so `run` can be
stopped at any time (Ctrl-C: every run checkpoints) and started again. The finished runs'
results (not their checkpoints) are committed under experiments/results/curve; `restore`
copies them back, so a fresh clone goes on from there.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from experiments.sweep import (
    Entry,
    data_root,
    launch_sweep,
    restore,
    seed_folders,
    seed_results,
    sweep_arguments,
    sweep_plan,
)
from gbml_ext.launch import RunSpec
from gbml_ext.runner.plots import pyplot, save_figure
from gbml_ext.runner.report import format_metric, markdown_table
from gbml_ext.runner.summaries import pooled_summary

CONFIGS = Path(__file__).resolve().parent / "configs" / "omniglot" / "5w1s-curve"
ROWS = ["maml", "maml_linnet", "maml_linnet_orth", "maml_kfo", "anil", "anil_linnet",
        "anil_linnet_orth", "anil_kfo"]
DEPTHS = [1, 2, 3, 4]            # at 64 filters
WIDTHS = [4, 8, 16, 32, 64]      # at 4 layers
ARCHIVE = Path(__file__).resolve().parent / "results" / "curve"
# The LinNet study: MAML at 8 filters x 4 layers, one change at a time from the curve's LinNet
# (depth 3, width = features, PyTorch init, every layer adapts). Chosen on validation tasks.
LINNET_POINT = (4, 8)
LINNET_VARIANTS = {
    "plain head (MAML)": [],
    "depth 3, default init": ["model.linnet_depth=3"],
    "depth 2, default init": ["model.linnet_depth=2"],
    "depth 3, width 4x": ["model.linnet_depth=3", "model.linnet_width=32"],
    "depth 3, orthogonal": ["model.linnet_depth=3", "model.linnet_init=orthogonal"],
    "depth 3, identity-like": ["model.linnet_depth=3", "model.linnet_init=identity"],
    "depth 2, identity-like": ["model.linnet_depth=2", "model.linnet_init=identity"],
    "depth 3, scaled": ["model.linnet_depth=3", "model.linnet_init=scaled"],
    "depth 3, identity-like, width 4x": ["model.linnet_depth=3", "model.linnet_init=identity",
                                         "model.linnet_width=32"],
    "depth 3, extra layers not adapted": ["model.linnet_depth=3",
                                          "model.linnet_adapt_hidden=false"],
    "depth 3, identity-like, not adapted": ["model.linnet_depth=3", "model.linnet_init=identity",
                                            "model.linnet_adapt_hidden=false"],
}


def points() -> List[Tuple[int, int]]:
    """(layers, filters) of every point, cheapest first, without duplicates."""
    grid = {(d, 64) for d in DEPTHS} | {(4, w) for w in WIDTHS}
    return sorted(grid, key=lambda p: (p[1] ** 2 * min(p[0], 2), p))


def point_name(layers: int, hidden: int) -> str:
    return f"L{layers}-H{hidden}"


def plan(seeds: Sequence[int], root: Path, out: Path) -> List[RunSpec]:
    """Every run of the curve: each seed, point (cheapest first) and row."""
    # One implementation for every point: the per-task engine (the batched path agrees to
    # float rounding, but its speed on a CPU depends on the model's size).
    common = [f"data.root='{data_root(root)}'", "algorithm.path=per-task"]
    return sweep_plan([
        Entry(CONFIGS / f"{row}.toml", seed,
              common + [f"model.options={{layers={layers}, hidden={hidden}}}"],
              out / point_name(layers, hidden))
        for seed in seeds for layers, hidden in points() for row in ROWS])


def linnet_plan(seeds: Sequence[int], root: Path, out: Path) -> List[RunSpec]:
    """The LinNet study: MAML at LINNET_POINT with each variant, scored on validation."""
    layers, hidden = LINNET_POINT
    common = [f"data.root='{data_root(root)}'", f"model.options={{layers={layers}, "
              f"hidden={hidden}}}", "evaluation.split=validation", "algorithm.path=per-task"]
    return sweep_plan([Entry(CONFIGS / "maml.toml", seed, common + overrides + [
        f"name='linnet-v{i}'"], out) for seed in seeds
        for i, overrides in enumerate(LINNET_VARIANTS.values())])


def collect(out: Path) -> Dict[str, Dict[Tuple[int, int], List[dict]]]:
    table: Dict[str, Dict[Tuple[int, int], List[dict]]] = {}
    for layers, hidden in points():
        for row in ROWS:
            results = seed_results(out / point_name(layers, hidden) / f"omniglot-5w1s-curve-{row}")
            if results:
                table.setdefault(row, {})[(layers, hidden)] = results
    return table


def report(out: Path) -> None:
    data = collect(out)
    if not data:
        sys.exit(f"curve: no finished runs under {out}; start them with `run`.")
    columns = points()
    header = ["row"] + [f"{point_name(*p)} ({len(data.get(ROWS[0], {}).get(p, []))})"
                        for p in columns]
    body = []
    for row in ROWS:
        cells = [row]
        for p in columns:
            results = data.get(row, {}).get(p)
            cells.append(format_metric(pooled_summary(results, "accuracy"), 100, 1) if results
                         else "–")
        body.append(cells)
    env = next(iter(next(iter(data.values())).values()))[0]["environment"]
    text = (markdown_table(header, body) +
            f"\nTest accuracy % (mean ± 95% CI over all test tasks of all seeds; seeds per point "
            f"in the header). L = conv layers, H = filters. {env['hardware']}, torch "
            f"{env['torch']}.\n")
    (out / "curve.md").write_text(text)
    summary = {row: {point_name(*p): {**(pooled_summary(results, "accuracy") or {}),
                                     "seeds": sorted(r["seed"] for r in results)}
                     for p, results in points_.items()} for row, points_ in data.items()}
    (out / "curve.json").write_text(json.dumps(summary, indent=1))
    _figure(data, out / "curve.png")
    print(text + f"\nwrote {out}/curve.md, curve.png")
    study = _linnet_table(out / "linnet")
    if study:
        (out / "linnet.md").write_text(study)
        print(study + f"\nwrote {out}/linnet.md")


def _figure(data: Dict[str, Dict[Tuple[int, int], List[dict]]], path: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.3), sharey=True)
    for ax, (axis, values, fixed) in zip(axes, [("depth", DEPTHS, 64), ("width", WIDTHS, 4)],
                                         strict=True):
        for row in ROWS:
            xs, means, cis = [], [], []
            for v in values:
                p = (v, fixed) if axis == "depth" else (fixed, v)
                results = data.get(row, {}).get(p)
                s = pooled_summary(results, "accuracy") if results else None
                if s is not None:
                    xs.append(v)
                    means.append(100 * s["mean"])
                    cis.append(100 * s["ci95"])
            if xs:
                style = "--" if row.startswith("anil") else "-"
                line, = ax.plot(xs, means, style, marker="o", label=row)
                ax.fill_between(xs, [m - c for m, c in zip(means, cis, strict=True)],
                                [m + c for m, c in zip(means, cis, strict=True)], alpha=0.2,
                                color=line.get_color())
        ax.set_xlabel("conv layers (64 filters)" if axis == "depth" else "filters (4 layers)")
        if axis == "width":
            ax.set_xscale("log", base=2)
        ax.set_xticks(values, [str(v) for v in values])
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("Omniglot 5w1s test accuracy % (95% CI)")
    axes[1].legend(fontsize="small")
    fig.suptitle("Shallower or narrower backbones: who still adapts in one step?")
    save_figure(fig, path)


def _test_results(folder: Path) -> List[dict]:
    """The variant's test-split re-evaluations (`gbml-eval RUN --split test`), if made."""
    return [json.loads(p.read_text()) for seed in seed_folders(folder)
            for p in sorted(seed.glob("eval-test-*.json"))]


def _linnet_table(folder: Path) -> Optional[str]:
    """Validation accuracy of every variant (what a choice may use), and test accuracy where
    a variant was re-evaluated on the test split after the choice."""
    body = []
    for i, label in enumerate(LINNET_VARIANTS):
        results = seed_results(folder / f"linnet-v{i}")
        if not results:
            continue
        tested = _test_results(folder / f"linnet-v{i}")
        body.append([label, len(results),
                     format_metric(pooled_summary(results, "accuracy"), 100, 2),
                     format_metric(pooled_summary(tested, "accuracy"), 100, 2) if tested
                     else "–"])
    if not body:
        return None
    return markdown_table(["LinNet variant (MAML, L4-H8)", "seeds", "validation accuracy %",
                           "test accuracy %"], body)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.curve",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("run", "linnet", "report", "restore"))
    sweep_arguments(parser, "runs/curve")
    args = parser.parse_args(argv)
    if args.command in ("run", "linnet"):
        runs = (plan(args.seeds, args.root, args.out) if args.command == "run"
                else linnet_plan(args.seeds, args.root, args.out / "linnet"))
        code = launch_sweep(runs, args, "curve")
        if code or args.status:
            return code
    elif args.command == "restore":
        restore(args.out, ARCHIVE, "curve")
    report(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
