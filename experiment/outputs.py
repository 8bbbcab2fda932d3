"""Where a run's outputs go, and what versions produced them."""

import contextlib
import importlib.metadata
import os
import platform
import sys
from dataclasses import dataclass

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
    def resume_state(self):
        """What `train.py --resume` continues from: the state after the last finished epoch (`callbacks.ResumeState`);
        deleted when the run completes."""
        return self._checkpoint("resume", "npz")

    @property
    def log_file(self):
        return os.path.join(self.log_dir, f"{self.method}_{self.task}_{self.timestamp}.log")

    def create_dirs(self):
        for folder in (self.results_dir, self.checkpoint_dir, self.log_dir):
            os.makedirs(folder, exist_ok=True)

    def remove_stale_partials(self):
        """Delete what killed runs left half-written in this run's folders (`files.remove_stale_partials`)."""
        from gated_bert.files import remove_stale_partials

        return [name for folder in (self.results_dir, self.checkpoint_dir) for name in remove_stale_partials(folder)]

    def remove_empty_dirs(self):
        """After a run that ended early: its config when it saved no checkpoint (nothing to score or resume), then
        each of its folders left empty."""
        if not any(os.path.exists(path) for path in (self.best_checkpoint, self.last_checkpoint)):
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.checkpoint_config)
        for folder in (self.checkpoint_dir, self.results_dir, self.log_dir):
            with contextlib.suppress(OSError):  # not empty, or gone
                os.rmdir(folder)

    def as_dict(self):
        names = ("csv", "metadata", "accuracy_plot", "loss_plot", "best_checkpoint", "last_checkpoint",
                 "checkpoint_config", "resume_state", "log_file")
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
