"""Export a checkpoint (optionally with a mask folder) as a compact model for serving:
`python export.py --help`, or `gated-bert-export` once installed.

The driver is `experiment/export.py`.
"""

import sys

from experiment.export import main

if __name__ == "__main__":
    sys.exit(main())
