import json
import logging

import numpy as np
import pytest
from reference_bert import TINY, hidden_states, logits, tiny_config, tiny_inputs, tiny_tensors, write_checkpoint
from safetensors.numpy import load_file, save_file

from gated import (
    build_gated_encoder,
    count_parameters,
    get_weight_masks,
    last_hidden_state_model,
    load_pretrained,
    save_pretrained,
    set_head_gates,
    set_neuron_gates,
)
from gated_bert.pretrained_folders import PretrainedError, weights_sha256

LAYOUTS = {
    "bert_prefixed": ("bert", {}, {"prefix": True}),
    "bert_bare_gamma_beta": ("bert", {"hidden_act": "gelu_new"}, {"prefix": False, "gamma_beta": True}),
    "distilbert": ("distilbert", {}, {}),
    "distilbert_relu": ("distilbert", {"activation": "relu"}, {}),
    "roberta": ("roberta", {}, {}),
}


def _predict(model, inputs):
    return np.asarray(model(inputs, training=False))


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_loaded_logits_equal_the_numpy_reference(tmp_path, layout):
    kind, extra, options = LAYOUTS[layout]
    config = tiny_config(kind, **extra)
    tensors = tiny_tensors(config, **options)
    write_checkpoint(tmp_path / layout, config, tensors)
    inputs = tiny_inputs(pair=kind == "bert")
    model = load_pretrained(str(tmp_path / layout))
    np.testing.assert_allclose(_predict(model, inputs), logits(tensors, config, inputs), atol=1e-5)


def test_a_bare_encoder_gets_a_fresh_head_and_says_so(tmp_path, caplog):
    config = tiny_config("bert")
    tensors = tiny_tensors(config, prefix=False, head=False)
    write_checkpoint(tmp_path / "bare", config, tensors)
    with caplog.at_level(logging.INFO, logger="gated.pretrained"):
        model = load_pretrained(str(tmp_path / "bare"), num_labels=3)
    assert "classifier initialised fresh" in caplog.text
    assert _predict(model, tiny_inputs()).shape == (3, 3)
    hidden = np.asarray(last_hidden_state_model(model)(tiny_inputs()))
    np.testing.assert_allclose(hidden, hidden_states(tensors, config, **tiny_inputs()), atol=1e-5)
    with pytest.raises(PretrainedError, match="not fine-tuned.*train.py --init_from"):
        load_pretrained(str(tmp_path / "bare"), num_labels=2, require_head=True)


def test_mean_pooling_reads_the_mean_of_the_real_tokens_and_leaves_the_cls_head(tmp_path, caplog):
    config = tiny_config("bert")
    tensors = tiny_tensors(config, prefix=False)  # with a pooler and a 2-label classifier
    write_checkpoint(tmp_path / "m", config, tensors)
    with caplog.at_level(logging.INFO, logger="gated.pretrained"):
        model = load_pretrained(str(tmp_path / "m"), pooling="mean")
    assert "pooling='mean' reads no [CLS] head" in caplog.text
    assert "pooler" not in {layer.name for layer in model.layers}
    classifier = model.get_layer("classifier")
    assert not np.allclose(classifier.kernel.numpy(), tensors["classifier.weight"].T)  # fresh, not the [CLS] head's
    inputs = tiny_inputs()  # row 1 is padded from token 5
    hidden = hidden_states(tensors, config, **inputs)
    mask = inputs["attention_mask"][:, :, None].astype(np.float64)
    mean = (hidden * mask).sum(axis=1) / mask.sum(axis=1)
    expected = mean @ classifier.kernel.numpy() + classifier.bias.numpy()
    np.testing.assert_allclose(_predict(model, inputs), expected, atol=1e-5)
    with pytest.raises(ValueError, match="reads the mean of the token states.*--pooling cls"):
        save_pretrained(model, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_a_head_of_another_label_count_is_replaced(tmp_path, caplog):
    config = tiny_config("bert")
    write_checkpoint(tmp_path / "m", config, tiny_tensors(config, num_labels=2))
    with caplog.at_level(logging.INFO, logger="gated.pretrained"):
        model = load_pretrained(str(tmp_path / "m"), num_labels=5)
    assert "(2, 16), not (5, 16)" in caplog.text
    assert model.output_shape == (None, 5)


def test_save_then_load_is_exact_and_gates_are_folded_in(tmp_path):
    config = tiny_config("bert")
    tensors = tiny_tensors(config)
    write_checkpoint(tmp_path / "src", config, tensors)
    model = load_pretrained(str(tmp_path / "src"))
    save_pretrained(model, str(tmp_path / "out"), label_names=["neg", "pos"])
    written = load_file(str(tmp_path / "out" / "model.safetensors"))
    assert sorted(written) == sorted(tensors)
    for name, value in tensors.items():
        np.testing.assert_array_equal(written[name], value, err_msg=name)
    assert json.loads((tmp_path / "out" / "config.json").read_text())["id2label"] == {"0": "neg", "1": "pos"}
    reloaded = load_pretrained(str(tmp_path / "out"))
    for ours, theirs in zip(model.weights, reloaded.weights, strict=True):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy(), err_msg=ours.path)
    # A gate-scaled model is written as the function it computes.
    set_head_gates(model, {"block_0/attention": np.array([1.0, 0.5, 0.0, 2.0])})
    set_neuron_gates(model, {"block_1/ffn": np.linspace(0.0, 1.5, TINY["ffn"])})
    save_pretrained(model, str(tmp_path / "scaled"))
    inputs = tiny_inputs()
    np.testing.assert_allclose(_predict(load_pretrained(str(tmp_path / "scaled")), inputs), _predict(model, inputs),
                               atol=1e-5)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_pretrained(model, str(tmp_path / "out"))


