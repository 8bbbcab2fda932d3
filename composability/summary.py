"""The comparison a `compose.py run` ends with: per configuration, the composed model (module-level then
model-level fine-tuning) against its baseline (pruned directly, model-level fine-tuning alone), and the figures.

Times are training seconds (each epoch's time less its dev evaluation); "to reach" is the first epoch whose dev
metric is at least the baseline's final one, so steps and seconds are counted in whole epochs.
"""

import csv
import json
import os

from gated_bert.files import atomic_path

COLUMNS = ("configuration", "sparsity", "baseline_dev_start", "composed_dev_start", "baseline_dev", "composed_dev",
           "difference_points", "steps",
           "baseline_seconds", "composed_steps_to_reach", "composed_seconds_to_reach", "baseline_steps_to_reach")
# (the `_start` columns: the dev metric of the built model before any model-level step; `to reach` counts from
# there, so a composed model already at the baseline's final metric reaches it in 0 steps)


def run_curve(metadata_path, start=None):
    """One fine-tuning run as `{"metric", "steps_per_epoch", "epochs": [{epoch, step, train_loss, dev_loss, dev,
    seconds (cumulative training seconds), sparsity}]}`, read from its metadata and CSV; `start` (`{"dev",
    "dev_loss"}`, the model scored before fine-tuning) is epoch 0."""
    with open(metadata_path, encoding="utf-8") as handle:
        meta = json.load(handle)
    metric = meta["primary_metric"] if meta["primary_metric"].startswith("dev_") else f"dev_{meta['primary_metric']}"
    steps, rows = meta["data"]["steps_per_epoch"], meta["data"]["train_rows"]
    with open(meta["paths"]["csv"], encoding="utf-8", newline="") as handle:
        table = list(csv.DictReader(handle))
    epochs, seconds = [], 0.0
    for row in table:
        rate = float(row["train_examples_per_second"])
        seconds += rows / rate if rate > 0 else float(row["epoch_seconds"])
        epochs.append({"epoch": int(row["epoch"]), "step": int(row["epoch"]) * steps,
                       "train_loss": float(row["train_loss"]), "dev_loss": float(row["dev_loss"]),
                       "dev": float(row[metric]), "seconds": seconds, "sparsity": float(row["global_sparsity"])})
    if start is not None and epochs:
        epochs.insert(0, {"epoch": 0, "step": 0, "train_loss": float("nan"), "dev_loss": start["dev_loss"],
                          "dev": start["dev"], "seconds": 0.0, "sparsity": epochs[0]["sparsity"]})
    return {"metric": metric, "steps_per_epoch": steps, "epochs": epochs, "status": meta.get("status")}


def reach(curve, target):
    """`(steps, seconds)` of the first epoch whose dev metric reaches `target`; `(None, None)` if none does."""
    for epoch in curve["epochs"]:
        if epoch["dev"] >= target:
            return epoch["step"], epoch["seconds"]
    return None, None


def summarize(pairs, module_seconds):
    """`(rows, totals)` for `pairs`, `[(configuration index, composed curve, baseline curve)]`, given the
    module-level step's seconds (pruning, capture and fine-tuning of every unit, paid once)."""
    rows = []
    for index, composed, baseline in pairs:
        final_c, final_b = composed["epochs"][-1], baseline["epochs"][-1]
        steps, seconds = reach(composed, final_b["dev"])
        rows.append({"configuration": index, "sparsity": final_c["sparsity"],
                     "baseline_dev_start": baseline["epochs"][0]["dev"] if baseline["epochs"][0]["step"] == 0 else None,
                     "composed_dev_start": composed["epochs"][0]["dev"] if composed["epochs"][0]["step"] == 0 else None,
                     "baseline_dev": final_b["dev"],
                     "composed_dev": final_c["dev"], "difference_points": 100 * (final_c["dev"] - final_b["dev"]),
                     "steps": final_b["step"], "baseline_seconds": final_b["seconds"],
                     "composed_steps_to_reach": steps, "composed_seconds_to_reach": seconds,
                     "baseline_steps_to_reach": reach(baseline, final_b["dev"])[0]})
    # A configuration whose composed run never reaches its baseline costs its whole model-level run.
    model_level = sum(row["composed_seconds_to_reach"] if row["composed_seconds_to_reach"] is not None
                      else composed["epochs"][-1]["seconds"] for row, (_, composed, _) in zip(rows, pairs, strict=True))
    baseline_total = sum(row["baseline_seconds"] for row in rows)
    composed_total = module_seconds + model_level
    totals = {"module_seconds": module_seconds, "composed_model_level_seconds_to_reach": model_level,
              "composed_total_seconds": composed_total, "baseline_total_seconds": baseline_total,
              "time_saved": 1 - composed_total / baseline_total if baseline_total else None,
              "reached": sum(row["composed_steps_to_reach"] is not None for row in rows), "configurations": len(rows)}
    return rows, totals


