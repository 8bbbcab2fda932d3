"""The real pretrained checkpoint all-MiniLM-L6-v2 against the independent numpy BERT (tests/reference_bert.py)."""

import json

import numpy as np
from reference_bert import hidden_states
from safetensors.numpy import load_file

from gated import count_parameters, last_hidden_state_model, load_pretrained
from tasks import get_task, load_tokenizer, read_glue_tsv


def _sentences(glue_dir):
    examples = read_glue_tsv(get_task("sst2").split_file(str(glue_dir), "dev"), get_task("sst2"), limit=9)
    return examples.text_a[:7], (examples.text_a[7], examples.text_a[8])


def test_minilm_hidden_states_and_tokenization_match_the_references(minilm_dir, glue_dir):
    from tokenizers import Tokenizer

    singles, pair = _sentences(glue_dir)
    tokenizer = load_tokenizer(str(minilm_dir))
    reference = Tokenizer.from_file(str(minilm_dir / "tokenizer.json"))
    reference.no_padding()
    reference.no_truncation()
    encoded = [tokenizer(text, return_token_type_ids=True) for text in singles]
    encoded.append(tokenizer(*pair, return_token_type_ids=True))
    expected = [reference.encode(text) for text in singles] + [reference.encode(*pair)]
    for ours, theirs in zip(encoded, expected, strict=True):
        assert ours["input_ids"] == theirs.ids
        assert ours["token_type_ids"] == theirs.type_ids
    assert set(encoded[-1]["token_type_ids"]) == {0, 1}

    length = max(len(row["input_ids"]) for row in encoded)
    inputs = {key: np.zeros((len(encoded), length), np.int32) for key in ("input_ids", "token_type_ids",
                                                                         "attention_mask")}
    for row, item in enumerate(encoded):
        size = len(item["input_ids"])
        inputs["input_ids"][row, :size] = item["input_ids"]
        inputs["token_type_ids"][row, :size] = item["token_type_ids"]
        inputs["attention_mask"][row, :size] = 1
    model = load_pretrained(str(minilm_dir))
    assert count_parameters(model) == 22_713_216 + 384 * 2 + 2  # the published 22.7M plus a fresh 2-label head
    ours = np.asarray(last_hidden_state_model(model)(inputs, training=False))
    config = json.loads((minilm_dir / "config.json").read_text())
    theirs = hidden_states(load_file(str(minilm_dir / "model.safetensors")), config, **inputs)
    keep = inputs["attention_mask"].astype(bool)
    np.testing.assert_allclose(ours[keep], theirs[keep], atol=1e-4)
