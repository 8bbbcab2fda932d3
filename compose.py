"""Composability: fine-tune shared pruned modules once, compose many pruned models from them:
`python compose.py --help`, or `gated-bert-compose` once installed.

The driver is `experiment/compose.py`; the logic is in the `composability` package.
"""

import sys

from experiment.compose import main

if __name__ == "__main__":
    sys.exit(main())