@pytest.mark.parametrize("kind", ["distilbert", "roberta"])
def test_save_round_trips_every_architecture(tmp_path, kind):
    config = tiny_config(kind)
    tensors = tiny_tensors(config)
    write_checkpoint(tmp_path / "src", config, tensors)
    save_pretrained(load_pretrained(str(tmp_path / "src")), str(tmp_path / "out"))
    written = load_file(str(tmp_path / "out" / "model.safetensors"))
    assert sorted(written) == sorted(tensors)
    assert all(np.array_equal(written[name], value) for name, value in tensors.items())


def test_sharded_weights_load(tmp_path):
    config = tiny_config("bert")
    tensors = tiny_tensors(config)
    names = sorted(tensors)
    folder = tmp_path / "sharded"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for shard, keys in shards.items():
        save_file({key: tensors[key] for key in keys}, str(folder / shard))
    index = {"weight_map": {key: shard for shard, keys in shards.items() for key in keys}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    inputs = tiny_inputs()
    np.testing.assert_allclose(_predict(load_pretrained(str(folder)), inputs), logits(tensors, config, inputs),
                               atol=1e-5)
    assert len(weights_sha256(str(folder))) == 64


def test_errors_name_the_file_and_the_fix(tmp_path):
    config = tiny_config("bert")
    tensors = tiny_tensors(config)
    torch_only = tmp_path / "torch"
    torch_only.mkdir()
    (torch_only / "config.json").write_text(json.dumps(config))
    (torch_only / "pytorch_model.bin").write_bytes(b"\0")
    with pytest.raises(PretrainedError, match="pytorch_model.bin.*safetensors.*safe_serialization=True"):
        load_pretrained(str(torch_only))
    write_checkpoint(tmp_path / "gpt", {**config, "model_type": "gpt2"}, tensors)
    with pytest.raises(PretrainedError, match="model_type 'gpt2' is not supported; supported: bert, distilbert, "
                       "roberta"):
        load_pretrained(str(tmp_path / "gpt"))
    missing = {name: value for name, value in tensors.items() if "layer.1.output.dense" not in name}
    write_checkpoint(tmp_path / "missing", config, missing)
    with pytest.raises(PretrainedError, match=r"lacks 2 encoder tensors: \['encoder.layer.1.output.dense.bias'"):
        load_pretrained(str(tmp_path / "missing"))
    write_checkpoint(tmp_path / "extra", config, {**tensors, "bert.encoder.layer.9.adapter.weight": np.zeros(2)})
    with pytest.raises(PretrainedError, match=r"fit no bert encoder layer: \['encoder.layer.9.adapter.weight'\]"):
        load_pretrained(str(tmp_path / "extra"))
    wrong = {**tensors, "bert.encoder.layer.0.intermediate.dense.weight": np.zeros((8, 16), np.float32)}
    write_checkpoint(tmp_path / "shape", config, wrong)
    with pytest.raises(PretrainedError, match=r"block_0/ffn/intermediate/kernel has shape \(16, 8\).*needs \(16, 32\)"):
        load_pretrained(str(tmp_path / "shape"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(PretrainedError, match="has no config.json"):
        load_pretrained(str(tmp_path / "empty"))
    with pytest.raises(PretrainedError, match="contradicts the checkpoint's architecture"):
        load_pretrained(str(tmp_path / "extra").replace("extra", "missing"), d_model=32)


def test_unused_pretraining_heads_are_skipped(tmp_path, caplog):
    config = tiny_config("bert")
    tensors = {**tiny_tensors(config), "cls.predictions.bias": np.zeros(TINY["vocab"], np.float32)}
    write_checkpoint(tmp_path / "mlm", config, tensors)
    with caplog.at_level(logging.INFO, logger="gated.pretrained"):
        load_pretrained(str(tmp_path / "mlm"))
    assert "cls.predictions.bias" in caplog.text


def test_kernel_masks_only_for_weight_level_pruning_and_counts_exclude_masks(tmp_path):
    config = tiny_config("bert")
    write_checkpoint(tmp_path / "m", config, tiny_tensors(config))
    plain = load_pretrained(str(tmp_path / "m"))
    assert get_weight_masks(plain) == {}
    masked = load_pretrained(str(tmp_path / "m"), kernel_masks=True)
    assert len(get_weight_masks(masked)) == 6 * TINY["layers"]
    d, f, layers = TINY["hidden"], TINY["ffn"], TINY["layers"]
    per_block = 4 * (d * d + d) + (d * f + f) + (f * d + d) + 4 * d
    by_hand = (TINY["vocab"] + TINY["positions"] + 2) * d + 2 * d + layers * per_block + (d * d + d) + (d * 2 + 2)
    assert count_parameters(plain) == count_parameters(masked) == by_hand
    # Gates (heads, neurons, outputs) and masks are variables, but not parameters.
    gates = layers * (TINY["heads"] + f + d)
    assert plain.count_params() == by_hand + gates
    assert masked.count_params() == by_hand + gates + layers * (4 * d * d + 2 * d * f)


@pytest.mark.parametrize("options", [
    {"hidden_act": "gelu_new", "layer_norm_eps": 1e-5, "position_offset": 2, "num_positions": 40, "type_vocab_size": 1},
    {"hidden_act": "relu", "type_vocab_size": 0, "pooler": "relu", "kernel_masks": False},
    {"pooler": None},
])
def test_encoder_options_round_trip_through_config_and_save(tmp_path, options):
    import keras

    model = build_gated_encoder(vocab_size=30, max_len=12, num_layers=1, d_model=8, num_heads=2, dff=16,
                                num_labels=2, **options)
    path = tmp_path / "m.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path, compile=False)
    for layer in model.layers:
        if layer.name.startswith(("embeddings", "block_", "pooler", "classifier")):
            assert reloaded.get_layer(layer.name).get_config() == layer.get_config()
    ids = np.array([[2, 5, 7, 9]], np.int32)
    inputs = {"input_ids": ids, "token_type_ids": np.zeros_like(ids), "attention_mask": np.ones_like(ids)}
    np.testing.assert_allclose(_predict(reloaded, inputs), _predict(model, inputs), atol=1e-6)
    blocks = [layer["config"] for layer in model.get_config()["layers"] if layer["class_name"] == "EncoderBlock"]
    for key in ("hidden_act", "layer_norm_eps", "kernel_masks"):
        if key in options:
            assert blocks[0][key] == options[key]
    embeddings = model.get_layer("embeddings").get_config()
    assert embeddings["max_len"] == options.get("num_positions", 12 + options.get("position_offset", 0))
    assert (model.get_layer("embeddings").segment_embedding is None) == (options.get("type_vocab_size") == 0)
    assert ("pooler" in [layer.name for layer in model.layers]) == (options.get("pooler", "tanh") is not None)


def test_num_positions_must_hold_max_len():
    with pytest.raises(ValueError, match="num_positions=10 cannot hold max_len=12 tokens from position_offset=0"):
        build_gated_encoder(vocab_size=30, max_len=12, num_layers=1, d_model=8, num_heads=2, dff=16, num_labels=2,
                            num_positions=10)


@pytest.mark.parametrize("kind", ["bert", "distilbert", "roberta"])
def test_hugging_face_reads_what_save_pretrained_writes(tmp_path, kind):
    """Where PyTorch is installed (the bench extra), transformers itself scores our export alike."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    config = tiny_config(kind)
    write_checkpoint(tmp_path / "src", config, tiny_tensors(config))
    model = load_pretrained(str(tmp_path / "src"))
    set_neuron_gates(model, {"block_0/ffn": np.linspace(0.0, 1.0, TINY["ffn"])})
    save_pretrained(model, str(tmp_path / "out"))
    theirs = transformers.AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "out")).eval()
    inputs = tiny_inputs(pair=kind == "bert")
    if kind == "distilbert":
        feed = {key: inputs[key] for key in ("input_ids", "attention_mask")}
    elif kind == "roberta":
        feed = {key: inputs[key] for key in ("input_ids", "attention_mask")}
        feed["input_ids"] = np.where(inputs["attention_mask"] == 1, inputs["input_ids"], 1)  # RoBERTa pads with 1
    else:
        feed = inputs
    with torch.no_grad():
        expected = theirs(**{key: torch.from_numpy(value.astype(np.int64)) for key, value in feed.items()}).logits
    ours = dict(inputs, input_ids=feed["input_ids"].astype(np.int32))
    np.testing.assert_allclose(_predict(model, ours), expected.numpy(), atol=1e-4)
