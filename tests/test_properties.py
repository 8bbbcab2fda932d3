"""Property-based tests (hypothesis): whatever a user puts in the config layers (JSON file, environment, flags) or
in a data file, the result is a config (or rows), or one line naming what is wrong, of a known error type; never a
traceback from deeper down."""

import dataclasses
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from experiment.config import ConfigError, GatedBertConfig, config_from_flags, env_name, resolve_config
from tasks import TASKS
from tasks.custom import read_columns
from tasks.loaders import GlueFormatError, read_glue_tsv

FIELDS = [f.name for f in dataclasses.fields(GatedBertConfig)]
# Values as a user might type them: numbers, words, field-like words, paths, odd characters (NUL included).
TEXT = st.one_of(
    st.integers(-5, 5000).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["true", "false", "yes", "0", "1", "", "none", "null", "tiny", "base", "sst2", "rte", "gumbel",
                     "movement", "magnitude", "spt", "baseline", "cubic", "linear", "global", "local", "head",
                     "neuron,head", "0.5", "1e-3", "-1", "nan", "inf", "/nonexistent/dir", ".", "a\x00b"]),
    st.text(max_size=12),
)
JSON_VALUE = st.one_of(st.none(), st.booleans(), st.integers(-10, 5000), st.floats(allow_nan=False), TEXT,
                       st.lists(st.one_of(st.integers(-3, 120), TEXT), max_size=3))
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _one_line(error):
    message = str(error)
    assert message and "\n" not in message and "Traceback" not in message, message


@SETTINGS
@given(file_values=st.dictionaries(st.sampled_from(FIELDS + ["lerning_rate", "x"]), JSON_VALUE, max_size=4),
       env_values=st.dictionaries(st.sampled_from(FIELDS), TEXT, max_size=3),
       flag_values=st.dictionaries(st.sampled_from(FIELDS), TEXT, max_size=3),
       file_is_object=st.booleans())
def test_config_layers_give_a_config_or_one_config_error(tmp_path_factory, file_values, env_values, flag_values,
                                                         file_is_object):
    path = tmp_path_factory.mktemp("config") / "config.json"
    path.write_text(json.dumps(file_values if file_is_object else list(file_values.values())))
    environ = {env_name(name): value for name, value in env_values.items()}
    flags = {**{name: value for name, value in flag_values.items() if name != "config"}, "config": str(path)}
    try:
        config = config_from_flags(flags, environ)
    except ConfigError as error:
        _one_line(error)
        return
    assert isinstance(config, GatedBertConfig) and config.task in (*TASKS, "custom")


@SETTINGS
@given(argv=st.lists(st.one_of(st.sampled_from([f"--{name}" for name in FIELDS] + ["--dry_run", "--", "-x"]), TEXT),
                     max_size=6))
def test_any_command_line_gives_a_config_a_config_error_or_a_usage_error(argv):
    try:
        resolve_config(argv, environ={})
    except ConfigError as error:
        _one_line(error)
    except SystemExit as stop:  # argparse: unknown flag, missing value; it printed the usage line
        assert stop.code == 2


SST2, MRPC, STSB = TASKS["sst2"], TASKS["mrpc"], TASKS["stsb"]


@SETTINGS
@given(data=st.binary(max_size=300))
@pytest.mark.parametrize("spec", [SST2, MRPC], ids=["sst2", "mrpc"])
def test_random_bytes_as_a_glue_file_give_rows_or_one_format_error(tmp_path_factory, spec, data):
    path = tmp_path_factory.mktemp("glue") / "train.tsv"
    path.write_bytes(data)
    try:
        rows = read_glue_tsv(str(path), spec)
    except GlueFormatError as error:
        _one_line(error)
        assert str(path) in str(error)
        return
    assert len(rows) > 0 and len(rows.labels) == len(rows.text_a)


FIELD_TEXT = st.text(alphabet=st.characters(blacklist_characters="\t\r\n\x00", blacklist_categories=("Cs",)),
                     max_size=10)


@SETTINGS
@given(rows=st.lists(st.tuples(FIELD_TEXT, st.one_of(st.sampled_from(["0", "1", "2", "0.5", ""]), FIELD_TEXT),
                               st.integers(1, 3)), max_size=8),
       header=st.sampled_from(["sentence\tlabel", "label\tsentence", "sentence", "text\tlabel", ""]))
def test_random_rows_as_an_sst2_file_give_rows_or_one_format_error(tmp_path_factory, rows, header):
    path = tmp_path_factory.mktemp("glue") / "dev.tsv"
    lines = [header] + ["\t".join([text, label, *[""] * (extra - 1)][:extra + 1]) for text, label, extra in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    try:
        examples = read_glue_tsv(str(path), SST2)
    except GlueFormatError as error:
        _one_line(error)
        return
    assert header == "sentence\tlabel" and set(examples.labels.tolist()) <= {0, 1}
    assert len(examples) == len(rows) and all(label in ("0", "1") and width == 1 for _, label, width in rows)


@SETTINGS
@given(data=st.binary(max_size=200), suffix=st.sampled_from([".csv", ".tsv", ".jsonl", ".txt"]))
def test_random_bytes_as_a_custom_file_give_rows_or_one_format_error(tmp_path_factory, data, suffix):
    path = tmp_path_factory.mktemp("custom") / f"train{suffix}"
    path.write_bytes(data)
    try:
        (texts, labels), lines = read_columns(str(path), ["text", "label"])
    except GlueFormatError as error:
        _one_line(error)
        return
    assert len(texts) == len(labels) == len(lines) > 0
