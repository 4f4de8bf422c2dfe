"""Benchmark of the pretrained CNN (asgn3/classifiers/pretrained_cnn.py) as the image-gradient notebook
uses it: forward to the scores, and forward plus backward to the image, for a batch of 1 and of 50 at
64x64 in float32; then the wall time of 100 class-visualization steps.

    python bench/cnn.py                  # about a minute on two idle cores
    python bench/cnn.py --repeats 5      # more timed runs
    python bench/cnn.py --model FILE.h5  # time another weights file next to the classic architecture

The classic architecture is timed with random weights (speed does not depend on the weights), and the
shipped default model too when datasets/pretrained/default_pretrained_model.h5 exists. Every time is a
median over --repeats runs; the rate in GFLOP/s is shown next to numpy's float32 GEMM rate measured in
the same run, so that a busy machine shows up in both.
"""

import argparse
import functools
import time
from pathlib import Path

import numpy as np
from common import gemm_gflops, machine_line, median_seconds

from asgn3 import data_paths
from asgn3.classifiers.pretrained_cnn import PretrainedCNN
from asgn3.image_gradients import create_class_visualization


def forward_flops(model):
    """Multiply-adds times two of one image's forward pass (convolutions and affine layers)."""
    flops, channels = 0, model.in_channels
    for filters, k, size in zip(model.num_filters, model.filter_sizes, model.feature_sizes, strict=True):
        flops += 2 * filters * channels * k * k * size * size
        channels = filters
    flops += 2 * channels * size * size * model.hidden_dim + 2 * model.hidden_dim * model.num_classes
    return flops


def forward_backward(model, X):
    """Scores of X, then the gradient of their sum with respect to X (what image gradients need)."""
    scores, cache = model.forward(X)
    return model.backward(np.ones_like(scores), cache)


def time_model(name, model, repeats, gemm):
    """Print forward and forward+backward-to-image times for batches of 1 and 50."""
    print(
        f"{name}: filters {model.num_filters}, hidden {model.hidden_dim}, {model.num_classes} classes, "
        f"{sum(p.size for p in model.params.values()) / 1e6:.1f}M parameters"
    )
    flops = forward_flops(model)
    rng = np.random.default_rng(0)
    for batch in (1, 50):
        X = rng.standard_normal((batch, 3, model.input_size, model.input_size)).astype(np.float32)
        t_forward = median_seconds(functools.partial(model.forward, X), repeats=repeats)
        t_both = median_seconds(functools.partial(forward_backward, model, X), repeats=repeats)
        rate = batch * flops / t_forward / 1e9
        print(
            f"  batch {batch:2d}: forward {t_forward * 1e3:8.1f} ms "
            f"({t_forward / batch * 1e3:6.1f} ms/image, {rate:5.1f} GFLOP/s = {rate / gemm:.0%} of GEMM)   "
            f"forward+backward to the image {t_both * 1e3:8.1f} ms "
            f"(backward/forward {(t_both - t_forward) / t_forward:.2f})"
        )


def time_class_visualization(model, steps):
    """Print the wall time of `steps` class-visualization steps (one run, progress bar and displays off)."""
    start = time.perf_counter()
    create_class_visualization(0, model, num_iterations=steps, show_every=0, seed=0, verbose=False)
    seconds = time.perf_counter() - start
    print(f"  {steps} class-visualization steps: {seconds:.1f} s ({seconds / steps * 1e3:.0f} ms/step)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per figure (median)")
    parser.add_argument("--steps", type=int, default=100, help="class-visualization steps to time")
    parser.add_argument(
        "--model",
        type=Path,
        default=data_paths.DEFAULT_PRETRAINED_MODEL,
        help="weights file timed next to the classic architecture (default: shipped model)",
    )
    args = parser.parse_args()

    print(machine_line())
    gemm = gemm_gflops(dtype=np.float32)
    print(f"numpy float32 GEMM (1024x1024): {gemm:.1f} GFLOP/s")
    models = [("classic architecture, random weights", PretrainedCNN(seed=0))]
    if args.model.exists():
        models.append((f"model {args.model.name}", PretrainedCNN(h5_file=args.model)))
    else:
        print(f"({args.model} absent: only the classic architecture is timed)")
    for name, model in models:
        time_model(name, model, args.repeats, gemm)
        time_class_visualization(model, args.steps)


if __name__ == "__main__":
    main()
