"""Score a checkpoint on its task's dev set, optionally with saved masks:
`python evaluate.py --help`, or `gated-bert-evaluate` once installed.

The driver is `experiment/evaluate.py`.
"""

import sys

from experiment.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
