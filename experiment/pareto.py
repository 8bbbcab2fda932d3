"""Pareto figures for papers: the final dev metric of every run against its sparsity and its MACs kept, one
point per setting (mean and standard deviation over seeds), train.py runs and prune.py results in one figure.

A train.py run is a `results_<method>_<task>/metadata_*.json` that completed, anywhere under the results
folder (one folder per run, as a bench writes them, or all in one). Its label is the method, plus its
granularity when it removes units and `+ KD` with a teacher; its setting is its target (`end_sparsity`,
gumbel's and soft movement's `target_sparsity`; soft movement without one: its `soft_movement_lambda`). A
prune.py result is any `metrics.json` under the results folder for the task; its label is the method
(`fisher`, `kprune`), its setting the constraint, and it has MACs kept but no weight sparsity. Runs that differ
only by seed are one point.
"""

import glob
import json
import os

import numpy as np

from gated_bert.vocabulary import SCHEDULED_METHODS

POINT_COLUMNS = ("label", "method", "setting", "runs", "seeds", "metric_mean", "metric_std", "sparsity_mean",
                 "sparsity_std", "macs_kept_mean", "macs_kept_std")
MARKERS = {"baseline": "*", "magnitude": "o", "movement": "s", "spt": "^", "soft_movement": "D", "gumbel": "v",
           "fisher": "P", "kprune": "X"}


def _setting(method, config):
    if method in SCHEDULED_METHODS:
        return config.get("end_sparsity")
    if method == "soft_movement" and config.get("target_sparsity") is None:
        return config.get("soft_movement_lambda")
    return config.get("target_sparsity") if method in ("gumbel", "soft_movement") else None


def train_points(results_dir, task):
    """One point per completed train.py run of `task` anywhere under `results_dir`."""
    points = []
    found = glob.glob(os.path.join(results_dir, "**", f"results_*_{task}", "metadata_*.json"), recursive=True)
    for path in sorted(found):
        with open(path, encoding="utf-8") as handle:
            meta = json.load(handle)
        if meta.get("status") != "completed":
            continue
        config, final, method = meta.get("config") or {}, meta.get("final") or {}, meta["method"]
        label = method
        if config.get("pruning_granularity", "weight") != "weight":
            label += f" ({config['pruning_granularity']})"
        if config.get("teacher"):
            label += " + KD"
        points.append({"label": label, "method": method, "setting": _setting(method, config),
                       "seed": config.get("seed"), "primary_metric": meta["primary_metric"],
                       "metric": final.get(meta["primary_metric"]), "sparsity": final.get("global_sparsity"),
                       "macs_kept": final.get("macs_kept"), "dense": None})
    return points


def prune_points(results_dir, task):
    """One point per prune.py `metrics.json` of `task` anywhere under `results_dir`."""
    points = []
    for path in sorted(glob.glob(os.path.join(results_dir, "**", "metrics.json"), recursive=True)):
        with open(path, encoding="utf-8") as handle:
            metrics = json.load(handle)
        if metrics.get("task") != task or "dev" not in metrics or "macs" not in metrics:
            continue
        primary, scores = metrics["primary_metric"], metrics["dev"]
        points.append({"label": metrics["method"], "method": metrics["method"], "setting": metrics["constraint"],
                       "seed": (metrics.get("args") or {}).get("seed"), "primary_metric": primary,
                       "metric": scores[metrics["final"]][primary], "sparsity": None,
                       "macs_kept": metrics["macs"]["kept_fraction"], "dense": scores["dense"][primary]})
    return points


def _mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def group_points(points):
    """Rows of `POINT_COLUMNS`: the points that share label and setting, averaged (std over seeds, ddof 1)."""
    groups = {}
    for point in points:
        groups.setdefault((point["label"], point["setting"]), []).append(point)
    rows = []
    for (label, setting), members in sorted(groups.items(), key=lambda item: (item[0][0], str(item[0][1]))):
        row = {"label": label, "method": members[0]["method"], "setting": setting, "runs": len(members),
               "seeds": " ".join(str(m["seed"]) for m in members)}
        for name in ("metric", "sparsity", "macs_kept"):
            row[f"{name}_mean"], row[f"{name}_std"] = _mean_std([m[name] for m in members])
        rows.append(row)
    return rows


def markdown_table(rows, metric):
    """`group_points` rows as a Markdown table: mean ± standard deviation over each setting's seeds."""

    def cell(row, name, scale=1.0, digits=4):
        mean, std = row[f"{name}_mean"], row[f"{name}_std"]
        return "-" if mean is None else f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}"

    lines = [f"| method | setting | runs | seeds | final {metric} | sparsity | MACs kept |",
             "| --- | --- | ---: | --- | ---: | ---: | ---: |"]
    for row in rows:
        lines.append(f"| {row['label']} | {row['setting']} | {row['runs']} | {row['seeds']} | {cell(row, 'metric')} | "
                     f"{cell(row, 'sparsity')} | {cell(row, 'macs_kept')} |")
    return "\n".join(lines) + "\n"


def dense_reference(points):
    """The dense model's metric: the mean over baseline runs, else over prune.py's dense scores (None: neither)."""
    baseline = [p["metric"] for p in points if p["label"] == "baseline"]
    dense = baseline or [p["dense"] for p in points if p["dense"] is not None]
    return float(np.mean(dense)) if dense else None


def pareto_figure(rows, dense, metric):
    """The figure: metric against weight sparsity (runs that have it) and against MACs kept (runs that have it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("sparsity", "sparsity of prunable weights (%)"), ("macs_kept", "MACs kept (%)")]
    panels = [(key, title) for key, title in panels
              if any(row[f"{key}_mean"] is not None and row["label"] != "baseline" for row in rows)]
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(3.5 * max(len(panels), 1), 2.8), squeeze=False)
    labels = sorted({row["label"] for row in rows if row["label"] != "baseline"})
    palette = [f"C{index}" for index in range(10)] if len(labels) <= 10 else list(plt.get_cmap("tab20").colors)
    colours = {label: palette[index % len(palette)] for index, label in enumerate(labels)}  # distinct up to 20
    for axis, (key, title) in zip(axes[0], panels, strict=False):
        for label in labels:
            mine = [row for row in rows if row["label"] == label and row[f"{key}_mean"] is not None]
            if not mine:
                continue
            axis.errorbar([100 * row[f"{key}_mean"] for row in mine], [row["metric_mean"] for row in mine],
                          xerr=[100 * row[f"{key}_std"] for row in mine], yerr=[row["metric_std"] for row in mine],
                          fmt=MARKERS.get(mine[0]["method"], "o"), color=colours[label], capsize=2, label=label,
                          linestyle="none")
        if dense is not None:
            axis.axhline(dense, color="black", linestyle=":", label=f"dense ({dense:.3f})")
        axis.set(xlabel=title, ylabel=f"dev {metric}")
        axis.grid(alpha=0.3)
    handles, names = axes[0][0].get_legend_handles_labels()
    for axis in axes[0][1:]:
        for handle, name in zip(*axis.get_legend_handles_labels(), strict=True):
            if name not in names:
                handles.append(handle)
                names.append(name)
    fig.legend(handles, names, loc="upper center", bbox_to_anchor=(0.5, 0.02), ncol=3, frameon=False)
    fig.tight_layout()
    return fig
