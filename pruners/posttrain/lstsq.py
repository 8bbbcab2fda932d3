"""Least squares with LSMR: SciPy on CPU, CuPy on GPU (TensorFlow tensors handed over through DLPack).

`solve_lstsq(A, b)` solves `min ||A x - b||` for a dense matrix or for
`UnitContributions`, the structured matrix of the rescaling step (one column
per kept unit: that unit's contribution to a sublayer's output), or
`SharedDesign`, `min ||X W - B||` over a whole weight matrix `W`. Neither
is materialised: `UnitContributions` is reduced exactly to its `K x K` normal
equations (`gram_reduce`), `SharedDesign` is applied as a linear operator.
K-prune's weight tuning forms its normal equations in chunks of rows
(`NormalEquations`) and solves them as a `SharedDesign`.
"""

import importlib.util

import numpy as np

BACKENDS = ("auto", "scipy", "cupy")
CUPY_HINT = ("install the GPU extra (pip install -e '.[gpu]', which brings cupy-cuda12x) on a machine with a CUDA "
             "GPU, or use backend='scipy'")


class UnitContributions:
    """The matrix whose column `k` is `vec(inputs[:, k, :] @ weight[k])`, without building it.

    A sublayer's output is `sum_k scale_k * inputs[:, k, :] @ weight[k]` plus
    terms that do not depend on the scales: an attention head's context
    (`R = head_dim`) times its rows of the output projection, or an FFN
    neuron's activation (`R = 1`) times its output row.

    Args:
        inputs: `(N, K, R)` numpy array or TensorFlow tensor (N rows, K units).
        weight: `(K, R, D)`, same kind as `inputs`.
    """

    def __init__(self, inputs, weight):
        if len(inputs.shape) != 3 or len(weight.shape) != 3 or tuple(inputs.shape[1:]) != tuple(weight.shape[:2]):
            raise ValueError(f"UnitContributions needs inputs (N, K, R) and weight (K, R, D), got inputs "
                             f"{tuple(inputs.shape)} and weight {tuple(weight.shape)}")
        self.inputs = inputs
        self.weight = weight
        rows, units, _ = inputs.shape
        self.shape = (int(rows) * int(weight.shape[2]), int(units))

    def apply(self, scales):
        """`A @ scales` as an `(N, D)` numpy array (the scaled contributions, summed over units)."""
        inputs, weight = to_numpy(self.inputs), to_numpy(self.weight)
        rows, units, width = inputs.shape
        scaled = inputs.reshape(rows, units * width) * np.repeat(np.asarray(scales, np.float64), width)[None, :]
        return scaled @ weight.reshape(units * width, -1)

    def dense(self):
        """The materialised `(N * D, K)` matrix (numpy; for tests and small problems)."""
        inputs, weight = np.asarray(self.inputs), np.asarray(self.weight)
        return np.einsum("nkr,krd->ndk", inputs, weight).reshape(self.shape)


class SharedDesign:
    """The block matrix `I_D (x) X`: one least-squares problem for every column of `W` in `X @ W ~ B`.

    Solving it with LSMR gives the `(P, D)` weight matrix minimising
    `||X @ W - B||_F` for an `(N, P)` design `X` and an `(N, D)` target
    `B`; the solution vector is `W` flattened row-major (`W.ravel()`), so
    `solve_lstsq(design, B)[0].reshape(P, D)`.

    Args:
        inputs: the `(N, P)` design `X`, numpy array or TensorFlow tensor.
        outputs: `D`, the number of columns of `W` (and of `B`).
    """

    def __init__(self, inputs, outputs):
        if len(inputs.shape) != 2 or outputs <= 0:
            raise ValueError(f"SharedDesign needs inputs (N, P) and outputs > 0, got inputs {tuple(inputs.shape)} "
                             f"and outputs {outputs}")
        self.inputs = inputs
        self.outputs = int(outputs)
        rows, columns = inputs.shape
        self.shape = (int(rows) * self.outputs, int(columns) * self.outputs)

    def dense(self):
        """The materialised `(N * D, P * D)` matrix (numpy; for tests and small problems)."""
        inputs = to_numpy(self.inputs)
        return np.einsum("np,de->ndpe", inputs, np.eye(self.outputs)).reshape(self.shape)


def _array_module(backend):
    """`(array module, converter)` of a resolved backend: CuPy for `cupy`, numpy for `scipy`."""
    if backend == "cupy":
        import cupy

        return cupy, to_cupy
    return np, to_numpy


