"""Shared fixtures: seeded micro models, real offline data, a tiny WordPiece tokenizer."""

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
MICRO = {"vocab_size": 64, "max_len": 16, "num_layers": 2, "d_model": 16, "num_heads": 4, "dff": 32}


def compact_parameter_count(heads, widths, d=MICRO["d_model"], dh=MICRO["d_model"] // MICRO["num_heads"], labels=2):
    """Parameters of a compact micro encoder with `heads` and `widths` per block, counted by hand from BERT's
    layout (token, position and segment embeddings; per block q/k/v, output projection, FFN, two LayerNorms)."""
    embeddings = (MICRO["vocab_size"] + MICRO["max_len"] + 2) * d + 2 * d
    blocks = sum(3 * (d * h * dh + h * dh) + h * dh * d + d + 2 * d  # q, k, v; output projection; LayerNorm
                 + d * f + f + f * d + d + 2 * d  # intermediate; FFN output; LayerNorm
                 for h, f in zip(heads, widths, strict=True))
    return embeddings + blocks + d * d + d + d * labels + labels  # pooler, classifier


def pytest_collection_modifyitems(items):
    """Files marked `heavy` (a minute or more of training: train.py runs, training loops) go first, in their order.
    `make test` sends whole files to its workers in this order (`--dist loadfile --no-loadscope-reorder`): a heavy
    file started last would keep one worker busy long after the other ran out of files."""
    items.sort(key=lambda item: item.get_closest_marker("heavy") is None)  # stable: the order within each kind stays


# A gumbel run short enough for a test that still switches some neurons off (train_micro_sst2's extra flags).
GUMBEL_FLAGS = ("--enable_pruning", "true", "--pruning_method", "gumbel", "--target_sparsity", "0.5",
                "--target_warmup", "0.1", "--masks_lr", "0.5")


def train_micro_sst2(out, glue_dir, tokenizer_dir, train_rows, eval_rows, *flags):
    """Train a 2-block encoder (d_model 32, 2 heads, dff 64, max_len 64) for one epoch on the first `train_rows`
    SST-2 rows into `out` (its checkpoints in `out/checkpoints_<method>_sst2`), scored on `eval_rows` dev rows."""
    from experiment import train

    argv = ["--num_layers", "2", "--d_model", "32", "--num_heads", "2", "--dff", "64", "--max_len", "64",
            "--batch_size", "32", "--learning_rate", "1e-3", "--verbose", "0", "--data_dir", str(glue_dir),
            "--tokenizer", str(tokenizer_dir), "--task", "sst2", "--epochs", "1", "--max_train_samples",
            str(train_rows), "--max_eval_samples", str(eval_rows), "--output_dir", str(out), "--cache_dir",
            str(out / "cache"), *flags]
    assert train.main(argv) == 0
    return out


def micro_sample_batches(seed, count=3, size=4, length=6):
    """`count` sample batches `(inputs, labels)` of random micro-vocabulary ids; rows 0 and 1 are padded."""
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(count):
        mask = np.ones((size, length), "int32")
        mask[0, 4:] = 0
        mask[1, 3:] = 0
        ids = rng.integers(1, MICRO["vocab_size"], size=(size, length)).astype("int32") * mask
        batches.append(({"input_ids": ids, "token_type_ids": np.zeros_like(ids), "attention_mask": mask},
                        np.zeros(size, "int64")))
    return batches


def _shared_path(env_name, default, probe):
    """A path from the environment or ../shared; skipped locally when absent, a failure under CI."""
    path = Path(os.environ.get(env_name) or default)
    if not (path / probe).exists():
        message = f"offline data not found: {path / probe} (set {env_name})"
        if os.environ.get("CI") == "true":
            pytest.fail(message + "; CI must have the data", pytrace=False)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def glue_dir():
    return _shared_path("GLUE_DIR", SHARED / "glue", "SST-2/train.tsv")


@pytest.fixture(scope="session")
def bert_tokenizer_dir():
    return _shared_path("TOKENIZER", SHARED / "tokenizers" / "bert-base-uncased", "vocab.txt")


@pytest.fixture
def micro_model():
    """A seeded 2-block gated encoder with 4 heads (d_model 16) and 2 labels."""
    from gated import build_gated_encoder

    keras.utils.set_random_seed(0)
    return build_gated_encoder(**MICRO, num_labels=2)


@pytest.fixture
def micro_batch():
    """Three sequences of length 8; the last two padded."""
    rng = np.random.default_rng(0)
    ids = rng.integers(1, MICRO["vocab_size"], size=(3, 8)).astype("int32")
    mask = np.ones((3, 8), dtype="int32")
    mask[1, 5:] = 0
    mask[2, 3:] = 0
    ids[mask == 0] = 0
    types = np.zeros((3, 8), dtype="int32")
    types[:, 4:] = 1
    return {"input_ids": ids, "token_type_ids": types * mask, "attention_mask": mask}


WORDS = ["the", "movie", "was", "great", "bad", "a", "film", "not", "good", "is", "it", "'", "\"", "s", ",", "."]


@pytest.fixture(scope="session")
def wordpiece_dir(tmp_path_factory):
    """A tiny uncased WordPiece tokenizer saved to disk (no hub, no shared data)."""
    from transformers import BertTokenizerFast

    folder = tmp_path_factory.mktemp("wordpiece")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, "##s", "##ing"]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def minilm_dir():
    """The real pretrained checkpoint all-MiniLM-L6-v2 (a Hugging Face BERT folder)."""
    return _shared_path("MINILM_DIR", SHARED / "models" / "all-MiniLM-L6-v2", "model.safetensors")
