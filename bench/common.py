"""Helpers the benchmarks share: median timing, numpy's GEMM rate measured in the same run, optional torch.

Speed is only ever measured in bench/*.py, never in the tests. Every figure a benchmark prints is a median
over repeats, and every rate is shown next to a reference measured in the same run on the same machine, so
that the ratios mean something on a busy or a slow machine.
"""

import os
import time
from contextlib import contextmanager

import numpy as np
from threadpoolctl import threadpool_limits

# The clock median_seconds reads: wall time by default. set_clock("cpu") switches to the process's CPU
# time, which other programs on a busy machine disturb much less; with one BLAS thread
# (OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1) it is then the single-core time.
_CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = _CLOCKS["wall"]


def set_clock(name):
    """Make median_seconds measure 'wall' time (the default) or the process's 'cpu' time."""
    global _clock
    if name not in _CLOCKS:
        raise ValueError(f"expected clock 'wall' or 'cpu', got {name!r}")
    _clock = _CLOCKS[name]


def median_seconds(fn, repeats=5, warmup=1):
    """
    Time a callable: run it `warmup` times untimed, then `repeats` times, and return the median time.

    Inputs:
    - fn: callable taking no argument
    - repeats: number of timed runs (>= 1)
    - warmup: number of untimed runs first (caches, lazy initialisation)

    Returns:
    - seconds: the median of the timed runs, a float (wall time unless set_clock("cpu") was called)
    """
    if repeats < 1:
        raise ValueError(f"expected repeats >= 1, got {repeats}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = _clock()
        fn()
        times.append(_clock() - start)
    return float(np.median(times))


def interleaved_medians(fns, repeats=5, warmup=1):
    """
    Time several callables round by round, each once per round, so that a change of load on a busy
    machine slows them alike, and return the median time of each.

    Inputs:
    - fns: list of callables taking no argument
    - repeats: number of timed rounds (>= 1)
    - warmup: number of untimed rounds first

    Returns:
    - seconds: list of floats, the median time of each callable (wall time unless set_clock("cpu"))
    """
    if repeats < 1:
        raise ValueError(f"expected repeats >= 1, got {repeats}")
    for _ in range(warmup):
        for fn in fns:
            fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, fn_times in zip(fns, times, strict=True):
            start = _clock()
            fn()
            fn_times.append(_clock() - start)
    return [float(np.median(fn_times)) for fn_times in times]


def keep_busy(fns, seconds=0.3):
    """
    Call fns round by round, untimed, for about `seconds`: past the time another library's threads go on
    spinning after a multi-threaded product (about 0.1 s for OpenBLAS) and the time an idle core takes to
    come back to speed, so that the timed rounds after it see the steady state of a loop.
    """
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for fn in fns:
            fn()


def time_medians(fns, repeats):
    """Median times of fns (interleaved rounds), after keep_busy with them."""
    keep_busy(fns)
    return interleaved_medians(fns, repeats=repeats)


@contextmanager
def threads(n, torch=None):
    """Inside the block numpy's BLAS (and torch, when given) use n threads; the previous counts after it."""
    previous = torch.get_num_threads() if torch is not None else None
    with threadpool_limits(limits=n, user_api="blas"):
        if torch is not None:
            torch.set_num_threads(n)
        try:
            yield
        finally:
            if torch is not None:
                torch.set_num_threads(previous)


def gemm_gflops(n=1024, dtype=np.float32, repeats=5):
    """
    Measure numpy's matrix product rate on two random n x n matrices: 2 n^3 flops over the median time.

    Inputs:
    - n: matrix size
    - dtype: float32 (the kit's training dtype) or float64
    - repeats: number of timed products

    Returns:
    - gflops: the rate in GFLOP/s, a float
    """
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    seconds = median_seconds(lambda: a @ b, repeats=repeats, warmup=1)
    return 2.0 * n**3 / seconds / 1e9


def try_import_torch():
    """Return the torch module when it is installed (it is never a dependency of the kit), else None."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def machine_line():
    """One line that says what the figures were measured on: CPUs, numpy, BLAS settings in the environment."""
    keys = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_CORETYPE")
    threads = {key: os.environ[key] for key in keys if key in os.environ}
    return f"{os.cpu_count()} CPUs, numpy {np.__version__}, environment {threads or 'default'}"
