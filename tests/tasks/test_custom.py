import json

import numpy as np
import pytest

from tasks import GlueFormatError
from tasks.custom import custom_task, infer_labels, read_custom_split


def _write(path, text):
    path.write_text(text)
    return str(path)


def test_csv_tsv_and_json_lines_read_alike(tmp_path):
    csv_file = _write(tmp_path / "a.csv", 'text,other,label\n"a, ""quoted"" text",x,pos\nplain,y,neg\n')
    tsv_file = _write(tmp_path / "a.tsv", 'text\tother\tlabel\na, "quoted" text\tx\tpos\nplain\ty\tneg\n')
    rows = [{"text": 'a, "quoted" text', "label": "pos"}, {"text": "plain", "label": "neg"}]
    jsonl_file = _write(tmp_path / "a.jsonl", "\n".join(json.dumps(row) for row in rows) + "\n\n")
    for path in (csv_file, tsv_file, jsonl_file):
        assert infer_labels(path, "label") == ("neg", "pos")
        spec = custom_task(path, path, "text", "label", ("neg", "pos"))
        examples = read_custom_split(spec, "dev")
        assert examples.text_a == ['a, "quoted" text', "plain"] and examples.text_b is None
        np.testing.assert_array_equal(examples.labels, [1, 0])


def test_labels_are_sorted_numerically_and_floats_mean_regression(tmp_path):
    ints = _write(tmp_path / "i.csv", "text,label\na,10\nb,2\nc,2\n")
    assert infer_labels(ints, "label") == ("2", "10")
    floats = _write(tmp_path / "f.csv", "s1,s2,score\na,b,0.5\nc,d,4\n")
    assert infer_labels(floats, "score") is None
    assert infer_labels(ints, "label", "regression") is None
    spec = custom_task(floats, floats, "s1", "score", None, text_pair_column="s2")
    assert spec.is_regression and spec.is_pair and spec.metrics == ("pearson", "spearman")
    examples = read_custom_split(spec, "train")
    assert examples.text_b == ["b", "d"] and examples.labels.dtype == np.float32
    np.testing.assert_allclose(examples.labels, [0.5, 4.0])
    assert custom_task(ints, ints, "text", "label", ("a", "b", "c")).metrics == ("accuracy",)
    assert custom_task(ints, ints, "text", "label", ("a", "b")).metrics == ("accuracy", "f1")


BAD_FILES = [  # (file name, contents, call, expected message)
    ("short.tsv", "text\tlabel\ngood\t1\nbad row\n", "infer",
     r"short.tsv:3: expected 2 fields \(the header's\), got 1"),
    ("cols.csv", "sentence,label\na,1\n", "train", r"cols.csv:2: no column \['text'\].*--text_column"),
    ("bad.jsonl", '{"text": "a", "label": 1}\n[1, 2]\n', "infer",
     "bad.jsonl:2: expected a JSON object per line, got list"),
    ("dev.csv", "text,label\na,neg\nb,maybe\n", "dev", r"dev.csv:3: label 'maybe' is not one of the training labels"),
    ("one.csv", "text,label\na,x\nb,x\n", "infer", "one label only"),
    ("s.csv", "text,label\na,0.5\nb,high\n", "regression", r"s.csv:3: regression label 'high' is not a number"),
    ("x.txt", "text,label\n", "infer", "unknown file type; name it .csv, .tsv, .json or .jsonl"),
]


@pytest.mark.parametrize(("name", "contents", "call", "message"), BAD_FILES, ids=[row[0] for row in BAD_FILES])
def test_bad_files_get_file_and_line(tmp_path, name, contents, call, message):
    path = _write(tmp_path / name, contents)
    with pytest.raises(GlueFormatError, match=message):
        if call in ("infer", "regression"):
            infer_labels(path, "label", "regression" if call == "regression" else "auto")
        else:
            read_custom_split(custom_task(path, path, "text", "label", ("neg", "pos")), call)
