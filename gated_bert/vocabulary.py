"""The method names of runs, in one import-light place (shell scripts read it).

    python -c "from gated_bert.vocabulary import METHODS; print(*METHODS)"
"""

# Methods that follow the pruning window and a sparsity schedule.
SCHEDULED_METHODS = ("magnitude", "movement", "spt")
# Values of `pruning_method`: none, the scheduled methods, and learned Gumbel masks (over the whole run).
PRUNING_METHODS = ("none", *SCHEDULED_METHODS, "gumbel")
# Method names of runs and result folders: `baseline` is training without pruning.
METHODS = ("baseline", *PRUNING_METHODS[1:])
