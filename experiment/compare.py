"""Compare methods run on one task: figures for papers and a summary table.

    python plot_comparison.py --results_dir . --task sst2
    python plot_comparison.py --task sst2 --all --formats png pdf svg

Reads every `results_<method>_<task>/` under `--results_dir`, at any depth (the
latest run of each method in each folder, or every run with `--all`; a grid of
run_experiments.sh has a folder per job) and writes, into `--output_dir`:
- `pruning_methods_comparison_dual_axis.<fmt>`: the dev metric per method
  and epoch (solid, left axis) with its measured sparsity (dashed, right axis);
- `accuracy_vs_sparsity.<fmt>`: the dev metric against sparsity, one curve
  per method, the baseline's best epoch as a reference line;
- `comparison_summary.csv` and `comparison_summary.md`: method, run (its
  folder and timestamp), best and final dev metric, final sparsity,
  parameters remaining, wall time;
- with `--pareto`, `pareto_<task>.<fmt>`, `pareto_<task>.csv` and `.md`: the final dev
  metric of every completed run against its sparsity and its MACs kept, one
  point per setting (mean and standard deviation over seeds), train.py runs
  and prune.py results (`metrics.json` anywhere under `--results_dir`) alike,
  the dense model as a reference line (`experiment/pareto.py`).
"""

import argparse
import glob
import json
import os
import sys

from gated_bert.cli import add_bool_flag
from gated_bert.files import atomic_path

SUMMARY_COLUMNS = ("method", "run", "status", "best_dev", "final_dev", "final_sparsity", "parameters_remaining",
                   "wall_seconds")


def run_status(meta):
    """A run's status for the summary: its metadata's, except that a run whose metadata still says `running`
    is `incomplete` (killed outright, or not finished yet: its finished epochs are what it has)."""
    status = meta.get("status") or "incomplete"
    return "incomplete" if status == "running" else status


def find_runs(results_dir, task, methods=None, every_run=False):
    """`[(metadata, csv rows)]`, sorted by method and folder: the latest run of each method in each folder
    (`results_<method>_<task>/` anywhere under `results_dir`: one folder for all methods, or one per grid job), or
    every run with `every_run`. Runs without a finished epoch are left out (with a note on stderr): they have
    nothing to compare."""
    import pandas as pd

    runs = {}
    pattern = os.path.join(results_dir, "**", f"results_*_{task}", "metadata_*.json")
    for path in sorted(glob.glob(pattern, recursive=True)):
        with open(path, encoding="utf-8") as handle:
            meta = json.load(handle)
        if methods and meta["method"] not in methods:
            continue
        if not os.path.exists(meta["paths"]["csv"]):
            continue
        folder = os.path.relpath(os.path.dirname(os.path.dirname(path)), results_dir)
        meta["folder"] = "" if folder == "." else folder
        key = (meta["method"], meta["folder"]) + ((meta["timestamp"],) if every_run else ())
        if key not in runs or meta["timestamp"] > runs[key][0]["timestamp"]:
            runs[key] = (meta, pd.read_csv(meta["paths"]["csv"]))
    for key, (meta, rows) in list(runs.items()):
        if rows.empty:
            print(f"note: {meta['method']} run {meta['timestamp']} ({run_status(meta)}) has no finished epoch; left "
                  "out", file=sys.stderr)
            del runs[key]
    return [runs[key] for key in sorted(runs)]


def summary_row(meta, rows):
    """One summary-table row for a run (metric values from its metadata, as train.py chose them)."""
    metric = meta["primary_metric"]
    final = meta.get("final") or {}
    sparsity = float(final.get("global_sparsity", 0.0))
    model = meta["model"]
    trainable = model.get("trainable_parameters", model["parameters"])
    return {
        "method": meta["method"],
        "run": os.path.join(meta["folder"], meta["timestamp"]) if meta.get("folder") else meta["timestamp"],
        "status": run_status(meta),
        "best_dev": (meta.get("best") or {}).get(metric, float("nan")),
        "final_dev": final.get(metric, float("nan")),
        "final_sparsity": sparsity,
        "parameters_remaining": int(round(trainable - sparsity * model["prunable_weights"])),
        "wall_seconds": meta["timings"]["train_wall_seconds"],
    }


