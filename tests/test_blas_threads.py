"""asgn3/blas_threads.py: small products on one BLAS thread; no failure where the libraries are hidden."""

from contextlib import nullcontext

import pytest
import threadpoolctl

from asgn3 import blas_threads


@pytest.fixture
def fresh_controller(monkeypatch):
    """Forget the controller made by earlier calls, so that the next call makes one anew."""
    monkeypatch.setattr(blas_threads, "_controller", blas_threads._UNKNOWN)


def test_large_products_keep_the_blas_setting(fresh_controller):
    assert isinstance(blas_threads.blas_threads_for(blas_threads.ONE_THREAD_BELOW), nullcontext)


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
