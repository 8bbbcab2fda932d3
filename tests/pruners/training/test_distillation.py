"""Distillation: the loss terms against hand computations, the train step with a distiller, the teacher left
untouched."""

import keras
import numpy as np
import pytest

from callbacks import DistillationCallback
from conftest import MICRO
from gated import build_gated_encoder
from pruners import Distiller, SptPruner, hidden_loss, kd_loss, teacher_layers


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_kd_term_equals_a_hand_computation():
    student = np.array([[1.0, -0.5, 0.2], [0.3, 0.3, 2.0]], "float32")
    teacher = np.array([[2.0, 0.0, -1.0], [0.1, 0.9, 0.4]], "float32")
    t = 2.0
    p, q = _softmax(teacher / t), _softmax(student / t)
    expected = t * t * np.mean(np.sum(p * np.log(p / q), axis=1))
    assert float(kd_loss(student, teacher, t)) == pytest.approx(expected, rel=1e-5)
    assert float(kd_loss(teacher, teacher, t)) == pytest.approx(0.0, abs=1e-6)
    scores_s, scores_t = np.array([[0.5], [2.0]], "float32"), np.array([[1.0], [1.0]], "float32")
    assert float(kd_loss(scores_s, scores_t, t, regression=True)) == pytest.approx((0.25 + 1.0) / 2)


def test_hidden_term_equals_a_hand_computation_over_kept_tokens():
    rng = np.random.default_rng(0)
    student = [rng.normal(size=(2, 3, 4)).astype("float32") for _ in range(2)]
    teacher = [rng.normal(size=(2, 3, 5)).astype("float32") for _ in range(2)]
    maps = [rng.normal(size=(4, 5)).astype("float32") for _ in range(2)]
    mask = np.array([[1, 1, 0], [1, 0, 0]], "int32")
    per_layer = []
    for s, t, w in zip(student, teacher, maps, strict=True):
        diffs = [(s[b, i] @ w - t[b, i]) ** 2 for b in range(2) for i in range(3) if mask[b, i]]
        per_layer.append(np.mean(np.concatenate(diffs)))
    assert float(hidden_loss(student, teacher, mask, maps)) == pytest.approx(np.mean(per_layer), rel=1e-5)


def test_each_student_block_learns_from_an_evenly_spread_teacher_block():
    assert teacher_layers(2, 6) == [2, 5]
    assert teacher_layers(4, 6) == [1, 2, 4, 5]
    assert teacher_layers(6, 6) == list(range(6))
    assert teacher_layers(2, 1) == [0, 0]


def _batch(seed=0, rows=8):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, MICRO["vocab_size"], size=(rows, 6)).astype("int32")
    mask = np.ones_like(ids)
    mask[0, 4:] = 0
    return {"input_ids": ids * mask, "token_type_ids": np.zeros_like(ids), "attention_mask": mask}, ids[:, 1] % 2


def _model(seed, **shape):
    keras.utils.set_random_seed(seed)
    model = build_gated_encoder(**{**MICRO, **shape}, num_labels=2, kernel_masks=False)
    model.compile(keras.optimizers.SGD(0.1), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def test_with_alpha_zero_the_step_is_the_task_loss_step():
    x, y = _batch()
    plain, distilled = _model(1), _model(1)
    distilled.fit(x, y, batch_size=8, epochs=1, verbose=0,
                  callbacks=[DistillationCallback(Distiller(_model(2), alpha=0.0))])
    plain.fit(x, y, batch_size=8, epochs=1, verbose=0)
    for a, b in zip(plain.weights, distilled.weights, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7, err_msg=a.path)
    moved = _model(1)
    moved.fit(x, y, batch_size=8, epochs=1, verbose=0,
              callbacks=[DistillationCallback(Distiller(_model(2), alpha=0.5))])
    assert not np.allclose(moved.get_layer("classifier").kernel.numpy(),
                           plain.get_layer("classifier").kernel.numpy())


def test_the_teacher_never_changes_and_the_maps_learn():
    x, y = _batch()
    teacher = _model(2)  # d_model 16
    before = [w.numpy().copy() for w in teacher.weights]
    student = _model(1, d_model=8, num_heads=2, dff=16, num_layers=1)
    distiller = Distiller(teacher, alpha=0.7, hidden_weight=1.0, maps_lr=0.05)
    callback = DistillationCallback(distiller)
    history = student.fit(x, y, batch_size=4, epochs=3, verbose=0, callbacks=[callback])
    for a, b in zip(before, teacher.weights, strict=True):
        np.testing.assert_array_equal(a, b.numpy())
    (learned,) = distiller.maps  # one student block, mapped 8 -> 16 onto teacher block 1
    assert learned.shape == (8, 16) and distiller.pairs == [1]
    assert history.history["hidden_loss"][-1] < history.history["hidden_loss"][0]
    assert all(value > 0 for value in history.history["distill_loss"])
    # The maps and their optimizer come back exactly from a resume state.
    arrays, values = callback.resume_state()
    saved = [v.numpy().copy() for v in (*distiller.maps, *distiller.optimizer.variables)]
    student.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[callback])
    callback.restore_state(arrays, values)
    for a, b in zip(saved, (*distiller.maps, *distiller.optimizer.variables), strict=True):
        np.testing.assert_array_equal(a, b.numpy())


def test_spt_probes_the_distillation_loss_when_a_teacher_is_attached():
    x, y = _batch()
    student, teacher = _model(1), _model(2)
    teacher.get_layer("classifier").bias.assign([1.5, -1.5])  # a teacher that disagrees with the student
    spt = SptPruner(granularity="both")
    spt.attach(student)
    student_logits, teacher_logits = student(x, training=False).numpy(), teacher(x, training=False).numpy()
    task = -np.mean(np.log(_softmax(student_logits)[np.arange(len(y)), y]))
    t = 3.0
    p, q = _softmax(teacher_logits / t), _softmax(student_logits / t)
    kd = t * t * np.mean(np.sum(p * np.log(p / q), axis=1))
    assert spt.probe_units_loss(x, y) == pytest.approx(task, rel=1e-5)
    Distiller(teacher, temperature=t, alpha=0.25).attach(student)
    assert kd > 0.1 * task  # the two objectives differ enough to tell apart
    assert float(student.objective(x, y)) == pytest.approx(0.75 * task + 0.25 * kd, rel=1e-5)
    assert spt.probe_units_loss(x, y) == pytest.approx(0.75 * task + 0.25 * kd, rel=1e-5)


def test_a_teacher_of_another_label_count_is_refused():
    keras.utils.set_random_seed(0)
    teacher = build_gated_encoder(**MICRO, num_labels=3)
    with pytest.raises(ValueError, match="teacher gives 3 outputs, the student 2"):
        Distiller(teacher).attach(_model(1))
