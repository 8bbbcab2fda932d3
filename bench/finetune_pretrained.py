"""Fine-tune the real pretrained MiniLM (all-MiniLM-L6-v2) with train.py on SST-2, MRPC, STS-B, RTE and CoLA.

Each task runs `train.py --init_from <MiniLM> --task <task>` with the fine-tuning recipe (lr 5e-5, batch 32,
warm-up 10%, dropout 0.1, dynamic padding): SST-2 for one epoch over the full training set, the small tasks for
three. Prints per task the dev metric of the best epoch, the wall time and the training examples/s, then the
target: SST-2 dev accuracy >= 0.90 (a plain Hugging Face/PyTorch one-epoch fine-tune here: 0.896).

The checkpoints stay in OUTPUT_DIR (default bench_results/finetune_minilm/<task>/) for
bench/pretrained_pruning.py.

    python bench/finetune_pretrained.py [TASK ...]   # default: sst2 mrpc stsb rte cola (~40 min on 2 cores)
    FINETUNE_EPOCHS=sst2=2 python bench/finetune_pretrained.py sst2   # other epoch counts, TASK=N,...
    FINETUNE_ARGS="--learning_rate 1e-4" OUTPUT_DIR=/tmp/lr1e-4 python bench/finetune_pretrained.py sst2
        # more train.py flags for every task (another recipe: keep its checkpoints apart with OUTPUT_DIR)
    FINETUNE_ARGS="--pooling mean" OUTPUT_DIR=/tmp/ft_mean python bench/finetune_pretrained.py sst2
        # the head that reads the mean of the token states (sentence-transformers' pooling) instead of [CLS]
    FINETUNE_ARGS="--learning_rate 1e-4 --layer_lr_decay 0.8" OUTPUT_DIR=/tmp/ft_llrd \
        python bench/finetune_pretrained.py sst2
        # layer-wise learning-rate decay (ELECTRA's recipe): the head at 1e-4, each layer 0.8 times the one above
"""

import json
import os
import shlex
import subprocess
import sys
import time

from common import glue_inputs_or_exit, minilm_or_exit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPOCHS = {"sst2": 1, "mrpc": 3, "stsb": 3, "rte": 3, "cola": 3}
TARGET = ("sst2", "dev_accuracy", 0.90)


def epochs_per_task():
    """`EPOCHS` with the `FINETUNE_EPOCHS` overrides (`task=N,...`) applied."""
    epochs = dict(EPOCHS)
    for item in filter(None, os.environ.get("FINETUNE_EPOCHS", "").split(",")):
        task, _, count = item.partition("=")
        if task not in EPOCHS or not count.isdigit() or int(count) < 1:
            sys.exit(f"FINETUNE_EPOCHS: bad entry {item!r}; write task=N with N >= 1, tasks: {', '.join(EPOCHS)}")
        epochs[task] = int(count)
    return epochs


def finetune(task, epochs, minilm, glue, output_dir):
    """Run train.py for `task`; returns its metadata JSON and the wall time."""
    out = os.path.join(output_dir, task)
    os.makedirs(out, exist_ok=True)
    argv = [sys.executable, os.path.join(ROOT, "train.py"), "--init_from", minilm, "--task", task,
            "--epochs", str(epochs), "--data_dir", glue, "--output_dir", out, "--verbose", "2",
            *shlex.split(os.environ.get("FINETUNE_ARGS", ""))]
    start = time.perf_counter()
    with open(os.path.join(out, "train.log"), "w") as log:
        status = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, check=False).returncode
    seconds = time.perf_counter() - start
    if status:
        sys.exit(f"train.py {task} exited with {status}; see {out}/train.log")
    paths = sorted(p for p in os.listdir(os.path.join(out, f"results_baseline_{task}")) if p.startswith("metadata_"))
    with open(os.path.join(out, f"results_baseline_{task}", paths[-1])) as handle:
        return json.load(handle), seconds


def main():
    epochs = epochs_per_task()
    tasks = sys.argv[1:] or list(EPOCHS)
    unknown = [task for task in tasks if task not in EPOCHS]
    if unknown:
        sys.exit(f"unknown task {', '.join(unknown)}; tasks: {', '.join(EPOCHS)}")
    minilm = minilm_or_exit()
    glue, _ = glue_inputs_or_exit()
    output_dir = os.environ.get("OUTPUT_DIR") or os.path.join(ROOT, "bench_results", "finetune_minilm")
    results = {}
    for task in tasks:
        meta, seconds = finetune(task, epochs[task], minilm, glue, output_dir)
        metric = meta["primary_metric"]
        best = meta["best"]
        results[task] = best[metric]
        others = ", ".join(f"{key} {value:.4f}" for key, value in best.items()
                           if key.startswith("dev_") and key not in (metric, "dev_loss"))
        others = f"; {others}" if others else ""
        recipe = meta["config"]
        print(f"{task}: best {metric} {best[metric]:.4f} (epoch {best['epoch']} of {epochs[task]}{others}); "
              f"lr {recipe['learning_rate']:g}, batch {recipe['batch_size']}, seed {recipe['seed']}; "
              f"{meta['data']['train_rows']} train rows, wall {seconds:.0f} s, "
              f"{meta['train_examples_per_second']:.0f} train examples/s", flush=True)
    task, metric, target = TARGET
    if task in results:
        verdict = "PASS" if results[task] >= target else "FAIL"
        print(f"target: {task} {metric} >= {target}: {results[task]:.4f} ({verdict})")


if __name__ == "__main__":
    main()
