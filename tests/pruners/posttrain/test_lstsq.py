"""The LSMR least-squares backend: SciPy on CPU, CuPy on GPU through DLPack."""

import importlib.util

import numpy as np
import pytest
import tensorflow as tf

from pruners.posttrain.lstsq import NormalEquations, SharedDesign, UnitContributions, resolve_backend, solve_lstsq

HAS_CUPY = importlib.util.find_spec("cupy") is not None
HAS_GPU = bool(tf.config.list_physical_devices("GPU"))


def test_lsmr_equals_numpy_lstsq_on_a_well_posed_system():
    rng = np.random.default_rng(0)
    matrix, rhs = rng.normal(size=(60, 7)), rng.normal(size=60)
    x, info = solve_lstsq(matrix, rhs, backend="scipy")
    np.testing.assert_allclose(x, np.linalg.lstsq(matrix, rhs, rcond=None)[0], atol=1e-8)
    assert info["backend"] == "scipy" and info["iterations"] > 0


def test_unit_contributions_act_like_their_dense_matrix():
    rng = np.random.default_rng(1)
    inputs, weight = rng.normal(size=(20, 5, 3)), rng.normal(size=(5, 3, 6))
    design = UnitContributions(tf.constant(inputs, tf.float32), tf.constant(weight, tf.float32))
    dense = design.dense()
    assert dense.shape == design.shape == (120, 5)
    # Column k is unit k's contribution inputs[:, k] @ weight[k], flattened row-major.
    np.testing.assert_allclose(dense[:, 2].reshape(20, 6), inputs[:, 2] @ weight[2], rtol=1e-5)
    scales = rng.normal(size=5)
    np.testing.assert_allclose(design.apply(scales).ravel(), dense @ scales, rtol=1e-5, atol=1e-5)
    rhs = rng.normal(size=(20, 6))
    x, _ = solve_lstsq(design, tf.constant(rhs), backend="auto")  # CPU tensors: SciPy
    np.testing.assert_allclose(x, np.linalg.lstsq(dense, rhs.ravel(), rcond=None)[0], atol=1e-5)


@pytest.mark.parametrize("width", [1, 4])
def test_the_gram_reduction_is_exact_also_for_dead_units(width):
    from pruners.posttrain.lstsq import gram_reduce

    rng = np.random.default_rng(7)
    inputs, weight = rng.normal(size=(50, 8, width)), rng.normal(size=(8, width, 5))
    inputs[:, 3] = 0.0  # a unit that never fires: its column of A is zero
    design = UnitContributions(inputs, weight)
    dense, rhs = design.dense(), rng.normal(size=(50, 5))
    r, c = gram_reduce(design, rhs, "scipy")
    assert r.shape == (7, 8)  # the dead unit's direction is dropped
    np.testing.assert_allclose(r.T @ r, dense.T @ dense, atol=1e-8)
    np.testing.assert_allclose(r.T @ c, dense.T @ rhs.ravel(), atol=1e-8)
    x, _ = solve_lstsq(design, rhs)
    np.testing.assert_allclose(x, np.linalg.lstsq(dense, rhs.ravel(), rcond=None)[0], atol=1e-6)
    assert x[3] == pytest.approx(0.0, abs=1e-9)  # the minimum-norm solution leaves it alone


def test_shared_design_solves_every_output_column_at_once():
    rng = np.random.default_rng(2)
    inputs, rhs = rng.normal(size=(40, 4)), rng.normal(size=(40, 3))
    design = SharedDesign(tf.constant(inputs), 3)
    dense = design.dense()
    assert dense.shape == design.shape == (120, 12)
    weights = rng.normal(size=(4, 3))
    np.testing.assert_allclose(dense @ weights.ravel(), (inputs @ weights).ravel())  # row-major W and B
    x, info = solve_lstsq(design, rhs, backend="scipy")
    np.testing.assert_allclose(x.reshape(4, 3), np.linalg.lstsq(inputs, rhs, rcond=None)[0], atol=1e-8)
    assert info["iterations"] > 0
    with pytest.raises(ValueError, match=r"SharedDesign needs inputs \(N, P\) and outputs > 0"):
        SharedDesign(np.ones(3), 2)


