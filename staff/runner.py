"""The grader's worker: runs jobs on a kit (the reference, or a submission inside the sandbox).

Usage: python -I runner.py KIT_DIR JOB_DIR. The job folder's files, and their reading and writing, are
staff/protocol.py's (the grader's half is there too). Each job's outputs and status are written as soon
as it finishes, so a job that crashes the process still leaves the results of the jobs before it.

The grader never trusts what this process returns beyond plain arrays: it loads them with
allow_pickle=False and does every comparison itself. In the sandbox this file and the protocol are
copies in the kit's staff/ folder; a submission may change anything in this process, and gains nothing.
Master code runs only here: tasks that need the reference (numeric gradients, the foolable image) are
sent to the trusted run only.
"""

import sys
import traceback


def _prepare_imports(kit_dir):
    """Import asgn3 from kit_dir only: first on the path, and no editable-install finder in front of it."""
    sys.path.insert(0, kit_dir)
    sys.meta_path[:] = [
        finder
        for finder in sys.meta_path
        if "editable" not in getattr(finder, "__module__", "")
        and "editable" not in getattr(finder, "__name__", "")
    ]


def _function(module, name):
    """module.name, imported from the kit."""
    import importlib

    return getattr(importlib.import_module(module), name)


def _as_tuple(result):
    return result if isinstance(result, tuple) else (result,)


def _named(names, values):
    """{name: value} for the names that are not None (a None name drops a cache or unused output)."""
    if len(values) < len(names):
        raise ValueError(f"expected {len(names)} return values, got {len(values)}")
    return {name: value for name, value in zip(names, values, strict=False) if name is not None}


def argument(spec, arrays):
    """One argument of a call: an array name, or a dict of such specs (a params dict, nested)."""
    if isinstance(spec, dict):
        return {key: argument(value, arrays) for key, value in spec.items()}
    return arrays[spec]


def _flat(names_to_values):
    """Returned values as plain {name: array}: a dict of arrays (nested) becomes {name__key: array}
    (a plain identifier: the protocol accepts only those as array names)."""
    flat = {}
    for name, value in names_to_values.items():
        if isinstance(value, dict):
            flat.update(_flat({f"{name}__{key}": item for key, item in value.items()}))
        else:
            flat[name] = value
    return flat


def _call_arguments(arrays, options):
    """The positional and keyword arguments of a call: options['inputs'] (specs for argument), kwargs
    (plain JSON values) and array_kwargs ({keyword: array name})."""
    inputs = [argument(spec, arrays) for spec in options["inputs"]]
    kwargs = {
        **options.get("kwargs", {}),
        **{key: arrays[name] for key, name in options.get("array_kwargs", {}).items()},
    }
    return inputs, kwargs


def task_call(arrays, options):
    """Call options['forward'] on the named inputs, then options['backward'] (if any) on douts + cache.

    options: module, forward, inputs (array names, or dicts of them for a params dict), kwargs,
    array_kwargs, fwd_outputs (names for the returned values, None to skip one; with a backward, the
    last returned value is the cache), backward, douts, bwd_outputs. A returned dict of arrays (a
    params gradient) comes back flattened as <name>__<key>.
    """
    import numpy as np

    forward = _function(options["module"], options["forward"])
    inputs, kwargs = _call_arguments(arrays, options)
    with np.errstate(**options.get("errstate", {})):
        result = _as_tuple(forward(*inputs, **kwargs))
    out = _named(options["fwd_outputs"], result)
    if options.get("backward"):
        backward = _function(options["module"], options["backward"])
        grads = _as_tuple(backward(*[arrays[name] for name in options["douts"]], result[-1]))
        out.update(_named(options["bwd_outputs"], grads))
    return _flat(out)


