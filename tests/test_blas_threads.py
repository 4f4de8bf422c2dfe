"""asgn3/blas_threads.py: small products on one BLAS thread; no failure where the libraries are hidden."""

import subprocess
import sys
from contextlib import nullcontext

import pytest
import threadpoolctl

from asgn3 import blas_threads
from asgn3.data_paths import KIT_DIR


@pytest.fixture
def fresh_controller(monkeypatch):
    """Forget the controller made by earlier calls, so that the next call makes one anew."""
    monkeypatch.setattr(blas_threads, "_controller", blas_threads._UNKNOWN)


def test_large_products_keep_the_blas_setting_on_an_idle_machine(fresh_controller, monkeypatch):
    monkeypatch.setattr(blas_threads, "machine_is_busy", lambda: False)
    assert isinstance(blas_threads.blas_threads_for(blas_threads.ONE_THREAD_BELOW), nullcontext)
    with blas_threads.blas_threads_for(blas_threads.ONE_THREAD_BELOW - 1):
        assert blas_threads.allowed_threads() == 1


def test_every_product_runs_on_one_thread_on_a_busy_machine(fresh_controller, monkeypatch):
    monkeypatch.setattr(blas_threads, "machine_is_busy", lambda: True)
    with blas_threads.blas_threads_for(1e12):
        assert blas_threads.allowed_threads() == 1


@pytest.mark.parametrize(("load", "busy"), [(0.5, False), (2.0, False), (2.6, True), (None, False)])
def test_busy_means_a_load_above_the_cores(monkeypatch, load, busy):
    def getloadavg():
        if load is None:
            raise OSError("no /proc/loadavg here")
        return (load, load, load)

    monkeypatch.setattr(blas_threads.os, "getloadavg", getloadavg)
    monkeypatch.setattr(blas_threads.os, "cpu_count", lambda: 2)
    assert blas_threads.machine_is_busy() is busy


def test_a_hidden_proc_maps_means_no_thread_control_not_an_error(fresh_controller, monkeypatch):
    def denied():
        raise PermissionError(13, "Permission denied", "/proc/self/maps")

    monkeypatch.setattr(blas_threads, "ThreadpoolController", denied)
    with blas_threads.blas_threads_for(1000):  # a small product: would ask for one thread
        pass
    assert blas_threads._controller is None


def test_small_products_run_on_one_thread(fresh_controller):
    with blas_threads.blas_threads_for(1000):
        blas = [info for info in threadpoolctl.threadpool_info() if info["user_api"] == "blas"]
        assert blas and all(info["num_threads"] == 1 for info in blas)


def test_allowed_threads_follows_a_limit_around_the_call(fresh_controller):
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        assert blas_threads.allowed_threads() == 1
    assert blas_threads.allowed_threads() >= 1


def test_allowed_threads_is_one_where_the_libraries_are_hidden(fresh_controller, monkeypatch):
    def denied():
        raise PermissionError(13, "Permission denied", "/proc/self/maps")

    monkeypatch.setattr(blas_threads, "ThreadpoolController", denied)
    assert blas_threads.allowed_threads() == 1


def test_a_first_call_before_any_import_of_numpy_or_scipy_still_controls_both_blas():
    # The controller sees only libraries already loaded: made first thing in a fresh process, it must
    # still find scipy's BLAS (the im2col extension's) next to numpy's.
    script = (
        "from asgn3 import blas_threads\n"
        "first = sorted(lib.filepath for lib in blas_threads._blas().lib_controllers)\n"
        "import numpy, scipy.linalg, threadpoolctl\n"
        "later = sorted(lib.filepath for lib in threadpoolctl.ThreadpoolController().lib_controllers)\n"
        "assert first == later and first, (first, later)\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=KIT_DIR)


def test_no_getloadavg_at_all_means_not_busy(monkeypatch):
    monkeypatch.delattr(blas_threads.os, "getloadavg")
    assert blas_threads.machine_is_busy() is False
