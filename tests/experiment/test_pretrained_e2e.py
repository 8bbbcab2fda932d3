"""train.py --init_from, then prune.py and evaluate.py, on a tiny Hugging Face checkpoint written by the test."""

import hashlib
import json
import shutil

import numpy as np
import pytest
from reference_bert import TINY, tiny_config, tiny_tensors, write_checkpoint

from experiment import evaluate, prune, train
from experiment.checkpoints import load_checkpoint
from gated import count_parameters, get_weight_masks

ROWS = ["--max_train_samples", "64", "--max_eval_samples", "32", "--verbose", "0"]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, wordpiece_dir):
    """A tiny random BertModel folder (no classification head) with its own WordPiece tokenizer, and a
    sentence-transformers config beside config.json as in the real MiniLM folder (a `config_*.json` file, which
    train.py must not take for a train.py checkpoint's)."""
    folder = tmp_path_factory.mktemp("hf") / "tiny-bert"
    config = tiny_config("bert")
    write_checkpoint(folder, config, tiny_tensors(config, prefix=False, head=False))
    (folder / "config_sentence_transformers.json").write_text(json.dumps({"similarity_fn_name": "cosine"}))
    for item in wordpiece_dir.iterdir():
        shutil.copy(item, folder / item.name)
    return folder


@pytest.fixture(autouse=True)
def _no_tokenizer_env(monkeypatch):
    monkeypatch.delenv("TOKENIZER", raising=False)  # the checkpoint's own tokenizer is the default


def run_train(out, glue_dir, pretrained, *flags):
    argv = ["--init_from", str(pretrained), "--data_dir", str(glue_dir), "--output_dir", str(out),
            "--cache_dir", str(out / "cache"), "--epochs", "1", *ROWS, *flags]
    assert train.main(argv) == 0
    (path,) = out.glob("results_*/metadata_*.json")
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, glue_dir, pretrained):
    import os

    saved = os.environ.pop("TOKENIZER", None)
    try:
        out = tmp_path_factory.mktemp("baseline")
        return out, run_train(out, glue_dir, pretrained, "--task", "sst2")
    finally:
        if saved is not None:
            os.environ["TOKENIZER"] = saved


def test_init_from_takes_shape_tokenizer_and_recipe_from_the_checkpoint(baseline, pretrained):
    out, meta = baseline
    config = meta["config"]
    assert (config["num_layers"], config["d_model"], config["num_heads"], config["dff"], config["vocab_size"]) == \
        (TINY["layers"], TINY["hidden"], TINY["heads"], TINY["ffn"], TINY["vocab"])
    assert config["tokenizer"] == str(pretrained)
    assert (config["learning_rate"], config["batch_size"], config["dropout_rate"]) == (5e-5, 32, 0.1)
    digest = hashlib.sha256((pretrained / "model.safetensors").read_bytes()).hexdigest()
    assert meta["init_from"] == {"folder": str(pretrained), "weights_sha256": digest, "model_type": "bert"}
    model = load_checkpoint(meta["paths"]["best_checkpoint"])
    assert get_weight_masks(model) == {}  # no weight-level pruning: no kernel masks
    d, f = TINY["hidden"], TINY["ffn"]
    by_hand = (TINY["vocab"] + TINY["positions"] + 2 + 2) * d + TINY["layers"] * (
        4 * (d * d + d) + 2 * d * f + f + d + 4 * d) + d * d + d + 2 * d + 2
    assert meta["model"]["parameters"] == count_parameters(model) == by_hand
    # The encoder started from the checkpoint: its word embeddings moved only a fine-tuning step away.
    start = tiny_tensors(tiny_config("bert"), prefix=False, head=False)["embeddings.word_embeddings.weight"]
    trained = model.get_layer("embeddings").token_embedding.embeddings.numpy()
    assert 0 < np.abs(trained - start).max() < 0.05


def test_a_weight_pruning_method_fine_tunes_with_kernel_masks(tmp_path, glue_dir, pretrained):
    meta = run_train(tmp_path, glue_dir, pretrained, "--task", "sst2", "--pruning_method", "magnitude",
                     "--end_sparsity", "0.5", "--sparsity_steps", "25 50")
    model = load_checkpoint(meta["paths"]["last_checkpoint"])
    masks = get_weight_masks(model)
    assert len(masks) == 6 * TINY["layers"]
    zeros = sum(int(np.sum(mask == 0)) for mask in masks.values())
    assert zeros / sum(mask.size for mask in masks.values()) == pytest.approx(0.5, abs=0.01)
    assert meta["model"]["parameters"] == count_parameters(model)


