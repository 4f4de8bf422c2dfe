"""Tests of asgn3/checkpoint.py: a round trip keeps arrays, numbers and dtypes; bad files are clear errors."""

import json

import numpy as np
import pytest

from asgn3.checkpoint import CHECKPOINT_VERSION, load_checkpoint, save_checkpoint


def run_state(rng):
    params = {"W": rng.standard_normal((3, 4)).astype(np.float32), "b": np.zeros(4, np.float32)}
    best = {name: value + 1 for name, value in params.items()}
    configs = {
        name: {"learning_rate": 1e-3, "t": np.int64(5), "m": rng.standard_normal(value.shape)}
        for name, value in params.items()
    }
    return params, best, configs


def test_round_trip_keeps_arrays_numbers_dtypes_and_the_callers_state(tmp_path):
    params, best, configs = run_state(np.random.default_rng(0))
    state = {"epoch": 3, "loss_history": [2.5, 1.25], "rng_state": {"state": 7}}
    save_checkpoint(tmp_path / "sub" / "run.npz", params, best, configs, state)
    assert not (tmp_path / "sub" / "run.npz.tmp").exists()  # written to a temporary name, then moved
    model_params = {name: np.zeros_like(value) for name, value in params.items()}
    loaded = load_checkpoint(tmp_path / "sub" / "run.npz", model_params)
    for name in params:
        np.testing.assert_array_equal(loaded["params"][name], params[name])
        np.testing.assert_array_equal(loaded["best_params"][name], best[name])
        assert loaded["params"][name].dtype == np.float32
        config = loaded["optim_configs"][name]
        np.testing.assert_array_equal(config["m"], configs[name]["m"])
        assert config["t"] == 5 and config["learning_rate"] == 1e-3
    assert loaded["state"] == {**state, "version": CHECKPOINT_VERSION}


def test_bad_files_are_clear_errors(tmp_path):
    params, best, configs = run_state(np.random.default_rng(1))
    with pytest.raises(FileNotFoundError, match="absent.npz not found"):
        load_checkpoint(tmp_path / "absent.npz", params)
    np.savez(tmp_path / "other.npz", x=np.zeros(2))
    with pytest.raises(ValueError, match="not a training checkpoint"):
        load_checkpoint(tmp_path / "other.npz", params)
    save_checkpoint(tmp_path / "run.npz", params, best, configs, {})
    with pytest.raises(ValueError, match=r"holds params \['W', 'b'\] but the model has \['W'\]"):
        load_checkpoint(tmp_path / "run.npz", {"W": params["W"]})
    with pytest.raises(ValueError, match=r"param W has shape \(3, 4\) but the model's is \(4, 3\)"):
        load_checkpoint(tmp_path / "run.npz", {"W": params["W"].T, "b": params["b"]})
    with np.load(tmp_path / "run.npz") as f:
        arrays = dict(f)
    arrays["state"] = np.array(json.dumps({**json.loads(str(arrays["state"])), "version": 99}))
    np.savez(tmp_path / "future.npz", **arrays)
    with pytest.raises(ValueError, match="checkpoint version 99, expected 1"):
        load_checkpoint(tmp_path / "future.npz", params)
