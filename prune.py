"""Prune a train.py checkpoint without retraining (Fisher or K-prune):
`python prune.py --help`, or `gated-bert-prune` once installed.

The driver is `experiment/prune.py`.
"""

import sys

from experiment.prune import main

if __name__ == "__main__":
    sys.exit(main())
