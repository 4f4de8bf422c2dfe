"""Benchmark of EfficientNet-Lite0 (asgn3/classifiers/efficientnet_lite.py) as the ImageNet notebook uses it:
forward to the scores, and forward plus backward to the image, at 224x224 in float32 for a batch of 1 and
of 8; the ratio to torch running the same network (built here from the same folded parameters) when torch
is importable; then the time of 200 class-visualization steps (the notebook's parameters).

    python bench/imagenet.py                      # about a minute on two idle cores
    OPENBLAS_NUM_THREADS=1 python bench/imagenet.py --clock cpu --torch-threads 1   # on a busy machine
    PYTHONPATH=/work/venv-bench/lib/python3.11/site-packages python bench/imagenet.py   # with torch

Needs the weights (`python -m datasets.get_efficientnet_lite0`). Every time is a median over --repeats runs.
Both sides compute the same things: the scores, then the gradient of the input (what image gradients need),
or of the input and every parameter.
"""

import argparse
import functools
import time

import numpy as np
from common import machine_line, median_seconds, set_clock, try_import_torch

from asgn3.classifiers.efficientnet_lite import BLOCKS, EfficientNetLite0
from asgn3.image_gradients import create_class_visualization
from asgn3.layers import same_padding


def forward_backward(model, X):
    """Scores of X, then the gradient of their sum with respect to X and to the parameters."""
    scores, cache = model.forward(X)
    return model.backward(np.ones_like(scores), cache)


def torch_network(torch, params, param_grads):
    """A function X -> scores running EfficientNet-Lite0 in torch on the same (folded) parameters."""
    F = torch.nn.functional
    p = {key: torch.from_numpy(value.copy()).requires_grad_(param_grads) for key, value in params.items()}

    def same_conv(x, w, b, stride, groups=1):
        k = w.shape[2]
        (top, bottom), (left, right) = (same_padding(size, k, stride) for size in x.shape[2:])
        return F.conv2d(F.pad(x, (left, right, top, bottom)), w, b, stride=stride, groups=groups)

    def network(x):
        x = F.relu6(same_conv(x, p["stem_w"], p["stem_b"], 2))
        for i, block in enumerate(BLOCKS):
            h = x
            if block["expansion"] != 1:
                h = F.relu6(F.conv2d(h, p[f"block{i}_expand_w"], p[f"block{i}_expand_b"]))
            w = p[f"block{i}_depthwise_w"]
            h = F.relu6(same_conv(h, w, p[f"block{i}_depthwise_b"], block["stride"], groups=w.shape[0]))
            h = F.conv2d(h, p[f"block{i}_project_w"], p[f"block{i}_project_b"])
            x = h + x if block["residual"] else h
        x = F.relu6(F.conv2d(x, p["head_w"], p["head_b"]))
        return x.mean(dim=(2, 3)) @ p["fc_w"] + p["fc_b"]

    return network, list(p.values())


def torch_times(torch, model, X, repeats):
    """(forward, forward+backward) median seconds of the torch network, and its largest score difference.

    The backward computes what the model's does: the input's gradient, and the parameters' when
    model.param_grads is set.
    """
    network, params = torch_network(torch, model.params, model.param_grads)
    tX = torch.from_numpy(X).requires_grad_(True)

    def both():
        for tensor in (tX, *params):
            tensor.grad = None
        network(tX).sum().backward()

    with torch.no_grad():
        difference = float(np.abs(network(tX).numpy() - model.forward(X)[0]).max())
    with torch.no_grad():
        t_forward = median_seconds(lambda: network(tX), repeats=repeats)
    return t_forward, median_seconds(both, repeats=repeats), difference


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per figure (default 5)")
    parser.add_argument("--steps", type=int, default=200, help="class-visualization steps (default 200)")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall time, or the process's CPU time (with one BLAS thread: one core's time, which a busy "
        "machine disturbs much less)",
    )
    parser.add_argument("--torch-threads", type=int, default=None, help="torch's threads (default: its own)")
    args = parser.parse_args(argv)
    set_clock(args.clock)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    print(machine_line(), f"| clock: {args.clock}")
    model = EfficientNetLite0()
    torch = try_import_torch()
    if torch is None:
        print("torch is not importable: no ratios (see the module docstring)")
    else:
        if args.torch_threads:
            torch.set_num_threads(args.torch_threads)
        print(f"torch {torch.__version__} with {torch.get_num_threads()} threads")
    rng = np.random.default_rng(0)
    for batch, param_grads in ((1, False), (1, True), (8, False), (8, True)):
        model.param_grads = param_grads
        X = rng.standard_normal((batch, 3, 224, 224)).astype(np.float32)
        t_forward = median_seconds(functools.partial(model.forward, X), repeats=args.repeats)
        t_both = median_seconds(functools.partial(forward_backward, model, X), repeats=args.repeats)
        what = "input and parameters" if param_grads else "input only"
        line = (
            f"batch {batch}, gradients of the {what:20s}: forward {t_forward * 1e3:6.1f} ms, "
            f"forward+backward {t_both * 1e3:6.1f} ms"
        )
        if torch is not None:
            tt_forward, tt_both, difference = torch_times(torch, model, X, args.repeats)
            line += (
                f" | torch {tt_forward * 1e3:6.1f} ms, {tt_both * 1e3:6.1f} ms | ours / torch: forward "
                f"{t_forward / tt_forward:4.2f}x, forward+backward {t_both / tt_both:4.2f}x "
                f"(scores differ by {difference:.1e})"
            )
        print(line, flush=True)
    model.param_grads = False
    start = clock()
    create_class_visualization(
        130, model, learning_rate=3.0, l2_reg=1e-2, num_iterations=args.steps, show_every=0, verbose=False
    )
    seconds = clock() - start
    print(
        f"{args.steps} class-visualization steps at 224x224: {seconds:.1f} s "
        f"({seconds / args.steps * 1e3:.0f} ms a step)"
    )


if __name__ == "__main__":
    main()