def test_a_conflicting_shape_flag_is_a_clear_error(tmp_path, glue_dir, pretrained, capsys):
    argv = ["--init_from", str(pretrained), "--d_model", "32", "--data_dir", str(glue_dir)]
    assert train.main(argv) == 2
    assert "fixes the model's shape, but {'d_model': 32} contradicts its {'d_model': 16}" in capsys.readouterr().err
    assert train.main(["--init_from", str(tmp_path), "--data_dir", str(glue_dir)]) == 2
    assert "has no config.json" in capsys.readouterr().err


def test_prune_and_evaluate_take_the_fine_tuned_checkpoint(baseline, tmp_path, glue_dir, capsys):
    out, meta = baseline
    ckpt = out / "checkpoints_baseline_sst2"
    env = {"GLUE_DIR": str(glue_dir)}
    flags = ["--num_samples", "32", "--sample_batch_size", "16", "--max_eval_samples", "32", "--verbose", "0"]
    assert prune.main(["--ckpt_dir", str(ckpt), "--constraint", "0.5", "--output_dir", str(tmp_path), *flags],
                      env) == 0
    (metrics_path,) = tmp_path.glob("**/metrics.json")
    metrics = json.loads(metrics_path.read_text())
    assert metrics["macs"]["kept_fraction"] <= 0.5
    capsys.readouterr()
    assert evaluate.main(["--ckpt_dir", str(ckpt), "--masks_dir", str(metrics_path.parent), *flags[4:]],
                         env) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["dev_accuracy"] == metrics["dev"][metrics["final"]]["dev_accuracy"]


def test_a_hugging_face_folder_is_a_checkpoint_when_it_has_its_head(tmp_path, glue_dir, pretrained, capsys):
    env = {"GLUE_DIR": str(glue_dir)}
    assert evaluate.main(["--ckpt_dir", str(pretrained), "--task", "sst2"], env) == 2
    assert "has no classification head: it is not fine-tuned for sst2. Fine-tune it first (python train.py " \
           "--init_from" in capsys.readouterr().err
    assert evaluate.main(["--ckpt_dir", str(pretrained)], env) == 2
    assert "add --task" in capsys.readouterr().err
    tuned = tmp_path / "tuned"
    shutil.copytree(pretrained, tuned)
    config = tiny_config("bert")
    write_checkpoint(tuned, config, tiny_tensors(config, seed=3))  # BertForSequenceClassification with its head
    assert evaluate.main(["--ckpt_dir", str(tuned), "--task", "stsb"], env) == 2
    assert "head has 2 labels, but stsb has 1; it was fine-tuned for another task" in capsys.readouterr().err
    flags = ["--task", "sst2", "--max_eval_samples", "32", "--verbose", "0"]
    assert evaluate.main(["--ckpt_dir", str(tuned), *flags], env) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["dev_rows"] == 32 and 0 <= scored["dev_accuracy"] <= 1
    assert prune.main(["--ckpt_dir", str(tuned), "--task_name", "sst2", "--constraint", "0.5", "--num_samples", "32",
                       "--sample_batch_size", "16", "--output_dir", str(tmp_path / "out"), *flags[2:]], env) == 0
    assert list((tmp_path / "out").glob("**/head_mask.npy"))


@pytest.mark.parametrize("method", ["movement", "spt", "gumbel"])
def test_every_other_method_fine_tunes_an_imported_model(tmp_path, glue_dir, pretrained, method):
    flags = {"movement": ["--end_sparsity", "0.5", "--pruning_frequency_steps", "1"],
             "spt": ["--end_sparsity", "0.5", "--sparsity_steps", "50"],
             "gumbel": ["--target_sparsity", "0.5"]}[method]
    meta = run_train(tmp_path, glue_dir, pretrained, "--task", "sst2", "--pruning_method", method, *flags)
    assert meta["status"] == "completed" and meta["method"] == method
    model = load_checkpoint(meta["paths"]["last_checkpoint"])
    assert (get_weight_masks(model) != {}) == (method != "gumbel")  # gumbel learns unit masks, not weight masks
    assert meta["model"]["parameters"] == count_parameters(model)


def test_a_tokenizer_larger_than_the_checkpoints_vocabulary_is_refused(tmp_path, glue_dir, pretrained,
                                                                       bert_tokenizer_dir, capsys):
    argv = ["--init_from", str(pretrained), "--tokenizer", str(bert_tokenizer_dir), "--data_dir", str(glue_dir),
            "--output_dir", str(tmp_path), "--cache_dir", str(tmp_path / "cache"), *ROWS]
    assert train.main(argv) == 1
    assert "has 30522 tokens but vocab_size=40; use the checkpoint's own tokenizer" in capsys.readouterr().err
    assert not list(tmp_path.glob("results_*"))  # nothing half-written
