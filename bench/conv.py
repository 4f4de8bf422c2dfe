"""Benchmark of the fast convolution (asgn3/fast_layers.py): speedup over the naive loops, and forward and
backward in float32 at batch 50 with one BLAS thread and with two, on the classic CNN's layer shapes and
on every conv layer of the shipped default model (read from its weights file), in GFLOP/s next to numpy's
own float32 GEMM rate and as a ratio to torch's conv2d when torch happens to be installed (it is never a
dependency of the kit). Targets: at most 1.25x torch's time on the CNN shapes, at least 1/3 of the
GEMM rate on the shipped ones.

    python bench/conv.py                 # a few minutes on two idle cores
    python bench/conv.py --repeats 3     # fewer timed runs
    python bench/conv.py --threads 1     # one thread only
    python bench/conv.py --cpu-time      # the process's CPU time instead of wall time (one thread only)

Each line names the way the layer took (fast_layers.way_name chooses by the shapes): im2col and one
product, one shifted product per filter tap, or Winograd's F(2x2, 3x3). GFLOP/s count the direct
convolution's multiply-adds whatever the way (Winograd's does 2.25x fewer). Every time is a median over
--repeats rounds; in each round the kit's forward and its backward run one after the other; torch's
forward+backward and numpy's rate on a 1024x1024 GEMM are timed right after, each in rounds of its own
(with two threads, one library's spinning threads would otherwise slow the next). Run it on an idle
machine.
The naive layers are far too slow for a full batch: they are timed on a few images and their time
is scaled per image (they loop over images, filters and pixels, so the time is proportional to the number
of images).
"""

import argparse
import os

import numpy as np
from common import (
    interleaved_medians,
    machine_line,
    median_seconds,
    set_clock,
    threads,
    time_medians,
    try_import_torch,
)

from asgn3 import fast_layers, layers
from asgn3.data_paths import DEFAULT_PRETRAINED_MODEL
from asgn3.weights_io import read_architecture

# (C, F, filter size, stride, pad, input size): the first layers of the classic pretrained CNN ...
CNN_SHAPES = [(3, 64, 5, 2, 2, 64), (64, 64, 3, 1, 1, 32), (128, 256, 3, 2, 1, 16)]


def shipped_shapes(model_file=DEFAULT_PRETRAINED_MODEL):
    """The (C, F, filter size, stride, pad, input size) of every conv layer of the shipped default model,
    read from its weights file (datasets/pretrained), so that the benchmark follows the model."""
    arch = read_architecture(model_file)
    shapes, channels, size = [], arch["in_channels"], arch["input_size"] or 64
    for F, k, stride, pad in zip(
        arch["num_filters"], arch["filter_sizes"], arch["strides"], arch["pads"], strict=True
    ):
        shapes.append((channels, F, k, stride, pad, size))
        channels, size = F, (size + 2 * pad - k) // stride + 1
    return shapes