@pytest.mark.parametrize("columns, rank", [(6, 6), (6, 4)])
def test_normal_equations_give_the_least_squares_solution_with_a_bias_and_its_errors(columns, rank):
    """Formed in chunks of 64 rows from float32 inputs; also for a rank-deficient design (two columns repeated),
    where the minimum-norm solution is kept."""
    rng = np.random.default_rng(3)
    inputs, rhs = rng.normal(size=(500, rank)), rng.normal(size=(500, 4))
    inputs = np.concatenate([inputs, inputs[:, :columns - rank]], axis=1).astype(np.float32)
    equations = NormalEquations(tf.constant(inputs), tf.constant(rhs), "scipy", chunk=64)
    design = np.hstack([inputs.astype(np.float64), np.ones((500, 1))])
    weights, info = equations.solve()
    np.testing.assert_allclose(weights, np.linalg.lstsq(design, rhs, rcond=None)[0], atol=1e-8)
    assert weights.shape == (columns + 1, 4) and info["iterations"] > 0
    for trial in (weights, rng.normal(size=weights.shape)):
        assert equations.error(trial) == pytest.approx(np.mean((design @ trial - rhs) ** 2), rel=1e-9)


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="unknown least-squares backend 'torch'"):
        solve_lstsq(np.eye(2), np.ones(2), backend="torch")
    with pytest.raises(ValueError, match="b has 3 entries but A has 2 rows"):
        solve_lstsq(np.eye(2), np.ones(3), backend="scipy")
    with pytest.raises(ValueError, match=r"inputs \(N, K, R\) and weight \(K, R, D\)"):
        UnitContributions(np.ones((4, 2, 3)), np.ones((3, 3, 5)))


@pytest.mark.skipif(HAS_CUPY, reason="CuPy is installed here: the missing-CuPy error cannot happen")
def test_cupy_backend_without_cupy_names_the_fix():
    with pytest.raises(RuntimeError, match=r"backend='cupy' needs CuPy.*cupy-cuda12x.*backend='scipy'"):
        solve_lstsq(np.eye(2), np.ones(2), backend="cupy")
    assert resolve_backend("auto", tf.ones(2)) == "scipy"


@pytest.mark.skipif(not (HAS_CUPY and HAS_GPU), reason="needs CuPy and a GPU visible to TensorFlow")
def test_cupy_solves_gpu_tensors_handed_over_through_dlpack():
    import cupy

    from pruners.posttrain.lstsq import to_cupy

    rng = np.random.default_rng(2)
    with tf.device("GPU:0"):
        inputs = tf.constant(rng.normal(size=(50, 4, 2)), tf.float64)
        weight = tf.constant(rng.normal(size=(4, 2, 8)), tf.float64)
        rhs = tf.constant(rng.normal(size=(50, 8)), tf.float64)
    shared = to_cupy(inputs)
    assert isinstance(shared, cupy.ndarray)
    assert shared.data.ptr == cupy.from_dlpack(tf.experimental.dlpack.to_dlpack(inputs)).data.ptr  # no copy
    design = UnitContributions(inputs, weight)
    x, info = solve_lstsq(design, rhs, backend="auto")
    assert info["backend"] == "cupy"
    np.testing.assert_allclose(x, np.linalg.lstsq(design.dense(), rhs.numpy().ravel(), rcond=None)[0], atol=1e-6)
    # Weight tuning's path: the normal equations formed on the GPU, then one LSMR for every output column.
    flat = tf.reshape(inputs, (50, 8))
    equations = NormalEquations(flat, rhs, "cupy", chunk=16)
    assert isinstance(equations.gram, cupy.ndarray) and equations.gram.shape == (9, 9)
    weights, info = equations.solve()
    assert info["backend"] == "cupy"
    design = np.hstack([flat.numpy(), np.ones((50, 1))])
    np.testing.assert_allclose(weights, np.linalg.lstsq(design, rhs.numpy(), rcond=None)[0], atol=1e-6)
