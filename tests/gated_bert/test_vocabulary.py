"""The suite's names: unit kinds and their earlier spellings."""

import pytest

from gated_bert.vocabulary import UNIT_KINDS, expand_unit_kinds, unit_kind


def test_unit_kinds_expand_in_order_and_translate_the_earlier_name():
    assert expand_unit_kinds(["ffn_out", "head"]) == ("head", "ffn_out")
    assert expand_unit_kinds(["all"]) == UNIT_KINDS == ("head", "neuron", "ffn_out")
    assert expand_unit_kinds(["ffn_int", "neuron"]) == ("neuron",)
    assert unit_kind("ffn_int") == "neuron" and unit_kind("head") == "head"


def test_unknown_unit_kinds_are_named_with_the_choices():
    with pytest.raises(ValueError, match=r"unknown unit kind\(s\) \['heads'\]; choose from head, neuron, ffn_out or"):
        expand_unit_kinds(["heads"])
    with pytest.raises(ValueError, match="unknown unit kind 'mha'; choose from head, neuron, ffn_out"):
        unit_kind("mha")
