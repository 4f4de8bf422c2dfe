"""Checkpoints of a training run: the parameters, the optimizer state and the run's bookkeeping in one file.

Layout of the .npz file (version 1):
  params/<name>          the model's parameters
  best_params/<name>     the best parameters so far
  optim/<name>/<key>     the array entries of each parameter's optimizer config (adam's m and v, ...)
  state                  a JSON string: `version`, `optim_scalars` ({name: {key: number}}, the other entries
                         of the optimizer configs) and the caller's own entries (epoch, histories, the state
                         of the random generator, ...)
Only plain arrays and JSON: loading a checkpoint runs no code (allow_pickle=False).
"""

import json
import os
from pathlib import Path

import numpy as np

CHECKPOINT_VERSION = 1


def save_checkpoint(path, params, best_params, optim_configs, state):
    """
    Write a checkpoint atomically (a half-written file never replaces a good one).

    Inputs:
    - path: the .npz file to write; its folder is created if needed.
    - params, best_params: dicts of arrays with the same keys.
    - optim_configs: dict, for each parameter name, of its optimizer config (numbers and arrays).
    - state: dict of JSON-serialisable entries of the caller (not 'version' or 'optim_scalars').
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays, scalars = {}, {}
    for name, value in params.items():
        arrays[f"params/{name}"] = value
        arrays[f"best_params/{name}"] = best_params[name]
        scalars[name] = {}
        for key, entry in optim_configs[name].items():
            if isinstance(entry, np.ndarray):
                arrays[f"optim/{name}/{key}"] = entry
            else:
                scalars[name][key] = entry.item() if isinstance(entry, np.generic) else entry
    arrays["state"] = np.array(json.dumps({**state, "version": CHECKPOINT_VERSION, "optim_scalars": scalars}))
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)


def load_checkpoint(path, params):
    """
    Read a checkpoint written by save_checkpoint for a model whose parameters are `params`.

    Inputs:
    - path: the .npz file.
    - params: the model's current parameters (dict of arrays): the checkpoint must hold the same names
      and shapes; its arrays are cast to their dtypes.

    Returns a dict with params, best_params (dicts of arrays), optim_configs (dict of configs) and state
    (the caller's entries as saved, plus 'version').
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found: pass the checkpoint_path of an earlier run")
    with np.load(path, allow_pickle=False) as f:
        arrays = {key: f[key] for key in f.files}
    if "state" not in arrays:
        raise ValueError(f"{path} is not a training checkpoint (it has no 'state' entry)")
    state = json.loads(str(arrays["state"]))
    if state.get("version") != CHECKPOINT_VERSION:
        raise ValueError(
            f"{path} has checkpoint version {state.get('version')}, expected "
            f"{CHECKPOINT_VERSION}: it was written by another version of the kit"
        )
    _check_same_params(path, arrays, params)
    scalars = state.pop("optim_scalars")
    optim_configs = {name: dict(scalars[name]) for name in params}
    for key, value in arrays.items():
        if key.startswith("optim/"):
            _, name, entry = key.split("/", 2)
            optim_configs[name][entry] = value
    return {
        "params": {name: arrays[f"params/{name}"].astype(w.dtype) for name, w in params.items()},
        "best_params": {name: arrays[f"best_params/{name}"].astype(w.dtype) for name, w in params.items()},
        "optim_configs": optim_configs,
        "state": state,
    }


def _check_same_params(path, arrays, params):
    """The checkpoint must hold exactly the model's parameter names, with the same shapes."""
    saved = {key.split("/", 1)[1] for key in arrays if key.startswith("params/")}
    if saved != set(params):
        raise ValueError(
            f"{path} holds params {sorted(saved)} but the model has {sorted(params)}: build the same "
            f"model to continue the run"
        )
    for name, w in params.items():
        if arrays[f"params/{name}"].shape != w.shape:
            raise ValueError(
                f"{path}: param {name} has shape {arrays[f'params/{name}'].shape} but the model's is "
                f"{w.shape}: build the same model to continue the run"
            )