def _root_system(gram, moment, xp):
    """`(R, c)` with `R^T R = gram` and `R^T c = moment`: the normal equations `gram x = moment` as a square
    least-squares problem `min ||R x - c||`, from the eigendecomposition `gram = V diag(l) V^T`:
    `R = diag(sqrt(l)) V^T`, `c = diag(1 / sqrt(l)) V^T moment` (directions with `l` at rounding level dropped)."""
    values, vectors = xp.linalg.eigh(gram)
    keep = values > values.max() * gram.shape[0] * np.finfo(np.float64).eps
    root = xp.sqrt(values[keep])
    return root[:, None] * vectors[:, keep].T, (vectors[:, keep].T @ moment) / root.reshape(
        (-1,) + (1,) * (moment.ndim - 1))


class NormalEquations:
    """`A^T A`, `A^T B` and `||B||^2` of `min ||A W - B||` for `A = [X, 1]` (a ones column appended: a bias),
    summed over chunks of rows in float64, so that neither `A` nor `B` exists in float64 at once.

    They give the least-squares solution (`solve`: LSMR on `P + 1` rows instead of `N`; the reference K-prune
    solves the same normal equations) and the mean squared error of any `W` (`error`) in `P^2 D`
    multiply-adds instead of `N P D`. Forming them squares the design's condition number; `solve` scales the
    columns to unit norm first, which in float64 leaves the fits of this package far from trouble.

    Args:
        inputs: `X`, `(N, P)` numpy array or TF tensor (any float dtype).
        targets: `B`, `(N, D)`, same kind.
        backend: `scipy` (numpy) or `cupy` (on the GPU, TF tensors handed over through DLPack).
        chunk: rows per float64 chunk.
    """

    def __init__(self, inputs, targets, backend, chunk=8192):
        self.backend = backend
        self.xp, convert = _array_module(backend)
        rows, columns = (int(n) for n in inputs.shape)
        self.rows, self.outputs = rows, int(targets.shape[1])
        self.gram = self.xp.zeros((columns + 1, columns + 1))
        self.moment = self.xp.zeros((columns + 1, self.outputs))
        self.energy = 0.0
        for start in range(0, rows, chunk):
            x, b = convert(inputs[start:start + chunk]), convert(targets[start:start + chunk])
            x = self.xp.concatenate([x, self.xp.ones((x.shape[0], 1))], axis=1)
            self.gram += x.T @ x
            self.moment += x.T @ b
            self.energy += float((b * b).sum())

    def error(self, weights):
        """`mean (A W - B)^2` over the `N x D` entries, for `(P + 1, D)` weights (the bias last)."""
        weights = self.xp.asarray(weights, dtype=self.xp.float64)
        squares = (weights * (self.gram @ weights)).sum() - 2 * (weights * self.moment).sum() + self.energy
        return max(float(squares), 0.0) / (self.rows * self.outputs)

    def solve(self):
        """`(W, info)`: the least-squares solution `(P + 1, D)` (numpy, the bias last) and LSMR's `info`.

        The columns are scaled to unit norm, the normal equations written as a square problem
        (`_root_system`) and solved by LSMR for all `D` output columns at once (`SharedDesign`); from zero,
        LSMR converges to the minimum-norm solution.
        """
        norms = self.xp.sqrt(self.xp.maximum(self.xp.diag(self.gram), 1e-24))
        root, reduced = _root_system(self.gram / (norms[:, None] * norms[None, :]), self.moment / norms[:, None],
                                     self.xp)
        solution, info = solve_lstsq(SharedDesign(root, self.outputs), reduced, backend=self.backend)
        norms = norms.get() if self.xp is not np else norms
        return solution.reshape(-1, self.outputs) / np.asarray(norms)[:, None], info


def gram_reduce(contributions, rhs, backend):
    """`(R, c)`: a `(K, K)` problem `min ||R x - c||` with the same solutions as `min ||A x - rhs||` for the
    `UnitContributions` `A`, in the backend's array module.

    `A` has `N * D` rows (every token's every output feature) but only `K` columns, so its normal equations are
    small and cheap to form without building `A`: with `X` the `(N, K*R)` unit inputs and `W` the `(K*R, D)`
    output weights, `A^T A` sums `(X^T X) * (W W^T)` over each unit's `R x R` block, and `A^T rhs` sums
    `X * (rhs W^T)` over the rows and each unit's `R`; `_root_system` turns them into `(R, c)`. Forming them costs
    `N (K R)^2` multiply-adds instead of `N D K` per LSMR iteration (for 1,536 FFN neurons, 200 iterations
    on 8,192 tokens: 60 s on 2 CPU cores, against about 5 s).
    """
    xp, convert = _array_module(backend)
    inputs, weight = convert(contributions.inputs), convert(contributions.weight)
    rows, units, width = inputs.shape
    flat_inputs, flat_weight = inputs.reshape(rows, units * width), weight.reshape(units * width, -1)
    blocks = (flat_inputs.T @ flat_inputs) * (flat_weight @ flat_weight.T)  # (K*R, K*R)
    gram = blocks.reshape(units, width, units, width).sum(axis=(1, 3))  # (K, K) = A^T A
    projected = (flat_inputs * (convert(rhs).reshape(rows, -1) @ flat_weight.T)).sum(axis=0)  # (K*R,)
    moment = projected.reshape(units, width).sum(axis=1)  # (K,) = A^T rhs
    return _root_system(gram, moment, xp)


