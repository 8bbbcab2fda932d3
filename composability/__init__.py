"""Composability: prune each distinct module of many pruning configurations once, fine-tune it once at module
level, and compose every configuration's model from those modules (`compose.py`).

`configs` (which modules, which rates), `scheme` (the distinct units), `units` (L1 masks and unit files),
`module_tuning` (MSE against the dense module), `pipeline` (the steps between files) and `summary` (the
comparison with the directly pruned baselines).
"""
