"""The least-squares backends side by side: SciPy's LSMR on the CPU against CuPy's on a GPU, on the problems
Fisher's rescaling and K-prune's weight tuning solve (MiniLM sizes), in one process, alternating, 3 rounds.

Needs only numpy, SciPy and CuPy (no TensorFlow): it loads `pruners/posttrain/lstsq.py` on its own, so it runs
on a GPU machine without the rest of the stack. Prints, per problem, the largest difference between the two
solutions, each one's distance to numpy's direct solution, and the median seconds of each backend.

    python bench/lstsq_gpu.py
"""

import importlib.util
import os
import statistics
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
spec = importlib.util.spec_from_file_location("lstsq", os.path.join(ROOT, "pruners", "posttrain", "lstsq.py"))
lstsq = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lstsq)


def problems(rng):
    """`{name: (solve(backend) -> x, reference x)}`."""
    units = lstsq.UnitContributions(rng.normal(size=(256, 1536, 1)), rng.normal(size=(1536, 1, 384)) / 40)
    target = units.apply(rng.uniform(0.5, 1.5, 1536)) + rng.normal(size=(256, 384)) * 0.01
    heads = lstsq.UnitContributions(rng.normal(size=(512, 12, 32)), rng.normal(size=(12, 32, 384)) / 20)
    head_target = heads.apply(rng.uniform(0.5, 1.5, 12)) + rng.normal(size=(512, 384)) * 0.01
    design = rng.normal(size=(8192, 385))
    weights = rng.normal(size=(385, 384)) / 20
    outputs = design @ weights + rng.normal(size=(8192, 384)) * 0.01
    augmented = np.hstack([design, np.ones((8192, 1))])
    return {
        "FFN rescale (1,536 neurons, 256 x 384 outputs)": (
            lambda backend: lstsq.solve_lstsq(units, target, backend=backend)[0],
            np.linalg.lstsq(units.dense(), target.ravel(), rcond=None)[0]),
        "head rescale (12 heads, 512 x 384 outputs)": (
            lambda backend: lstsq.solve_lstsq(heads, head_target, backend=backend)[0],
            np.linalg.lstsq(heads.dense(), head_target.ravel(), rcond=None)[0]),
        "weight tuning (8,192 x 385 design, 384 outputs)": (
            lambda backend: lstsq.NormalEquations(design, outputs, backend, chunk=2048).solve()[0],
            np.linalg.lstsq(augmented, outputs, rcond=None)[0]),
    }


def main():
    import cupy

    print(f"cupy {cupy.__version__}, device {cupy.cuda.runtime.getDeviceProperties(0)['name'].decode()}")
    for name, (solve, reference) in problems(np.random.default_rng(0)).items():
        seconds = {"scipy": [], "cupy": []}
        answers = {}
        for _ in range(3):
            for backend in ("scipy", "cupy"):
                start = time.perf_counter()
                answers[backend] = np.asarray(solve(backend))
                cupy.cuda.Device().synchronize()
                seconds[backend].append(time.perf_counter() - start)
        scale = np.abs(reference).max()
        print(f"{name}: max |cupy - scipy| {np.abs(answers['cupy'] - answers['scipy']).max() / scale:.2e} "
              f"(relative to max |x|); vs numpy lstsq: scipy {np.abs(answers['scipy'] - reference).max() / scale:.2e},"
              f" cupy {np.abs(answers['cupy'] - reference).max() / scale:.2e}; median s: scipy "
              f"{statistics.median(seconds['scipy']):.3f}, cupy {statistics.median(seconds['cupy']):.3f}", flush=True)


if __name__ == "__main__":
    main()
