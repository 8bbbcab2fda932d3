"""Configurations and the scheme: the example configurations exactly, units deduplicated (counted by hand), and
edited files refused."""

import json

import pytest

from composability.configs import ComposeError, make_configurations, read_configurations, write_configurations
from composability.scheme import configuration, make_scheme, read_scheme, unit_id, units_of, write_scheme

LINEAR = ("attention_output", "ffn_intermediate", "ffn_output")


def _example(tmp_path):
    conf = tmp_path / "conf.json"
    write_configurations(conf, make_configurations([0.25, 0.5, 0.25], [0.3, 0.3, 0.5], 3, [0, 1]))
    return conf


def test_the_example_yields_exactly_the_described_configurations(tmp_path):
    content = read_configurations(_example(tmp_path))
    expected = [(0.25, 0.3), (0.5, 0.3), (0.25, 0.5)]
    assert [c["index"] for c in content["configurations"]] == [0, 1, 2]
    for configuration_, (attention, linear) in zip(content["configurations"], expected, strict=True):
        rates = {"attention": attention, **dict.fromkeys(LINEAR, linear)}
        assert configuration_["layers"] == {"0": rates, "1": rates}


def test_the_scheme_deduplicates_shared_units(tmp_path):
    conf = _example(tmp_path)
    scheme = make_scheme(conf)
    # By hand: attention at {0.25, 0.5} in 2 layers (4) + 3 linear modules at {0.3, 0.5} in 2 layers (12).
    assert len(scheme["units"]) == 16
    filled = [configuration(scheme, index) for index in range(3)]
    assert sum(len(modules) for c in filled for modules in c.values()) == 3 * 2 * 4  # 24 modules, 16 units
    # Configurations 0 and 2 share their attention units (0.25), 0 and 1 their linear ones (0.3).
    assert filled[0]["1"]["attention"] == filled[2]["1"]["attention"] == unit_id(1, "attention", "l1_heads", 0.25)
    assert filled[0]["0"]["ffn_output"] == filled[1]["0"]["ffn_output"] == unit_id(0, "ffn_output", "l1", 0.3)
    assert filled[0]["0"]["ffn_output"] != filled[2]["0"]["ffn_output"]
    assert len(units_of(scheme, 1)) == 8


def test_a_zero_rate_leaves_the_module_dense_and_makes_no_unit(tmp_path):
    conf = tmp_path / "conf.json"
    write_configurations(conf, make_configurations([0.0], [0.5], 1, [0]))
    scheme = make_scheme(conf)
    assert sorted(unit["module"] for unit in scheme["units"]) == sorted(LINEAR)
    assert "attention" not in configuration(scheme, 0)["0"]


def test_an_edited_scheme_is_refused(tmp_path):
    conf = _example(tmp_path)
    path = tmp_path / "conf_prune.json"
    write_scheme(path, make_scheme(conf))
    assert read_scheme(path)["scheme_sha256"]
    edited = json.loads(path.read_text())
    edited["units"][0]["rate"] = 0.9
    path.write_text(json.dumps(edited))
    with pytest.raises(ComposeError, match="edited by hand.*regenerate it with: compose.py scheme"):
        read_scheme(path)


def test_a_scheme_whose_configurations_changed_is_refused(tmp_path):
    conf = _example(tmp_path)
    path = tmp_path / "conf_prune.json"
    write_scheme(path, make_scheme(conf))
    content = json.loads(conf.read_text())
    content["configurations"][0]["layers"]["0"]["attention"] = 0.75
    conf.write_text(json.dumps(content))
    with pytest.raises(ComposeError, match="changed after .* regenerate it"):
        read_scheme(path)
    conf.unlink()
    with pytest.raises(ComposeError, match="which is gone"):
        read_scheme(path)


@pytest.mark.parametrize("attention, linear, count, message", [
    ([1.0], [0.3], 1, r"\[0, 1\), got 1.0"),
    ([-0.1], [0.3], 1, r"\[0, 1\), got -0.1"),
    ([0.25, 0.5], [0.3], 2, "--linear needs one rate per configuration"),
    ([0.25], [0.3], 0, "-n must be a positive"),
])
def test_bad_configurations_are_refused_by_value(attention, linear, count, message):
    with pytest.raises(ComposeError, match=message):
        make_configurations(attention, linear, count, [0])


def test_an_edited_configurations_file_with_a_bad_rate_or_module_is_refused(tmp_path):
    conf = _example(tmp_path)
    content = json.loads(conf.read_text())
    content["configurations"][1]["layers"]["0"]["ffn_output"] = 1.5
    conf.write_text(json.dumps(content))
    with pytest.raises(ComposeError, match="configuration 1, layer 0, ffn_output: .* got 1.5"):
        make_scheme(conf)
    content["configurations"][1]["layers"]["0"] = {"pooler": 0.5}
    conf.write_text(json.dumps(content))
    with pytest.raises(ComposeError, match="unknown module 'pooler'"):
        make_scheme(conf)


def test_an_existing_file_is_not_overwritten(tmp_path):
    conf = _example(tmp_path)
    before = conf.read_text()
    with pytest.raises(ComposeError, match="already exists; pass --overwrite"):
        write_configurations(conf, make_configurations([0.5], [0.5], 1, [0]))
    assert conf.read_text() == before


def test_a_configuration_index_out_of_range_is_named(tmp_path):
    scheme = make_scheme(_example(tmp_path))
    with pytest.raises(ComposeError, match="configuration 3 is out of range: .* has 3 configurations"):
        configuration(scheme, 3)
