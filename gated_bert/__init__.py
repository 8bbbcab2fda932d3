"""The names and file formats every package of the suite shares, importing no package of ours.

- `gated_bert.vocabulary`: the method names (training and post-training).
- `gated_bert.files`: writes that never leave half a file, JSON objects read with clear errors.

The suite's packages: `gated` (the gated layers and encoder), `pruners` (pruning maths), `callbacks`
(Keras callbacks), `tasks` (GLUE data and scoring), `efficiency` (MACs and latency) and `experiment`
(what a run is, and the drivers).
"""
