"""Bad inputs a new user gives: each is one line naming the file and what is wrong, with its exit status, never a
traceback (train.py and the readers behind it)."""

import json
import shutil

import pytest

from experiment import train

MICRO = ["--num_layers", "1", "--d_model", "16", "--num_heads", "2", "--dff", "32", "--max_len", "32",
         "--batch_size", "16", "--epochs", "1", "--verbose", "0", "--task", "sst2", "--max_train_samples", "40",
         "--max_eval_samples", "20"]


@pytest.fixture
def sst2_copy(tmp_path, glue_dir):
    """A GLUE folder holding only a copy of SST-2 (its first rows), to spoil."""
    folder = tmp_path / "glue" / "SST-2"
    folder.mkdir(parents=True)
    for name in ("train.tsv", "dev.tsv"):
        lines = (glue_dir / "SST-2" / name).read_bytes().splitlines(keepends=True)[:60]
        (folder / name).write_bytes(b"".join(lines))
    return folder


def _train(tmp_path, data_dir, tokenizer, *flags):
    return train.main([*MICRO, "--data_dir", str(data_dir), "--tokenizer", str(tokenizer), "--output_dir",
                       str(tmp_path / "out"), "--cache_dir", str(tmp_path / "cache"), *flags])


def _one_line_error(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in "\n".join(err), err
    return errors[0]


@pytest.mark.parametrize("split", ["train.tsv", "dev.tsv"])
def test_a_byte_that_is_not_utf8_names_file_line_and_offset(tmp_path, sst2_copy, bert_tokenizer_dir, capsys, split):
    path = sst2_copy / split
    lines = path.read_bytes().splitlines(keepends=True)
    lines[4] = lines[4][:3] + b"\xff" + lines[4][3:]
    path.write_bytes(b"".join(lines))
    offset = sum(len(line) for line in lines[:4]) + 3
    assert _train(tmp_path, sst2_copy.parent, bert_tokenizer_dir) == 1
    assert f"{path}:5: byte {offset} (0xff) is not UTF-8 text" in _one_line_error(capsys)
    assert not (tmp_path / "out").exists()


def test_a_binary_file_is_named(tmp_path, sst2_copy, bert_tokenizer_dir, capsys):
    (sst2_copy / "train.tsv").write_bytes(b"sentence\tlabel\n" + bytes(range(256)) * 4)
    assert _train(tmp_path, sst2_copy.parent, bert_tokenizer_dir) == 1
    assert f"{sst2_copy / 'train.tsv'}:2: byte 15 is a NUL: a binary file" in _one_line_error(capsys)


@pytest.mark.parametrize("split", ["train.tsv", "dev.tsv"])
def test_a_header_only_split_says_it_has_no_rows(tmp_path, sst2_copy, bert_tokenizer_dir, capsys, split):
    path = sst2_copy / split
    path.write_bytes(path.read_bytes().splitlines(keepends=True)[0])
    assert _train(tmp_path, sst2_copy.parent, bert_tokenizer_dir) == 1
    assert f"error: {path}: no rows after the header" in _one_line_error(capsys)


@pytest.mark.parametrize("content, message", [
    (b"\x89PNG\r\n\x1a\n\x00\x00", "is not JSON text: byte 0 (0x89) is not UTF-8"),
    (None, "is a folder; pass a JSON file"),
])
def test_a_binary_or_folder_config_is_named(tmp_path, capsys, content, message):
    path = tmp_path / "recipe.json"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    assert train.main(["--config", str(path), "--dry_run"]) == 2
    assert f"config file {path} {message}" in _one_line_error(capsys)


def test_a_max_len_beyond_the_position_limit_is_refused_with_the_limit(capsys):
    assert train.main(["--max_len", "5000", "--dry_run"]) == 2
    error = _one_line_error(capsys)
    assert "max_len=5000 exceeds 4096" in error and "set --max_len 4096 or less" in error
    assert train.main(["--max_len", "4096", "--dry_run"]) == 0


@pytest.mark.parametrize("damage, message", [
    ("empty vocab", "vocab.txt is empty"),
    ("no files", "lacks the tokenizer files: it needs tokenizer.json; or vocab.txt"),
    ("missing", "tokenizer folder not found"),
])
def test_a_tokenizer_folder_names_what_it_lacks(tmp_path, glue_dir, bert_tokenizer_dir, capsys, damage, message):
    folder = tmp_path / "tokenizer"
    if damage != "missing":
        shutil.copytree(bert_tokenizer_dir, folder)
        if damage == "empty vocab":
            (folder / "vocab.txt").write_text("")
        else:
            (folder / "vocab.txt").unlink()
    assert _train(tmp_path, glue_dir, folder) == 1
    error = _one_line_error(capsys)
    assert message in error and str(folder) in error
    if damage == "no files":
        assert "special_tokens_map.json" in error  # what it does hold


@pytest.mark.parametrize("change, message", [
    (lambda lut: lut.pop("shape"), "has no 'shape'"),
    (lambda lut: lut.update(counts=[str(c) for c in lut["counts"]]), "'counts' must hold whole numbers, got '0'"),
    (lambda lut: lut.pop("counts"), "needs matching 'counts' and 'latency_ms' lists"),
])
def test_a_broken_lut_names_the_key(tmp_path, capsys, change, message):
    from efficiency.latency import LutError, read_lut, write_lut

    shape = {"d_model": 16, "num_heads": 2, "head_dim": 8, "dff": 32}
    path = write_lut(tmp_path, "head", [0, 1, 2], [0.0, 0.1, 0.2], shape, 1, 8, "cpu")
    lut = json.loads(open(path).read())
    change(lut)
    open(path, "w").write(json.dumps(lut))
    with pytest.raises(LutError, match=message.replace("(", r"\(").replace("[", r"\[")):
        read_lut(path, "head", shape)
