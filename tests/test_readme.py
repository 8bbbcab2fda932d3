"""The README stays true: its config table and its API example match the code."""

import dataclasses
import re

import numpy as np

from conftest import REPO
from experiment.config import SHAPE_FIELDS, GatedBertConfig

README = (REPO / "README.md").read_text()


def test_config_table_lists_every_field_with_its_default():
    rows = dict(re.findall(r"^\| `(\w+)` \| [^|]+ \| `([^`]*)` \|", README, flags=re.M))
    fields = dataclasses.fields(GatedBertConfig)
    assert set(rows) == {f.name for f in fields}
    for f in fields:
        if isinstance(f.default, tuple):
            expected = " ".join(f"{value:g}" if isinstance(value, float) else value for value in f.default)
        else:
            expected = "preset" if f.name in SHAPE_FIELDS else {None: "none", "": '""'}.get(f.default, str(f.default))
        assert rows[f.name] == expected, f.name


def test_first_screen_shows_the_two_commands():
    first_screen = "\n".join(README.splitlines()[:15])
    assert "make demo" in first_screen and "make test" in first_screen


def test_api_example_sparsity_figure():
    from gated import build_gated_encoder, set_head_gates, sparsity_stats

    model = build_gated_encoder(vocab_size=30522, max_len=128, num_layers=2, d_model=256, num_heads=4, dff=512,
                                num_labels=2)
    set_head_gates(model, {"block_0/attention": np.array([1, 0, 1, 1], "float32")})
    figure = float(re.search(r"# ([0-9.]+): head 1 of block 0", README).group(1))
    assert sparsity_stats(model)["global_sparsity"] == figure
