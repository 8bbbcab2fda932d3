"""Train a gated encoder on a GLUE task: `python train.py --help`, or `gated-bert-train` once installed.

The driver is `experiment/train.py`.
"""

import sys

from experiment.train import main

if __name__ == "__main__":
    sys.exit(main())
