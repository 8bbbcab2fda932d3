"""The figures of one training run: dev metrics and losses per epoch and against sparsity."""

from gated_bert.files import atomic_path


def _plot_against_sparsity(rows, columns, ylabel, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [row["epoch"] for row in rows]
    sparsity = [100 * row["global_sparsity"] for row in rows]
    fig, (by_epoch, by_sparsity) = plt.subplots(1, 2, figsize=(11, 4))
    for column in columns:
        values = [row.get(column, float("nan")) for row in rows]
        by_epoch.plot(epochs, values, marker="o", label=column)
        by_sparsity.plot(sparsity, values, marker="o", label=column)
    twin = by_epoch.twinx()
    twin.plot(epochs, sparsity, color="grey", linestyle="--", label="sparsity (masks)")
    if any(row.get("target_sparsity") for row in rows):
        target = [100 * row.get("target_sparsity", 0.0) for row in rows]
        twin.plot(epochs, target, color="grey", linestyle=":", label="target sparsity")
        twin.legend(loc="lower right")
    twin.set_ylabel("global sparsity (%)")
    twin.set_ylim(-2, 102)
    by_epoch.set(xlabel="epoch", ylabel=ylabel, title=f"{ylabel} and sparsity per epoch")
    by_epoch.xaxis.set_major_locator(MaxNLocator(integer=True))
    by_sparsity.set(xlabel="global sparsity (%)", ylabel=ylabel, title=f"{ylabel} vs sparsity", xlim=(-2, 102))
    for axis in (by_epoch, by_sparsity):
        axis.grid(alpha=0.3)
        axis.legend(loc="best")
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
    finally:
        plt.close(fig)


def plot_run(rows, metrics, paths):
    """Write the metric-vs-sparsity and loss-vs-sparsity PNGs of one run."""
    if not rows:
        return
    _plot_against_sparsity(rows, [f"dev_{m}" for m in metrics], "dev metric", paths.accuracy_plot)
    _plot_against_sparsity(rows, ["train_loss", "dev_loss"], "loss", paths.loss_plot)