def table_text(rows, totals, metric):
    """The summary as a Markdown table and a totals line."""
    lines = [f"| configuration | sparsity | {metric} before fine-tuning: baseline / composed | baseline {metric} | "
             f"composed {metric} | points | steps | composed steps to reach | composed s to reach | baseline s |",
             "|" + "---|" * 10]
    for row in rows:
        steps = row["composed_steps_to_reach"]
        start = " / ".join("-" if row[key] is None else f"{row[key]:.4f}"
                           for key in ("baseline_dev_start", "composed_dev_start"))
        lines.append(f"| {row['configuration']} | {row['sparsity']:.3f} | {start} | {row['baseline_dev']:.4f} | "
                     f"{row['composed_dev']:.4f} | {row['difference_points']:+.2f} | {row['steps']} | "
                     f"{'not reached' if steps is None else steps} | "
                     f"{'-' if steps is None else format(row['composed_seconds_to_reach'], '.0f')} | "
                     f"{row['baseline_seconds']:.0f} |")
    saved = totals["time_saved"]
    lines.append("")
    lines.append(f"total: module level {totals['module_seconds']:.0f} s once + model level to the baseline's metric "
                 f"{totals['composed_model_level_seconds_to_reach']:.0f} s = {totals['composed_total_seconds']:.0f} s "
                 f"vs baseline {totals['baseline_total_seconds']:.0f} s"
                 + ("" if saved is None else f" ({abs(100 * saved):.1f}% {'less' if saved >= 0 else 'more'} time)")
                 + f"; {totals['reached']} of {totals['configurations']} configurations reached their baseline")
    return "\n".join(lines)


def write_summary(folder, rows, totals, metric):
    """`summary.csv`, `summary.json` and `summary.md` in `folder`; returns the Markdown text."""
    with atomic_path(os.path.join(folder, "summary.csv")) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    from gated_bert.files import write_json_atomic

    write_json_atomic(os.path.join(folder, "summary.json"), {"metric": metric, "rows": rows, "totals": totals})
    text = table_text(rows, totals, metric)
    with atomic_path(os.path.join(folder, "summary.md")) as tmp, open(tmp, "w") as handle:
        handle.write(text + "\n")
    return text


def plot_run(pairs, module_seconds, folder, formats=("png",)):
    """`loss_curves.<fmt>` (training and validation loss per configuration, composed vs baseline, against model-level
    steps) and `time_to_accuracy.<fmt>` (dev metric against training seconds; composed runs start after their
    share of the module-level time). Returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 7,
                         "xtick.labelsize": 7, "ytick.labelsize": 7, "lines.linewidth": 1.2, "lines.markersize": 3})
    written = []
    count = len(pairs)
    fig, axes = plt.subplots(1, count, figsize=(2.4 * count + 0.6, 2.4), squeeze=False, sharey=True)
    for axis, (index, composed, baseline) in zip(axes[0], pairs, strict=True):
        for curve, name, style in ((composed, "composed", "-"), (baseline, "baseline", "--")):
            steps = [epoch["step"] for epoch in curve["epochs"]]
            trained = [e for e in curve["epochs"] if e["step"]]  # no training loss before training
            axis.plot([e["step"] for e in trained], [e["train_loss"] for e in trained], style, marker="o", color="C0",
                      label=f"{name} train")
            axis.plot(steps, [e["dev_loss"] for e in curve["epochs"]], style, marker="s", color="C1",
                      label=f"{name} dev")
        axis.set(title=f"configuration {index}", xlabel="model-level steps")
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel("loss")
    axes[0][0].legend(loc="upper center", bbox_to_anchor=(0.5 * count, -0.25), ncol=4, frameon=False)
    written += _save(plt, fig, os.path.join(folder, "loss_curves"), formats)
    fig, axis = plt.subplots(figsize=(3.5, 2.6))
    share = module_seconds / max(count, 1)
    for color, (index, composed, baseline) in enumerate(pairs):
        axis.plot([share + e["seconds"] for e in composed["epochs"]], [e["dev"] for e in composed["epochs"]], "-",
                  marker="o", color=f"C{color}", label=f"{index} composed")
        axis.plot([e["seconds"] for e in baseline["epochs"]], [e["dev"] for e in baseline["epochs"]], "--", marker="s",
                  color=f"C{color}", label=f"{index} baseline")
    metric = pairs[0][1]["metric"] if pairs else "dev"
    axis.set(xlabel="training seconds (composed: after its share of module-level time)", ylabel=metric)
    axis.grid(alpha=0.3)
    axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    written += _save(plt, fig, os.path.join(folder, "time_to_accuracy"), formats)
    return written


def _save(plt, fig, stem, formats):
    written = []
    try:
        for fmt in formats:
            with atomic_path(f"{stem}.{fmt}") as tmp:
                fig.savefig(tmp, format=fmt, dpi=300, bbox_inches="tight")
            written.append(f"{stem}.{fmt}")
    finally:
        plt.close(fig)
    return written
