import numpy as np
import pytest

from tasks import TASKS, Examples, GlueFormatError, load_split, load_tokenizer, tokenize_examples


def write_sst2(folder, rows):
    (folder / "SST-2").mkdir(parents=True, exist_ok=True)
    body = "sentence\tlabel\n" + "".join(f"{text}\t{label}\n" for text, label in rows)
    for name in ("train.tsv", "dev.tsv"):
        (folder / "SST-2" / name).write_text(body)


def test_single_sentences_have_cls_sep_and_zero_segments(wordpiece_dir):
    tokenizer = load_tokenizer(str(wordpiece_dir))
    split = tokenize_examples(Examples(["the movie", "great"], None, np.array([1, 0])), tokenizer, 16)
    assert split.lengths.tolist() == [4, 3]
    ids = split.input_ids[split.offsets[0]:split.offsets[1]]
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    assert not split.token_type_ids.any()


def test_pairs_get_token_type_ids(wordpiece_dir):
    tokenizer = load_tokenizer(str(wordpiece_dir))
    split = tokenize_examples(Examples(["the movie"], ["was great"], np.array([1])), tokenizer, 16)
    # [CLS] the movie [SEP] was great [SEP]
    assert split.token_type_ids.tolist() == [0, 0, 0, 0, 1, 1, 1]


def test_truncation_to_max_len(wordpiece_dir):
    tokenizer = load_tokenizer(str(wordpiece_dir))
    split = tokenize_examples(Examples(["the " * 50], ["good " * 50], np.array([1])), tokenizer, 12)
    assert split.lengths.tolist() == [12]


def test_cache_is_hit_on_second_load(wordpiece_dir, tmp_path, monkeypatch):
    write_sst2(tmp_path / "glue", [("the movie was great", 1), ("not good", 0), ('a "film"', 1)])
    tokenizer = load_tokenizer(str(wordpiece_dir))
    args = {"data_dir": str(tmp_path / "glue"), "max_len": 16, "cache_dir": str(tmp_path / "cache")}
    first = load_split(TASKS["sst2"], "train", tokenizer, **args)
    assert first.from_cache is False and len(list((tmp_path / "cache").glob("*.npz"))) == 1

    import tasks.tokenization as module

    def must_not_tokenize(*a, **k):
        raise AssertionError("tokenized again despite the cache")

    monkeypatch.setattr(module, "tokenize_examples", must_not_tokenize)
    monkeypatch.setattr(module, "read_glue_tsv", must_not_tokenize)
    second = load_split(TASKS["sst2"], "train", tokenizer, **args)
    assert second.from_cache is True
    for key in ("input_ids", "token_type_ids", "offsets", "labels"):
        np.testing.assert_array_equal(getattr(second, key), getattr(first, key))


def test_cache_key_changes_with_max_len_limit_and_data(wordpiece_dir, tmp_path):
    write_sst2(tmp_path / "glue", [("the movie", 1), ("not good", 0)])
    tokenizer = load_tokenizer(str(wordpiece_dir))
    common = {"data_dir": str(tmp_path / "glue"), "cache_dir": str(tmp_path / "cache")}
    load_split(TASKS["sst2"], "train", tokenizer, max_len=16, **common)
    assert load_split(TASKS["sst2"], "train", tokenizer, max_len=8, **common).from_cache is False
    assert load_split(TASKS["sst2"], "train", tokenizer, max_len=8, limit=1, **common).from_cache is False
    write_sst2(tmp_path / "glue", [("the movie was bad", 0), ("not good", 0), ("good", 1)])  # edited data
    fresh = load_split(TASKS["sst2"], "train", tokenizer, max_len=16, **common)
    assert fresh.from_cache is False and len(fresh) == 3


def test_missing_tokenizer_says_how_to_fix(tmp_path):
    with pytest.raises(OSError, match="TOKENIZER or --tokenizer"):
        load_tokenizer(str(tmp_path / "no-such-tokenizer"))


def test_real_bert_vocab_on_real_pairs(glue_dir, bert_tokenizer_dir, tmp_path):
    tokenizer = load_tokenizer(str(bert_tokenizer_dir))
    split = load_split(TASKS["rte"], "dev", tokenizer, data_dir=str(glue_dir), max_len=128,
                       cache_dir=str(tmp_path), limit=20)
    assert len(split) == 20 and split.lengths.max() <= 128
    assert split.token_type_ids.any() and split.input_ids.max() < 30522


def test_chunked_tokenization_matches_one_pass(wordpiece_dir, caplog, monkeypatch):
    import logging

    from gated_bert.progress import Progress

    monkeypatch.setattr(Progress, "min_seconds", 0.0)  # a line at every tenth, however fast

    tokenizer = load_tokenizer(str(wordpiece_dir))
    texts = [" ".join(["the", "movie", "was", "not", "good"][: 1 + i % 5]) for i in range(23)]
    examples = Examples(texts, texts[::-1], np.arange(23))
    whole = tokenize_examples(examples, tokenizer, 16)
    with caplog.at_level(logging.INFO, logger="tasks.tokenization"):
        chunked = tokenize_examples(examples, tokenizer, 16, chunk_size=5)
    for key in ("input_ids", "token_type_ids", "offsets", "labels"):
        np.testing.assert_array_equal(getattr(chunked, key), getattr(whole, key))
    assert "tokenization: 5/23 row (22%)" in caplog.text and "tokenization: 20/23 row (87%)" in caplog.text
    assert "tokenization: done, 23 row in" in caplog.text


def test_a_task_file_is_read_in_the_format_of_the_tasks_training_file(wordpiece_dir, tmp_path):
    from tasks import read_task_file
    from tasks.custom import custom_task

    tokenizer = load_tokenizer(str(wordpiece_dir))
    glue = tmp_path / "sst2.tsv"
    glue.write_text("sentence\tlabel\nthe movie\t1\ngreat\t0\n")
    split = read_task_file(TASKS["sst2"], str(glue), tokenizer, 16)
    assert split.lengths.tolist() == [4, 3] and split.labels.tolist() == [1, 0]
    # A custom task's file: its own columns, its labels mapped to the training file's class ids (not this file's).
    train = tmp_path / "train.csv"
    train.write_text("review,stars\nthe movie,bad\ngreat,good\nthe,meh\n")
    spec = custom_task(str(train), str(train), "review", "stars", ("bad", "good", "meh"))
    served = tmp_path / "served.jsonl"
    served.write_text('{"review": "great movie", "stars": "meh"}\n{"review": "the", "stars": "bad"}\n')
    split = read_task_file(spec, str(served), tokenizer, 16)
    assert split.lengths.tolist() == [4, 3] and split.labels.tolist() == [2, 0]
    served.write_text('{"review": "great", "stars": "awful"}\n')
    with pytest.raises(GlueFormatError, match=r"served.jsonl:1: label 'awful' is not one of the training labels"):
        read_task_file(spec, str(served), tokenizer, 16)