def task_numgrad(arrays, options):
    """Numeric gradients (centered differences, the kit's gradient_check) of sum_k <out_k, dout_k>.

    options as task_call's forward part, plus douts ({output name: upstream array name}) and wrt (the
    float input arrays to differentiate, also those inside a params dict). Trusted runs only: the
    reference forward defines the truth.
    """
    import numpy as np

    from asgn3.gradient_check import eval_numerical_gradient

    forward = _function(options["module"], options["forward"])
    names = options["fwd_outputs"]
    inputs, kwargs = _call_arguments(arrays, options)  # they hold the arrays perturbed in place

    def objective(_):
        outputs = _named(names, _as_tuple(forward(*inputs, **kwargs)))
        return sum(float(np.sum(outputs[name] * arrays[dout])) for name, dout in options["douts"].items())

    return {
        f"num_{name}": eval_numerical_gradient(objective, arrays[name], verbose=False)
        for name in options["wrt"]
    }


def _captioning_model(arrays, options):
    """A captioning model with the parameters given as arrays param_<name>: options['class'] (default
    CaptioningRNN) of options['module'], built with options['model_kwargs'] (default: a CaptioningRNN's
    input_dim, wordvec_dim, hidden_dim and cell_type from the options)."""
    import numpy as np

    model_class = _function(options["module"], options.get("class", "CaptioningRNN"))
    keys = ("input_dim", "wordvec_dim", "hidden_dim", "cell_type")
    kwargs = options.get("model_kwargs") or {key: options[key] for key in keys}
    model = model_class(
        options["word_to_idx"], dtype=np.dtype(options.get("dtype", "float64")).type, **kwargs
    )
    for key in list(model.params):
        if f"param_{key}" in arrays:
            model.params[key] = arrays[f"param_{key}"].copy()
    return model


def _loss_and_grads(model, features, captions):
    """model.loss(features, captions), with a clear error for the stub's (None, None)."""
    loss, grads = model.loss(features, captions)
    if loss is None or grads is None:
        name = type(model).__name__
        raise NotImplementedError(f"{name}.loss returned None: not implemented yet (still the stub)")
    return loss, grads


def task_captioning_loss(arrays, options):
    """CaptioningRNN.loss on features and captions: the loss and every gradient (grad_<param>)."""
    model = _captioning_model(arrays, options)
    loss, grads = _loss_and_grads(model, arrays["features"], arrays["captions"])
    return {"loss": loss, **{f"grad_{key}": value for key, value in grads.items()}}


def task_captioning_numgrad(arrays, options):
    """Numeric gradients of the model's loss for the parameters in options['wrt'] (trusted runs only)."""
    from asgn3.gradient_check import eval_numerical_gradient

    model = _captioning_model(arrays, options)
    out = {}
    for key in options["wrt"]:
        out[f"num_{key}"] = eval_numerical_gradient(
            lambda _: model.loss(arrays["features"], arrays["captions"])[0], model.params[key], verbose=False
        )
    return out


def task_captioning_sample(arrays, options):
    """model.sample(features, max_length): the greedy captions."""
    model = _captioning_model(arrays, options)
    return {"captions": model.sample(arrays["features"], max_length=options["max_length"])}


def task_captioning_overfit(arrays, options):
    """Train a fresh captioning model (seeded init) on a small set with Adam; return the trained params.

    options: the model's, plus seed, iterations and learning_rate. Returns param_<name> for every
    parameter, and the loss before and after training (used only from the trusted reference run).
    """
    import itertools

    import numpy as np

    trainer_class = _function("asgn3.trainer", "Trainer")
    np.random.seed(options["seed"])
    model = _captioning_model({}, options)
    features, captions = arrays["features"], arrays["captions"]
    initial_loss = _loss_and_grads(model, features, captions)[0]
    trainer = trainer_class(
        model,
        "adam",
        {"learning_rate": options["learning_rate"]},
        loss_fn=lambda f, c: _loss_and_grads(model, f, c),
    )
    trainer.run(itertools.repeat((features, captions)), options["iterations"])
    final_loss = model.loss(features, captions)[0]
    return {
        "initial_loss": initial_loss,
        "final_loss": final_loss,
        **{f"param_{key}": value for key, value in model.params.items()},
    }


