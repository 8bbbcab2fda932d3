"""Accuracy: the tiny preset trained from scratch on full SST-2 through train.py's own `run`.

Prints dev accuracy and seconds per epoch and the settings used; a JSON
argument overrides settings (`python bench/sst2_accuracy.py '{"seed": 1}'`).
Target: >= 0.82 dev accuracy within 3 epochs.
"""

import csv
import json
import os
import sys
import tempfile

from common import glue_inputs_or_exit
from experiment.config import GatedBertConfig
from experiment.train import configure_tensorflow, run

# The recommended from-scratch recipe (also in the README).
RECIPE = {"model_size": "tiny", "task": "sst2", "epochs": 2, "batch_size": 96, "learning_rate": 1e-3,
          "warmup_ratio": 0.1, "weight_decay": 0.01, "dropout_rate": 0.1, "max_len": 128, "seed": 42}


def main():
    glue, tokenizer = glue_inputs_or_exit()
    overrides = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    out = tempfile.mkdtemp(prefix="bench_sst2_")
    config = GatedBertConfig(**{**RECIPE, **overrides}, data_dir=glue, tokenizer=tokenizer, output_dir=out,
                             verbose=2)
    configure_tensorflow(config)
    metadata_path = run(config)
    with open(metadata_path) as handle:
        metadata = json.load(handle)
    with open(metadata["paths"]["csv"]) as handle:
        rows = list(csv.DictReader(handle))
    settings = {key: getattr(config, key) for key in {**RECIPE, **overrides}}
    print(f"settings: {json.dumps(settings)}")
    print(f"train rows: {metadata['data']['train_rows']}, dev rows: {metadata['data']['dev_rows']}, "
          f"parameters: {metadata['model']['parameters']}")
    for row in rows:
        print(f"epoch {row['epoch']}: dev_accuracy {float(row['dev_accuracy']):.4f}  "
              f"train_loss {float(row['train_loss']):.4f}  seconds {float(row['epoch_seconds']):.1f}")
    best = max(float(row["dev_accuracy"]) for row in rows)
    dev_rows = metadata["data"]["dev_rows"]
    verdict = "PASS" if best >= 0.82 else "FAIL"
    print(f"best dev accuracy within {len(rows)} epochs: {best:.4f} = {round(best * dev_rows)}/{dev_rows} "
          f"(target >= 0.82: {verdict})")
    print(f"outputs: {os.path.dirname(metadata_path)}")


if __name__ == "__main__":
    main()
