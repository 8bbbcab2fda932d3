"""Wall-clock timing of a compiled TensorFlow call: warm-up runs, then the median of repeats."""

import os
import platform
import time

import numpy as np
import tensorflow as tf


def measure_ms(fn, *args, repeats=10, warmup=3):
    """Median milliseconds of `fn(*args)` over `repeats` runs after `warmup` runs.

    `fn` should be a `tf.function`; its result is read back (`.numpy()`) each
    time, so asynchronous devices are timed to completion.
    """
    for _ in range(warmup):
        tf.nest.map_structure(lambda t: t.numpy(), fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        tf.nest.map_structure(lambda t: t.numpy(), fn(*args))
        times.append((time.perf_counter() - start) * 1000.0)
    return float(np.median(times))


def device_name():
    """`GPU: <name>` when TensorFlow sees a GPU, else `CPU: <processor> (<n> threads)`."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"GPU: {details.get('device_name', gpus[0].name)}"
    return f"CPU: {platform.processor() or platform.machine()} ({os.cpu_count()} threads)"
