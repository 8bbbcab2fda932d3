"""Every GLUE TSV layout, parsed from small fixture files written here."""

import numpy as np
import pytest

from tasks import TASKS, GlueFormatError, read_glue_tsv

QUOTED = 'he said "it\'s "great", isn\'t it'  # unbalanced quotes must survive as-is


def write(tmp_path, name, lines):
    path = tmp_path / name
    path.write_text("\n".join("\t".join(fields) for fields in lines) + "\n", encoding="utf-8")
    return path


def test_sst2(tmp_path):
    path = write(tmp_path, "sst2.tsv", [["sentence", "label"], [QUOTED + " ", "1"], ["dull", "0"]])
    examples = read_glue_tsv(path, TASKS["sst2"])
    assert examples.text_a == [QUOTED + " ", "dull"] and examples.text_b is None
    assert examples.labels.tolist() == [1, 0] and examples.labels.dtype == np.int64


def test_cola_has_no_header(tmp_path):
    path = write(tmp_path, "cola.tsv", [["gj04", "1", "", "The \"book\" fell."], ["gj04", "0", "*", "Book the fell."]])
    examples = read_glue_tsv(path, TASKS["cola"])
    assert examples.text_a == ['The "book" fell.', "Book the fell."]
    assert examples.labels.tolist() == [1, 0]


def test_mrpc_msr_columns(tmp_path):
    header = ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]
    path = write(tmp_path, "mrpc.tsv", [header, ["1", "7", "8", QUOTED, "B one"], ["0", "9", "10", "A two", "B two"]])
    examples = read_glue_tsv(path, TASKS["mrpc"])
    assert examples.text_a == [QUOTED, "A two"] and examples.text_b == ["B one", "B two"]
    assert examples.labels.tolist() == [1, 0]


@pytest.mark.parametrize("task", ["rte", "qnli"])
def test_string_entailment_labels(tmp_path, task):
    cols = TASKS[task].text_columns
    path = write(tmp_path, f"{task}.tsv", [["index", *cols, "label"], ["0", "p", "h", "not_entailment"],
                                           ["1", "p2", "h2", "entailment"]])
    examples = read_glue_tsv(path, TASKS[task])
    assert examples.labels.tolist() == [1, 0] and examples.text_b == ["h", "h2"]


def test_wnli(tmp_path):
    path = write(tmp_path, "wnli.tsv", [["index", "sentence1", "sentence2", "label"], ["0", "a", "b", "1"]])
    assert read_glue_tsv(path, TASKS["wnli"]).labels.tolist() == [1]


def test_stsb_scores_are_floats(tmp_path):
    header = ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2",
              "score"]
    row = ["0", "main-captions", "MSRvid", "2012test", "0001", "none", "none", "A plane.", "An air plane.", "3.800"]
    examples = read_glue_tsv(write(tmp_path, "stsb.tsv", [header, row]), TASKS["stsb"])
    assert examples.labels.dtype == np.float32 and examples.labels.tolist() == [pytest.approx(3.8)]
    assert (examples.text_a, examples.text_b) == (["A plane."], ["An air plane."])


def test_mnli_uses_gold_label_and_named_columns(tmp_path):
    header = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
              "sentence1_parse", "sentence2_parse", "sentence1", "sentence2", "label1", "gold_label"]
    row = ["0", "1", "1e", "gov", "( x )", "( y )", "(x)", "(y)", "premise", "hypothesis", "neutral", "contradiction"]
    examples = read_glue_tsv(write(tmp_path, "mnli.tsv", [header, row]), TASKS["mnli"])
    assert examples.labels.tolist() == [2] and examples.text_a == ["premise"] and examples.text_b == ["hypothesis"]
    assert TASKS["mnli"].dev_file == "dev_matched.tsv"


def test_qqp(tmp_path):
    header = ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"]
    examples = read_glue_tsv(write(tmp_path, "qqp.tsv", [header, ["1", "2", "3", "q1?", "q2?", "1"]]), TASKS["qqp"])
    assert examples.labels.tolist() == [1] and examples.text_b == ["q2?"]


def test_limit_keeps_first_rows(tmp_path):
    path = write(tmp_path, "sst2.tsv", [["sentence", "label"]] + [[f"s{i}", str(i % 2)] for i in range(10)])
    examples = read_glue_tsv(path, TASKS["sst2"], limit=3)
    assert examples.text_a == ["s0", "s1", "s2"]


def test_malformed_row_names_file_and_line(tmp_path):
    path = write(tmp_path, "bad.tsv", [["sentence", "label"], ["ok", "1"], ["too", "many", "fields"]])
    with pytest.raises(GlueFormatError, match=r"bad.tsv:3: expected 2 tab-separated fields, got 3"):
        read_glue_tsv(path, TASKS["sst2"])


def test_unknown_label_names_file_and_line(tmp_path):
    path = write(tmp_path, "rte.tsv", [["index", "sentence1", "sentence2", "label"], ["0", "a", "b", "maybe"]])
    with pytest.raises(GlueFormatError, match=r"rte.tsv:2: unknown rte label 'maybe'"):
        read_glue_tsv(path, TASKS["rte"])


def test_wrong_layout_header_is_reported(tmp_path):
    path = write(tmp_path, "x.tsv", [["text", "label"], ["a", "1"]])
    with pytest.raises(GlueFormatError, match=r"x.tsv:1: header lacks the sst2 columns \['sentence'\]"):
        read_glue_tsv(path, TASKS["sst2"])


def test_bad_score_is_reported(tmp_path):
    header = ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2",
              "score"]
    row = ["0", "g", "f", "y", "o", "s", "s", "a", "b", "high"]
    with pytest.raises(GlueFormatError, match=r"stsb.tsv:2: score 'high' is not a number"):
        read_glue_tsv(write(tmp_path, "stsb.tsv", [header, row]), TASKS["stsb"])


@pytest.mark.parametrize("task", ["sst2", "cola", "rte", "wnli", "stsb", "mrpc"])
def test_real_glue_files_parse(glue_dir, task):
    """The real offline files parse completely with the documented row counts."""
    rows = {"sst2": (67349, 872), "cola": (8551, 1043), "rte": (2490, 277), "wnli": (635, 71),
            "stsb": (5749, 1500), "mrpc": (4076, 1725)}[task]
    spec = TASKS[task]
    counts = tuple(len(read_glue_tsv(path, spec)) for path in spec.local_files(glue_dir))
    assert counts == rows


def test_hub_failure_says_how_to_use_local_data(monkeypatch):
    import datasets

    from tasks import DataUnavailableError, load_hub_split

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataUnavailableError, match=r"GLUE_DIR=/path/to/glue or --data_dir .*RTE/train.tsv"):
        load_hub_split(TASKS["rte"], "train")
