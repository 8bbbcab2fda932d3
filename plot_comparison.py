"""Compare the methods run on one task, figures and summary table: `python plot_comparison.py --help`, or
`gated-bert-plot` once installed.

The driver is `experiment/compare.py`.
"""

import sys

from experiment.compare import main

if __name__ == "__main__":
    sys.exit(main())
