"""Predict labels for texts with an export folder (export.py's):
`python predict.py --help`, or `gated-bert-predict` once installed.

The driver is `experiment/predict.py`.
"""

import sys

from experiment.predict import main

if __name__ == "__main__":
    sys.exit(main())
