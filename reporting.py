"""Where a run's outputs go, what versions produced them, and its plots."""

import contextlib
import importlib.metadata
import logging
import os
import platform
import sys
from dataclasses import dataclass

from fileio import atomic_path

PACKAGES = ("tensorflow", "keras", "tf-keras", "tensorflow-probability", "transformers", "tokenizers",
            "datasets", "numpy", "pandas", "scipy", "matplotlib")


@dataclass(frozen=True)
class RunPaths:
    """Every file a run writes, named `{kind}_{method}_{timestamp}` under the output root."""

    root: str
    method: str
    task: str
    timestamp: str

    @property
    def results_dir(self):
        return os.path.join(self.root, f"results_{self.method}_{self.task}")

    @property
    def checkpoint_dir(self):
        return os.path.join(self.root, f"checkpoints_{self.method}_{self.task}")

    @property
    def log_dir(self):
        return os.path.join(self.root, "experiment_logs")

    def _result(self, kind, ext):
        return os.path.join(self.results_dir, f"{kind}_{self.method}_{self.timestamp}.{ext}")

    def _checkpoint(self, kind, ext):
        return os.path.join(self.checkpoint_dir, f"{kind}_{self.method}_{self.timestamp}.{ext}")

    @property
    def csv(self):
        return self._result("results", "csv")

    @property
    def metadata(self):
        return self._result("metadata", "json")

    @property
    def accuracy_plot(self):
        return self._result("accuracy_sparsity", "png")

    @property
    def loss_plot(self):
        return self._result("loss_sparsity", "png")

    @property
    def masks_dir(self):
        """Learned structured masks (`head_mask.npy`, ...) of a gumbel run."""
        return os.path.join(self.results_dir, f"masks_{self.method}_{self.timestamp}")

    @property
    def step_log(self):
        """Per-step mask loss terms of a gumbel run."""
        return self._result("mask_steps", "csv")

    @property
    def best_checkpoint(self):
        return self._checkpoint("best", "keras")

    @property
    def last_checkpoint(self):
        return self._checkpoint("last", "keras")

    @property
    def checkpoint_config(self):
        return self._checkpoint("config", "json")

    @property
    def log_file(self):
        return os.path.join(self.log_dir, f"{self.method}_{self.task}_{self.timestamp}.log")

    def create_dirs(self):
        for folder in (self.results_dir, self.checkpoint_dir, self.log_dir):
            os.makedirs(folder, exist_ok=True)

    def as_dict(self):
        names = ("csv", "metadata", "accuracy_plot", "loss_plot", "best_checkpoint", "last_checkpoint",
                 "checkpoint_config", "log_file")
        return {name: getattr(self, name) for name in names}


def package_versions():
    """Python, platform and the versions of the packages a run depends on."""
    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_console = logging.StreamHandler()
_console.setFormatter(logging.Formatter(LOG_FORMAT))


def setup_console_logging(verbose):
    """INFO records reach the root logger (and so the run's log file); the console shows
    them unless `verbose` is 0, when it shows warnings only."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    _console.setLevel(logging.WARNING if verbose == 0 else logging.INFO)
    if _console not in root.handlers:
        root.addHandler(_console)


@contextlib.contextmanager
def log_file(path):
    """Copy this process's INFO-and-above log records to `path` while the block runs."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    previous_level = root.level
    root.setLevel(min(root.getEffectiveLevel(), logging.INFO))  # the file gets INFO even when run() is called alone
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)
        handler.close()


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
