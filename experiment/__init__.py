"""What a run is, and the drivers that run one.

- `experiment.config`: `GatedBertConfig`, resolved from presets, a JSON file, the environment and flags.
- `experiment.recipe`: the optimizer, learning-rate schedule and loss of a training run.
- `experiment.outputs`, `experiment.plots`, `experiment.logs`: where a run's files go, its figures, its logs.
- `experiment.checkpoints`: finding and loading a train.py checkpoint.
- The drivers, each with a `main(argv)`: `experiment.train`, `experiment.prune`, `experiment.evaluate`,
  `experiment.compare` (run from the repository root as `python train.py`, `python prune.py`,
  `python evaluate.py`, `python plot_comparison.py`, or installed as `gated-bert-train`, `gated-bert-prune`,
  `gated-bert-evaluate`, `gated-bert-plot`).

Importing this package imports nothing else: each module brings what it needs.
"""