def _shared_operator(linalg, xp, design, convert):
    """A `LinearOperator` over `SharedDesign` in the `xp` array module (numpy or cupy)."""
    inputs = convert(design.inputs)  # (N, P)
    rows, columns = inputs.shape

    def matvec(w):
        return (inputs @ w.reshape(columns, -1)).ravel()  # (N*D,)

    def rmatvec(r):
        return (inputs.T @ r.reshape(rows, -1)).ravel()  # (P*D,)

    return linalg.LinearOperator(design.shape, matvec=matvec, rmatvec=rmatvec, dtype=xp.float64)


def _is_gpu_tensor(value):
    return "GPU" in str(getattr(value, "device", "")).upper() and hasattr(value, "numpy")


def _has_cupy():
    return importlib.util.find_spec("cupy") is not None


def resolve_backend(backend, *arrays):
    """`scipy` or `cupy` for `backend`; `auto` picks CuPy only for GPU-resident TF tensors with CuPy importable."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown least-squares backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    if backend == "cupy" and not _has_cupy():
        raise RuntimeError(f"backend='cupy' needs CuPy, which is not installed: {CUPY_HINT}")
    if backend == "auto":
        on_gpu = any(_is_gpu_tensor(array) for array in arrays)
        return "cupy" if on_gpu and _has_cupy() else "scipy"
    return backend


def to_cupy(value):
    """A CuPy float64 array from a TF tensor (zero-copy through DLPack, then cast on device) or a numpy array."""
    import cupy

    if hasattr(value, "numpy"):  # a TF tensor: share its device buffer
        import tensorflow as tf

        value = cupy.from_dlpack(tf.experimental.dlpack.to_dlpack(value))
    return cupy.asarray(value, dtype=cupy.float64)


def to_numpy(value):
    return np.asarray(value.numpy() if hasattr(value, "numpy") else value, dtype=np.float64)


def _flat_inputs(A):
    if isinstance(A, UnitContributions):
        return A.inputs, A.weight
    return (A.inputs,) if isinstance(A, SharedDesign) else (A,)


def solve_lstsq(A, b, backend="auto", atol=1e-8, btol=1e-8, maxiter=None):
    """`x` minimising `||A x - b||` with LSMR.

    Args:
        A: a 2-D matrix (numpy array or TF tensor), `UnitContributions` or `SharedDesign`.
        b: right-hand side with `A.shape[0]` entries (any shape that flattens to it).
        backend: `scipy` (CPU), `cupy` (GPU; TF tensors are handed over
            through DLPack without a copy) or `auto` (CuPy when the inputs are
            TF tensors on a GPU and CuPy is installed, SciPy otherwise).
        atol, btol, maxiter: LSMR's stopping rules.

    Returns:
        `(x, info)`: `x` a float64 numpy vector of `A.shape[1]` entries; `info`
        holds `backend`, `istop` (LSMR's stop reason), `iterations` and
        `residual_norm`.
    """
    backend = resolve_backend(backend, *_flat_inputs(A), b)
    xp, convert = _array_module(backend)
    if backend == "cupy":
        import cupyx.scipy.sparse.linalg as linalg
    else:
        import scipy.sparse.linalg as linalg
    rhs = convert(b).ravel()
    if rhs.shape[0] != A.shape[0]:
        raise ValueError(f"b has {rhs.shape[0]} entries but A has {A.shape[0]} rows")
    if isinstance(A, UnitContributions):
        operator, rhs = gram_reduce(A, rhs, backend)
    elif isinstance(A, SharedDesign):
        operator = _shared_operator(linalg, xp, A, convert)
    else:
        operator = convert(A)
    x, istop, iterations, residual, *_ = linalg.lsmr(operator, rhs, atol=atol, btol=btol, maxiter=maxiter)
    x = x.get() if backend == "cupy" else x
    return np.asarray(x, dtype=np.float64), {"backend": backend, "istop": int(istop), "iterations": int(iterations),
                                             "residual_norm": float(residual)}