def conv_problem(N, C, F, k, stride, pad, size, dtype, seed=0):
    """Random x, w, b, conv_param and an upstream derivative of the output's shape."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, size, size)).astype(dtype)
    w = (rng.standard_normal((F, C, k, k)) / np.sqrt(C * k * k)).astype(dtype)
    b = rng.standard_normal(F).astype(dtype)
    conv_param = {"stride": stride, "pad": pad}
    out_size = 1 + (size + 2 * pad - k) // stride
    dout = rng.standard_normal((N, F, out_size, out_size)).astype(dtype)
    return x, w, b, conv_param, dout


def time_pair(forward, backward, x, w, b, conv_param, dout, repeats):
    """Median seconds of the forward pass and of the backward pass."""
    _, cache = forward(x, w, b, conv_param)
    t_forward = median_seconds(lambda: forward(x, w, b, conv_param), repeats=repeats)
    t_backward = median_seconds(lambda: backward(dout, cache), repeats=repeats)
    return t_forward, t_backward


def speedup(N, naive_images, C, F, k, stride, pad, size, repeats):
    """Print the fast/naive speedup of forward and backward on one shape, the naive time scaled per image."""
    args = conv_problem(N, C, F, k, stride, pad, size, np.float64)
    fast_f, fast_b = time_pair(fast_layers.conv_forward_fast, fast_layers.conv_backward_fast, *args, repeats)
    x, w, b, conv_param, dout = args
    small = (x[:naive_images], w, b, conv_param, dout[:naive_images])
    naive_f, naive_b = time_pair(layers.conv_forward_naive, layers.conv_backward_naive, *small, repeats=1)
    scale = N / naive_images
    print(
        f"  x ({N}, {C}, {size}, {size}), w ({F}, {C}, {k}, {k}), stride {stride}, pad {pad}, float64 "
        f"(naive timed on {naive_images} image(s), scaled x{scale:g})"
    )
    for name, naive, fast in (("forward ", naive_f * scale, fast_f), ("backward", naive_b * scale, fast_b)):
        print(f"    {name}: naive {naive:8.3f} s  fast {fast:8.4f} s  speedup {naive / fast:7.0f}x")


def torch_step(torch, x, w, b, conv_param, dout):
    """A callable running torch.nn.functional.conv2d forward + backward on the same float32 arrays."""
    tx = torch.from_numpy(x).requires_grad_(True)
    tw = torch.from_numpy(w).requires_grad_(True)
    tb = torch.from_numpy(b).requires_grad_(True)
    tdout = torch.from_numpy(dout)

    def step():
        out = torch.nn.functional.conv2d(tx, tw, tb, stride=conv_param["stride"], padding=conv_param["pad"])
        tx.grad = tw.grad = tb.grad = None
        out.backward(tdout)

    return step


def time_shapes(shapes, N, n_threads, repeats, torch):
    """Print one line per shape: forward and backward times, GFLOP/s next to the GEMM rate, the ratio to
    torch; then the whole list's rate. Returns nothing."""
    gemm_a = np.random.default_rng(1).standard_normal((1024, 1024)).astype(np.float32)
    total_flops = gemm_equivalent = 0.0  # flops, and GFLOP the GEMM would do in our time
    for C, F, k, stride, pad, size in shapes:
        x, w, b, conv_param, dout = conv_problem(N, C, F, k, stride, pad, size, np.float32)
        with threads(n_threads, torch):
            _, cache = fast_layers.conv_forward_fast(x, w, b, conv_param)
            t_f, t_b = time_medians(
                [
                    lambda: fast_layers.conv_forward_fast(x, w, b, conv_param),  # noqa: B023 (used at once)
                    lambda: fast_layers.conv_backward_fast(dout, cache),  # noqa: B023
                ],
                repeats,
            )
            # torch and the GEMM are timed on their own, after: with two threads, a multi-threaded product
            # leaves OpenBLAS's (or OpenMP's) threads spinning for a while, which would take the second
            # core from whatever is timed next (keep_busy waits that out).
            if torch is not None:
                (t_torch,) = interleaved_medians(
                    [torch_step(torch, x, w, b, conv_param, dout)], repeats=repeats
                )
            (t_gemm,) = interleaved_medians([lambda: gemm_a @ gemm_a], repeats=repeats)
        gemm = 2 * 1024**3 / t_gemm / 1e9
        # forward: one product (F x CKK) @ (CKK x NP); backward: two of the same size
        flops = 3 * 2 * F * C * k * k * dout.shape[0] * dout.shape[2] * dout.shape[3]
        rate = flops / (t_f + t_b) / 1e9
        total_flops, gemm_equivalent = total_flops + flops, gemm_equivalent + (t_f + t_b) * gemm
        name = f"{C}->{F} {k}x{k} s{stride} p{pad} on {size}x{size}"
        way = fast_layers.way_name(x.shape, w.shape, pad, stride, dout.shape[2], dout.shape[3])
        line = (
            f"  {name:29s} {way:8s} fwd {t_f * 1e3:7.1f} ms  bwd {t_b * 1e3:7.1f} ms  {rate:6.1f} GFLOP/s"
            f"  = {rate / gemm:4.2f} x GEMM ({gemm:5.1f} GFLOP/s)"
        )
        if torch is not None:
            ratio = (t_f + t_b) / t_torch
            line += f"  torch {t_torch * 1e3:7.1f} ms: ours takes {ratio:4.2f} x torch's time"
        print(line)
    # each layer's time at the GEMM rate measured next to it: a busy moment does not skew the total
    print(f"  all {len(shapes)} layers together: {total_flops / 1e9 / gemm_equivalent:4.2f} x GEMM")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per figure (median)")
    parser.add_argument("--batch", type=int, default=50, help="N for the CNN and shipped-model shapes")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="BLAS (and torch) threads")
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="time with the process's CPU time instead of wall time (meaningful for one thread only)",
    )
    args = parser.parse_args()
    set_clock("cpu" if args.cpu_time else "wall")
    torch = try_import_torch()
    clock = "CPU time" if args.cpu_time else "wall time"
    print(f"bench/conv.py: {machine_line()}, load average {os.getloadavg()[0]:.1f}, medians of {clock}")
    kernels = "Cython extension" if fast_layers.USE_CYTHON else "numpy fallback (extension not built)"
    print(f"im2col: {kernels}; torch: {torch.__version__ if torch else 'not installed'}")
    print("\nFast vs naive convolution (goal: at least 100x)")
    speedup(100, 2, 3, 25, 3, 2, 1, 31, args.repeats)  # the classic kit's benchmark shape
    speedup(args.batch, 1, 64, 64, 3, 1, 1, 32, args.repeats)
    for n_threads in args.threads:
        plural = "s" if n_threads > 1 else ""
        print(f"\nFast convolution forward+backward, float32, N={args.batch}, {n_threads} thread{plural}")
        print("classic CNN shapes (target: at most 1.25x torch's time)")
        time_shapes(CNN_SHAPES, args.batch, n_threads, args.repeats, torch)
        print("shipped model's shapes (target: at least 1/3 of the GEMM rate)")
        time_shapes(shipped_shapes(), args.batch, n_threads, args.repeats, torch)


if __name__ == "__main__":
    main()
