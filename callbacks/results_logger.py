"""`ResultsLogger`: one CSV row per epoch as it ends, and the metadata JSON from the start, after every epoch and
at the end."""

import csv
import math
import os
import time

import keras
from keras import ops

from callbacks.checkpoints import can_be_best
from gated.masks import sparsity_stats
from gated_bert.files import atomic_path, write_json_atomic


class ResultsLogger(keras.callbacks.Callback):
    """Appends each epoch's results to a CSV and writes the run's metadata JSON.

    Rows are flushed as each epoch ends, so a killed run keeps them; the
    metadata is written as training begins and after every epoch with status
    `running` (a run killed outright is left saying so, with its finished
    epochs), and at the end with `completed` (or the caller's status). Row
    columns: `epoch, train_loss, dev_loss, dev_<metric>..., learning_rate,
    target_sparsity, global_sparsity, <extra columns>..., epoch_seconds,
    train_examples_per_second`. `global_sparsity` is counted from the masks;
    `target_sparsity` and the extra columns are read from the epoch logs
    (0 for a target when no pruning callback set one).

    Args:
        csv_path: CSV file to create (with a header) and append to.
        metadata_path: JSON file written by `write_metadata`.
        metrics: the task's metric names, in column order.
        primary_metric: the metric that picks the best epoch (higher is better).
        num_train_examples: examples per epoch, for throughput.
        metadata: fixed metadata (config, versions, paths) merged into the JSON.
        extra_columns: further epoch-log keys to record (e.g. per-layer sparsity).
        min_target_sparsity: only rows whose target sparsity reaches this can be the best.
        min_epoch: only rows from this epoch (1-based) on can be the best.
    """

    def __init__(self, csv_path, metadata_path, metrics, primary_metric, num_train_examples, metadata,
                 extra_columns=(), min_target_sparsity=0.0, min_epoch=1):
        super().__init__()
        self.csv_path = csv_path
        self.metadata_path = metadata_path
        self.columns = ["epoch", "train_loss", "dev_loss", *(f"dev_{m}" for m in metrics),
                        "learning_rate", "target_sparsity", "global_sparsity", *extra_columns, "epoch_seconds",
                        "train_examples_per_second"]
        self.extra_columns = list(extra_columns)
        self.min_target_sparsity = min_target_sparsity
        self.min_epoch = min_epoch
        self.primary = f"dev_{primary_metric}"
        self.num_train_examples = num_train_examples
        self.metadata = dict(metadata)
        self.rows = []
        self.train_seconds = []  # per epoch, dev evaluation excluded
        self._train_start = None

    def on_train_begin(self, logs=None):
        self.rows, self.train_seconds = [], []
        self._train_start = time.perf_counter()
        if not os.path.exists(self.csv_path):
            with open(self.csv_path, "w", newline="", encoding="utf-8") as handle:
                csv.writer(handle).writerow(self.columns)
        self.write_metadata(status="running")

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        seconds = time.perf_counter() - self._epoch_start
        train_seconds = seconds - logs.get("dev_seconds", 0.0)
        row = {
            "epoch": epoch + 1,
            "train_loss": float(logs["loss"]),
            **{key: float(logs[key]) for key in self.columns if key.startswith("dev_") and key in logs},
            "learning_rate": float(ops.convert_to_numpy(self.model.optimizer.learning_rate)),
            "target_sparsity": float(logs.get("target_sparsity", 0.0)),
            # From the masks: the PruningCallback's count when it ran this epoch, else counted here.
            "global_sparsity": float(logs["sparsity"]) if "sparsity" in logs
            else sparsity_stats(self.model)["global_sparsity"],
            **{key: float(logs[key]) for key in self.extra_columns if key in logs},
            "epoch_seconds": seconds,
            "train_examples_per_second": self.num_train_examples / train_seconds if train_seconds > 0 else 0.0,
        }
        self.rows.append(row)
        self.train_seconds.append(train_seconds)
        with open(self.csv_path, "a", newline="", encoding="utf-8") as handle:
            csv.DictWriter(handle, self.columns).writerow(row)
        self.write_metadata(status="running")

    def on_train_end(self, logs=None):
        self.write_metadata(status="completed")

    def resume_state(self):
        wall = time.perf_counter() - self._train_start if self._train_start is not None else 0.0
        return {}, {"rows": self.rows, "train_seconds": self.train_seconds, "wall_seconds": wall}

    def restore_state(self, arrays, values):
        """Back to the finished epochs of the state: its rows (the CSV is rewritten with them alone, dropping a
        row written after the state was), timings and wall time so far."""
        # JSON keeps NaN (a metric with no value) as null: back to NaN, as the rows had it.
        self.rows = [{key: math.nan if value is None else value for key, value in row.items()}
                     for row in values["rows"]]
        self.train_seconds = list(values["train_seconds"])
        self._train_start = time.perf_counter() - values["wall_seconds"]
        with atomic_path(self.csv_path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, self.columns)
            writer.writeheader()
            writer.writerows(self.rows)
        self.write_metadata(status="running")

    def best_row(self):
        scored = [row for row in self.rows if not math.isnan(row.get(self.primary, math.nan))
                  and can_be_best(row["epoch"], row, self.min_target_sparsity, self.min_epoch)]
        return max(scored, key=lambda row: row[self.primary]) if scored else None

    def write_metadata(self, status, error=None):
        """Write the metadata JSON: fixed fields, timings, best and final metrics."""
        wall = time.perf_counter() - self._train_start if self._train_start is not None else 0.0
        train_seconds = sum(self.train_seconds)
        payload = {
            **self.metadata,
            "status": status,
            "error": error,
            "epochs_completed": len(self.rows),
            "timings": {
                "train_wall_seconds": wall,
                "train_seconds": train_seconds,
                "epoch_seconds": [row["epoch_seconds"] for row in self.rows],
            },
            "train_examples_per_second": (
                self.num_train_examples * len(self.rows) / train_seconds if train_seconds else 0.0
            ),
            "primary_metric": self.primary,
            "best": self.best_row(),
            "final": self.rows[-1] if self.rows else None,
        }
        write_json_atomic(self.metadata_path, payload)
