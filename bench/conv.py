"""Benchmark of the fast convolution (asgn3/fast_layers.py): speedup over the naive loops, GFLOP/s in float32
on the pretrained CNN's layer shapes next to numpy's own float32 GEMM rate, and the ratio to torch's conv2d
when torch happens to be installed (it is never a dependency of the kit).

    python bench/conv.py                 # about a minute on two idle cores
    python bench/conv.py --repeats 3     # fewer timed runs
    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python bench/conv.py --cpu-time   # one core, on a busy machine

Every time is a median over --repeats runs; the GEMM reference is measured right before each shape, so a
busy machine slows both. The naive layers are far too slow for a full batch: they are timed on a few
images and their time is scaled per image (they loop over images, filters and pixels, so the time is
proportional to the number of images).
"""

import argparse
import os

import numpy as np
from common import gemm_gflops, machine_line, median_seconds, set_clock, try_import_torch

from asgn3 import fast_layers, layers

# (name, C, F, filter size, stride, pad, input size): the first layers of the pretrained CNN.
CNN_SHAPES = [
    ("3->64 5x5 s2 p2 on 64x64", 3, 64, 5, 2, 2, 64),
    ("64->64 3x3 s1 p1 on 32x32", 64, 64, 3, 1, 1, 32),
    ("128->256 3x3 s2 p1 on 16x16", 128, 256, 3, 2, 1, 16),
]


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


def torch_seconds(torch, x, w, b, conv_param, dout, repeats):
    """Median seconds of torch.nn.functional.conv2d forward + backward on the same float32 arrays."""
    tx = torch.from_numpy(x).requires_grad_(True)
    tw = torch.from_numpy(w).requires_grad_(True)
    tb = torch.from_numpy(b).requires_grad_(True)
    tdout = torch.from_numpy(dout)

    def step():
        out = torch.nn.functional.conv2d(tx, tw, tb, stride=conv_param["stride"], padding=conv_param["pad"])
        tx.grad = tw.grad = tb.grad = None
        out.backward(tdout)

    return median_seconds(step, repeats=repeats)


def rates(N, repeats, torch):
    """Print GFLOP/s of fast conv forward+backward in float32 on each CNN shape, next to the GEMM rate."""
    for name, C, F, k, stride, pad, size in CNN_SHAPES:
        gemm = gemm_gflops(n=1024, dtype=np.float32, repeats=repeats)
        x, w, b, conv_param, dout = conv_problem(N, C, F, k, stride, pad, size, np.float32)
        t_f, t_b = time_pair(
            fast_layers.conv_forward_fast, fast_layers.conv_backward_fast, x, w, b, conv_param, dout, repeats
        )
        # forward: one product (F x CKK) @ (CKK x NP); backward: two of the same size
        flops = 3 * 2 * F * C * k * k * dout.shape[0] * dout.shape[2] * dout.shape[3]
        rate = flops / (t_f + t_b) / 1e9
        line = (
            f"  {name:29s} fwd {t_f * 1e3:7.1f} ms  bwd {t_b * 1e3:7.1f} ms  {rate:6.1f} GFLOP/s"
            f"  = {rate / gemm:4.2f} x GEMM ({gemm:.1f} GFLOP/s)"
        )
        if torch is not None:
            t_torch = torch_seconds(torch, x, w, b, conv_param, dout, repeats)
            line += f"  torch {t_torch * 1e3:7.1f} ms: ours takes {(t_f + t_b) / t_torch:4.2f} x torch's time"
        print(line)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per figure (median)")
    parser.add_argument("--batch", type=int, default=50, help="N for the CNN shapes")
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="time with the process's CPU time instead of wall time (use with one thread)",
    )
    args = parser.parse_args()
    set_clock("cpu" if args.cpu_time else "wall")
    torch = try_import_torch()
    clock = "CPU time" if args.cpu_time else "wall time"
    print(f"bench/conv.py: {machine_line()}, load average {os.getloadavg()[0]:.1f}, medians of {clock}")
    kernels = "Cython extension" if fast_layers.USE_CYTHON else "numpy fallback (extension not built)"
    torch_found = f"{torch.__version__} ({torch.get_num_threads()} threads)" if torch else "not installed"
    print(f"im2col: {kernels}; torch: {torch_found}")
    print("\nFast vs naive convolution (goal: at least 100x)")
    speedup(100, 2, 3, 25, 3, 2, 1, 31, args.repeats)  # the classic kit's benchmark shape
    speedup(args.batch, 1, 64, 64, 3, 1, 1, 32, args.repeats)
    print(
        f"\nFast convolution forward+backward, float32, N={args.batch} "
        "(target: at least 1/3 of the GEMM rate on the 3x3 shapes)"
    )
    rates(args.batch, args.repeats, torch)


if __name__ == "__main__":
    main()
