"""train.py's `--init_from` with a train.py checkpoint folder: what the config takes from the checkpoint, and what
it refuses."""

import json
import re

import pytest

from experiment.config import ConfigError, GatedBertConfig, config_from_flags


@pytest.fixture
def checkpoint_folder(tmp_path, glue_dir):
    saved = GatedBertConfig(num_layers=2, d_model=32, num_heads=4, dff=64, vocab_size=30522, max_len=64,
                            task="sst2", data_dir=str(glue_dir), tokenizer="some/tokenizer").to_dict()
    (tmp_path / "config_composed_20260101_000000_000000.json").write_text(json.dumps(saved))
    (tmp_path / "best_composed_20260101_000000_000000.keras").write_bytes(b"")
    return tmp_path


def test_the_checkpoint_gives_shape_task_data_and_the_fine_tuning_recipe(checkpoint_folder, glue_dir):
    config = config_from_flags({"init_from": str(checkpoint_folder)}, environ={})
    assert (config.num_layers, config.d_model, config.num_heads, config.dff, config.max_len) == (2, 32, 4, 64, 64)
    assert (config.task, config.tokenizer, config.data_dir) == ("sst2", "some/tokenizer", str(glue_dir))
    assert (config.learning_rate, config.batch_size, config.epochs, config.pruning_method) == (5e-5, 32, 3, "none")
    assert config_from_flags({"init_from": str(checkpoint_folder), "max_len": "32"}, environ={}).max_len == 32


@pytest.mark.parametrize("flags, message", [
    ({"pruning_method": "movement"}, "pruning_method must be none, got 'movement'"),
    ({"task": "rte"}, "--task rte does not match the task of init_from"),
    ({"d_model": "64"}, "fixes the model's shape and head, but {'d_model': 64}"),
    ({"pooling": "mean"}, "but {'pooling': 'mean'} contradicts its {'pooling': 'cls'}"),
    ({"max_len": "128"}, "max_len=128 exceeds the max_len 64"),
])
def test_settings_that_contradict_the_checkpoint_are_refused(checkpoint_folder, flags, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        config_from_flags({"init_from": str(checkpoint_folder), **flags}, environ={})


def test_a_checkpoint_folder_without_its_model_is_refused(checkpoint_folder):
    for path in checkpoint_folder.glob("best_*"):
        path.unlink()
    with pytest.raises(ConfigError, match="init_from: .* has config_composed_.*json but not best_composed"):
        config_from_flags({"init_from": str(checkpoint_folder)}, environ={})


def test_a_hugging_face_folder_holding_config_star_json_files_is_still_a_hugging_face_folder(minilm_dir):
    """sentence-transformers folders (the real MiniLM) hold config_sentence_transformers.json beside config.json."""
    assert list(minilm_dir.glob("config_*.json"))
    config = config_from_flags({"init_from": str(minilm_dir)}, environ={})
    assert (config.num_layers, config.d_model, config.num_heads, config.dff) == (6, 384, 12, 1536)