def markdown_table(summary, metric):
    header = (f"| method | run | status | best {metric} | final {metric} | final sparsity | parameters remaining | "
              "wall time |")
    lines = [header, "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for row in summary:
        minutes, seconds = divmod(int(round(row["wall_seconds"])), 60)
        lines.append(f"| {row['method']} | {row['run']} | {row['status']} | {row['best_dev']:.4f} | "
                     f"{row['final_dev']:.4f} | {row['final_sparsity']:.4f} | {row['parameters_remaining']:,} | "
                     f"{minutes}m{seconds:02d}s |")
    return "\n".join(lines) + "\n"


def _style():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 7,
                         "xtick.labelsize": 7, "ytick.labelsize": 7, "lines.linewidth": 1.2,
                         "lines.markersize": 3})
    return plt


def _save(fig, path_stem, formats):
    written = []
    for fmt in formats:
        path = f"{path_stem}.{fmt}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=300, bbox_inches="tight")
        written.append(path)
    return written


def _finish(plt, fig, axis, path_stem, formats):
    """Grid, the legend under the axes (so that it never hides a curve), then save in every format and close."""
    axis.grid(alpha=0.3)
    axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, frameon=False)
    try:
        return _save(fig, path_stem, formats)
    finally:
        plt.close(fig)


def _label(meta, every_run):
    """The method, plus its folder (a grid job's) and with `every_run` its timestamp, when there are several."""
    details = [detail for detail in (meta.get("folder"), every_run and meta["timestamp"][:15]) if detail]
    return f"{meta['method']} ({', '.join(details)})" if details else meta["method"]


def plot_dual_axis(runs, metric, path_stem, formats, every_run=False):
    """Dev metric per epoch (left axis) and measured sparsity (right axis), one colour and marker per run."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    from experiment.pareto import MARKERS

    plt = _style()
    fig, axis = plt.subplots(figsize=(3.5, 2.6))
    twin = axis.twinx()
    for index, (meta, rows) in enumerate(runs):
        colour, marker = f"C{index % 10}", MARKERS.get(meta["method"], "o")
        axis.plot(rows["epoch"], rows[f"dev_{metric}"], marker=marker, color=colour, label=_label(meta, every_run))
        twin.plot(rows["epoch"], 100 * rows["global_sparsity"], linestyle="--", marker=marker, markersize=2,
                  color=colour)
    # A legend entry for the dashed lines: they are the runs' sparsity, on the right axis.
    axis.add_line(Line2D([], [], color="grey", linestyle="--", label="sparsity (right axis)"))
    axis.set(xlabel="epoch", ylabel=f"dev {metric}")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    twin.set_ylabel("sparsity (%, dashed)")
    twin.set_ylim(-2, 102)
    return _finish(plt, fig, axis, path_stem, formats)


def plot_accuracy_vs_sparsity(runs, metric, path_stem, formats, every_run=False):
    """Dev metric against measured sparsity per run; the baseline's best epoch as a reference line."""
    plt = _style()
    fig, axis = plt.subplots(figsize=(3.5, 2.6))
    for index, (meta, rows) in enumerate(runs):
        if meta["method"] == "baseline":
            best = rows[f"dev_{metric}"].max()
            axis.axhline(best, color="black", linestyle=":", label=f"baseline best ({best:.3f})")
            continue
        axis.plot(100 * rows["global_sparsity"], rows[f"dev_{metric}"], marker="o", color=f"C{index % 10}",
                  label=_label(meta, every_run))
    axis.set(xlabel="sparsity of prunable weights (%)", ylabel=f"dev {metric}", xlim=(-2, 102))
    return _finish(plt, fig, axis, path_stem, formats)