def _cnn(options):
    """The master's PretrainedCNN of the options' architecture, He-initialised from options['init_seed']."""
    import numpy as np

    model_class = _function("asgn3.classifiers.pretrained_cnn", "PretrainedCNN")
    return model_class(dtype=np.float64, seed=options["init_seed"], **options["arch"])


def _foolable_image(model, options):
    """An image and a target class (among the 3rd to 6th most likely) that make_fooling_image reaches
    within its 100 steps with a change under 10% of the image (trusted runs only: the master's function)."""
    import numpy as np

    make_fooling_image = _function(options["module"], "make_fooling_image")
    rng = np.random.default_rng(options["seed"])
    for _ in range(20):
        X = 60.0 * rng.standard_normal((1, 3, 64, 64))
        target = int(np.argsort(model.loss(X)[0])[::-1][rng.integers(2, 6)])
        fooled = make_fooling_image(X, target, model)
        if np.argmax(model.loss(fooled)[0]) == target and np.linalg.norm(fooled - X) < 0.1 * np.linalg.norm(
            X
        ):
            return {"X": X, "target": target}
    raise RuntimeError("no foolable image found for the hidden fooling check (a grader bug)")


def task_cnn(arrays, options):
    """Call an image-gradients function on the small CNN, or (trusted) prepare or evaluate images on it.

    options: module, arch and init_seed (the model), action. 'call' runs <module>.<function>(*inputs,
    model, **kwargs) (inputs: array names or plain values; array_kwargs: {keyword: array name};
    features_of: {name, X, layer} adds the activations of an array at a layer as an input) and
    returns 'out'; 'scores' returns the class scores of X; 'foolable' returns an image X and a target
    that the function can fool.
    """
    import numpy as np

    model = _cnn(options)
    action = options["action"]
    if action == "scores":
        return {"scores": model.loss(arrays["X"])}
    if action == "foolable":
        return _foolable_image(model, options)
    if "features_of" in options:
        spec = options["features_of"]
        arrays = {**arrays, spec["name"]: model.forward(arrays[spec["X"]], end=spec["layer"])[0]}
    np.random.seed(0)  # for code that draws from the global generator
    function = _function(options["module"], options["function"])
    args = [arrays[name] if isinstance(name, str) else name for name in options["inputs"]]
    kwargs = {
        **options.get("kwargs", {}),
        **{key: arrays[name] for key, name in options.get("array_kwargs", {}).items()},
    }
    return {"out": function(*args, model, **kwargs)}


def task_import(arrays, options):
    """Import options['module'] (the grader first checks that each student module imports)."""
    import importlib

    importlib.import_module(options["module"])
    return {}


TASKS = {
    "import": task_import,
    "call": task_call,
    "numgrad": task_numgrad,
    "captioning_loss": task_captioning_loss,
    "captioning_numgrad": task_captioning_numgrad,
    "captioning_sample": task_captioning_sample,
    "captioning_overfit": task_captioning_overfit,
    "cnn": task_cnn,
}


def _error_text(error):
    """A short account of an exception: its type and message, and the last frames in the kit's code."""
    frames = [frame for frame in traceback.extract_tb(error.__traceback__) if "/asgn3/" in frame.filename]
    where = "; ".join(
        f"{frame.filename.rsplit('/asgn3/', 1)[-1]}:{frame.lineno} in {frame.name}" for frame in frames[-3:]
    )
    text = f"{type(error).__name__}: {error}"[:600]
    return f"{text} (at {where})" if where else text


def main(kit_dir, job_dir):
    """Run every job of job_dir in order, writing its outputs and status as soon as it finishes."""
    _prepare_imports(kit_dir)
    from staff import protocol  # the kit's copy: imported once the kit is first on the path

    for index, task, options, arrays in protocol.read_jobs(job_dir):
        try:
            protocol.write_outcome(job_dir, index, TASKS[task](arrays, options))
        except BaseException as error:  # noqa: BLE001 - anything the submission raises is its failure
            protocol.write_failure(job_dir, index, _error_text(error))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
