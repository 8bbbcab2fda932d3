import json

import keras
import numpy as np
import pytest

from callbacks import BestAndLastCheckpoint
from gated_bert.files import atomic_path, read_json_object, write_json_atomic


def test_failed_write_leaves_nothing_behind(tmp_path):
    target = tmp_path / "model.keras"
    with pytest.raises(RuntimeError, match="crash"):
        with atomic_path(target) as tmp:
            assert tmp.endswith("model.keras")  # the writer still sees the extension
            with open(tmp, "w") as handle:
                handle.write("half a fi")
            raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_previous_file(tmp_path):
    target = tmp_path / "result.json"
    write_json_atomic(target, {"epoch": 1})
    with pytest.raises(TypeError):
        write_json_atomic(target, {("not", "a", "string", "key"): 2})
    assert json.loads(target.read_text()) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_json_is_standard_with_nan_as_null(tmp_path):
    write_json_atomic(tmp_path / "m.json", {"pearson": float("nan"), "rows": [1.0, float("nan"), -float("inf")],
                                            "loss": (float("inf"), 2.0)})
    text = (tmp_path / "m.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"pearson": None, "rows": [1.0, None, None], "loss": [None, 2.0]}


def test_best_checkpoint_survives_later_epochs(micro_model, micro_batch, tmp_path):
    best, last = tmp_path / "best.keras", tmp_path / "last.keras"
    callback = BestAndLastCheckpoint(str(best), str(last), "dev_accuracy")
    callback.set_model(micro_model)
    callback.on_train_begin()
    callback.on_epoch_end(0, {"dev_accuracy": 0.8})
    best_outputs = micro_model(micro_batch).numpy()
    for layer in micro_model.layers:  # "train": change every weight
        for weight in layer.trainable_weights:
            weight.assign(weight.numpy() + 0.1)
    callback.on_epoch_end(1, {"dev_accuracy": 0.7})  # worse: only `last` changes
    np.testing.assert_allclose(keras.saving.load_model(best)(micro_batch).numpy(), best_outputs, rtol=1e-6)
    assert not np.allclose(keras.saving.load_model(last)(micro_batch).numpy(), best_outputs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.keras", "last.keras"]


def test_read_json_object_names_what_is_wrong_with_the_file(tmp_path):
    good = tmp_path / "good.json"
    good.write_text('{"a": 1}')
    assert read_json_object(good, "thing", KeyError) == {"a": 1}
    with pytest.raises(LookupError, match=r"thing not found: .*missing.json; make one"):
        read_json_object(tmp_path / "missing.json", "thing", LookupError, "; make one")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(LookupError, match=r"thing .*bad.json is not valid JSON"):
        read_json_object(tmp_path / "bad.json", "thing", LookupError)
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(LookupError, match=r"thing .*list.json must hold a JSON object, got list"):
        read_json_object(tmp_path / "list.json", "thing", LookupError)


def test_a_staged_folder_replaces_the_old_one_only_when_complete(tmp_path):
    from gated_bert.files import staged_folder

    target = tmp_path / "out" / "run"
    with staged_folder(target) as tmp:
        (tmp_path / "out" / "run").mkdir()  # an older result
        (target / "old.txt").write_text("old")
        with open(f"{tmp}/new.txt", "w") as handle:
            handle.write("new")
        assert not (target / "new.txt").exists()  # not visible before the block ends
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    with pytest.raises(OSError, match="disk full"):
        with staged_folder(target) as tmp:
            (tmp_path / "out" / "half").write_text("")
            raise OSError("disk full")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]  # the earlier result stands
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".partial")]


def test_a_write_error_that_names_no_file_is_raised_naming_the_file(tmp_path):
    import errno

    import pytest

    from gated_bert.files import atomic_path

    target = tmp_path / "metrics.json"
    with pytest.raises(OSError, match=r"No space left on device \(while writing .*metrics.json\)") as raised:
        with atomic_path(target) as tmp:
            open(tmp, "w").write("half")
            raise OSError(errno.ENOSPC, "No space left on device")  # what write() raises on a full disk
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(target)
    assert list(tmp_path.iterdir()) == []