def write_summary(summary, metric, output_dir):
    import pandas as pd

    csv_path = os.path.join(output_dir, "comparison_summary.csv")
    md_path = os.path.join(output_dir, "comparison_summary.md")
    with atomic_path(csv_path) as tmp:
        pd.DataFrame(summary, columns=list(SUMMARY_COLUMNS)).to_csv(tmp, index=False)
    with atomic_path(md_path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        handle.write(markdown_table(summary, metric))
    return [csv_path, md_path]


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--results_dir", default=".", help="folder holding results_<method>_<task>/ [.]")
    parser.add_argument("--task", default="sst2", help="GLUE task whose runs to compare [sst2]")
    parser.add_argument("--methods", nargs="+", help="only these methods [all found]")
    add_bool_flag(parser, "all", "every run, not only the latest per method")
    parser.add_argument("--formats", nargs="+", default=["png"], choices=("png", "pdf", "svg"),
                        help="figure formats [png]")
    parser.add_argument("--output_dir", help="where figures and tables go [results_dir]")
    add_bool_flag(parser, "pareto", "also write pareto_<task>.<fmt> and .csv: the final dev metric of every "
                  "completed run (train.py) and prune.py result (metrics.json under --results_dir) against its "
                  "sparsity and MACs kept, mean and std over seeds")
    return parser.parse_args(argv)


def write_pareto(results_dir, task, methods, output_dir, formats):
    """`pareto_<task>.csv` and the figure in every format; the paths written (empty without any point)."""
    import pandas as pd

    from experiment import pareto

    points = pareto.train_points(results_dir, task) + pareto.prune_points(results_dir, task)
    points = [point for point in points if not methods or point["method"] in methods]
    if not points:
        return []
    rows = pareto.group_points(points)
    metric = points[0]["primary_metric"].removeprefix("dev_")
    csv_path, md_path = (os.path.join(output_dir, f"pareto_{task}.{ext}") for ext in ("csv", "md"))
    with atomic_path(csv_path) as tmp:
        pd.DataFrame(rows, columns=list(pareto.POINT_COLUMNS)).to_csv(tmp, index=False)
    table = pareto.markdown_table(rows, metric)
    with atomic_path(md_path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        handle.write(table)
    print(table, end="")
    plt = _style()
    fig = pareto.pareto_figure(rows, pareto.dense_reference(points), metric)
    try:
        return [csv_path, md_path, *_save(fig, os.path.join(output_dir, f"pareto_{task}"), formats)]
    finally:
        plt.close(fig)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    runs = find_runs(args.results_dir, args.task, args.methods, args.all)
    output_dir = args.output_dir or args.results_dir
    written = []
    if runs:
        os.makedirs(output_dir, exist_ok=True)
        metric = runs[0][0]["primary_metric"].removeprefix("dev_")
        summary = [summary_row(meta, rows) for meta, rows in runs]
        written = [
            *plot_dual_axis(runs, metric, os.path.join(output_dir, "pruning_methods_comparison_dual_axis"),
                            args.formats, args.all),
            *plot_accuracy_vs_sparsity(runs, metric, os.path.join(output_dir, "accuracy_vs_sparsity"), args.formats,
                                       args.all),
            *write_summary(summary, metric, output_dir),
        ]
        print(markdown_table(summary, metric), end="")
    if args.pareto:
        os.makedirs(output_dir, exist_ok=True)
        written += write_pareto(args.results_dir, args.task, args.methods, output_dir, args.formats)
    if not written:
        print(f"error: no runs with a finished epoch in {args.results_dir}/results_*_{args.task}/ (metadata_*.json "
              f"with its CSV){' and no prune.py metrics.json for ' + args.task if args.pareto else ''}",
              file=sys.stderr)
        return 1
    print("wrote " + ", ".join(written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
