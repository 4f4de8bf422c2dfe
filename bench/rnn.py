"""Benchmark of the recurrent layers (asgn3/rnn_layers.py): LSTM and vanilla RNN forward+backward in float32
at N=100, T=16, D=256, H=512, with one BLAS thread and with two, in milliseconds and GFLOP/s next to numpy's
own float32 GEMM rate, and the ratio to torch.nn.LSTM / torch.nn.RNN on the same shapes and thread count
when torch happens to be installed (it is never a dependency of the kit). Targets: the LSTM at most 1.0x
torch's time with one thread, at most 1.25x with two.

    python bench/rnn.py                  # about a minute on two idle cores
    python bench/rnn.py --repeats 3      # fewer timed runs
    python bench/rnn.py --cpu-time       # the process's CPU time instead of wall time (busy machine)

Every time is a median over --repeats rounds (common.time_medians): in each round the kit's forward and its
backward run one after the other; torch's forward+backward is timed right after, in rounds of its own, so
that neither library's spinning threads slow the other. Run it on an idle machine. The GFLOP/s
count only the matrix products, which are nearly all the work: per time step and per gate block, forward
x Wx and h Wh, backward dx, dWx, dh and dWh, so forward+backward is 3 * 2 N T (D + H) kH flops with k = 4
for the LSTM and 1 for the RNN. torch is told the same number of threads (torch.set_num_threads).
The second line of each cell times its matrix products alone (products_alone), in numpy and in torch: the
floor that no change to the elementwise work can go below, and how much faster torch's BLAS (MKL) runs the
same products.
"""

import argparse
import os

import numpy as np
from common import gemm_gflops, machine_line, set_clock, threads, time_medians, try_import_torch

from asgn3 import rnn_layers

CELLS = {
    "lstm": (4, rnn_layers.lstm_forward, rnn_layers.lstm_backward),
    "rnn": (1, rnn_layers.rnn_forward, rnn_layers.rnn_backward),
}


def problem(N, T, D, H, gates, seed=0):
    """Random float32 x (N, T, D), h0 (N, H), Wx (D, gH), Wh (H, gH), b (gH,) and upstream dh (N, T, H)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, T, D), dtype=np.float32)
    h0 = rng.standard_normal((N, H), dtype=np.float32)
    Wx = rng.standard_normal((D, gates * H), dtype=np.float32) / np.float32(np.sqrt(D))
    Wh = rng.standard_normal((H, gates * H), dtype=np.float32) / np.float32(np.sqrt(H))
    b = np.zeros(gates * H, dtype=np.float32)
    dh = rng.standard_normal((N, T, H), dtype=np.float32)
    return x, h0, Wx, Wh, b, dh


def torch_step(torch, cell, x, h0, Wx, Wh, b, dh):
    """A callable running torch.nn.LSTM (or RNN, tanh) forward + backward on the same float32 arrays, with
    the gradients of the input and of h0 as well as of the weights, like the kit's backward."""
    D, H = x.shape[2], h0.shape[1]
    module = (torch.nn.LSTM if cell == "lstm" else torch.nn.RNN)(D, H, batch_first=True)
    with torch.no_grad():  # the same weights (torch keeps them transposed, gates in the order i, f, g, o)
        module.weight_ih_l0.copy_(torch.from_numpy(Wx.T.copy()))
        module.weight_hh_l0.copy_(torch.from_numpy(Wh.T.copy()))
        module.bias_ih_l0.copy_(torch.from_numpy(b))
        module.bias_hh_l0.zero_()
    tx = torch.from_numpy(x).requires_grad_(True)
    th0 = torch.from_numpy(h0)[None].requires_grad_(True)
    initial = (th0, torch.zeros_like(th0)) if cell == "lstm" else th0
    tdh = torch.from_numpy(dh)

    def step():
        out, _ = module(tx, initial)
        module.zero_grad(set_to_none=True)
        tx.grad = th0.grad = None
        out.backward(tdh)

    return step


def products_alone(x, h0, Wx, Wh, gates, as_array=np.asarray):
    """
    A callable making the matrix products of one forward+backward of the kit's sequence layers, with their
    shapes and operand layouts, and nothing else: forward x Wx for all steps and h Wh per step, backward
    da Wh^T per step, then da Wx^T, x^T da and h^T da. It is the time the layers would take if their
    elementwise work were free; with as_array=torch.from_numpy the same products run in torch's BLAS.

    Inputs:
    - x (N, T, D), h0 (N, H), Wx (D, gates H), Wh (H, gates H): float32 arrays as for the layers.
    - gates: 4 for the LSTM, 1 for the RNN.
    - as_array: turns a numpy array into the array type whose products are timed.
    """
    N, T, D = x.shape
    H = h0.shape[1]
    x_steps = as_array(np.ascontiguousarray(x.transpose(1, 0, 2)).reshape(T * N, D))
    hs = as_array(np.tile(h0, (T, 1)))  # (T N, H): the values do not matter to the time
    da = as_array(np.ones((T * N, gates * H), dtype=x.dtype))
    h, Wx, Wh = as_array(h0), as_array(Wx), as_array(Wh)

    def run():
        x_steps @ Wx
        for _ in range(T):
            h @ Wh
        for t in range(T):
            da[t * N : (t + 1) * N] @ Wh.T
        da @ Wx.T
        x_steps.T @ da
        hs.T @ da

    return run


def time_cell(cell, shape, n_threads, repeats, torch):
    """Print one line: the kit's forward and backward times, its GFLOP/s, and the ratio to torch."""
    N, T, D, H = shape
    gates, forward, backward = CELLS[cell]
    x, h0, Wx, Wh, b, dh = problem(N, T, D, H, gates)
    with threads(n_threads, torch):
        gemm = gemm_gflops(n=1024, dtype=np.float32, repeats=repeats)
        _, cache = forward(x, h0, Wx, Wh, b)
        t_f, t_b, t_products = time_medians(
            [
                lambda: forward(x, h0, Wx, Wh, b),
                lambda: backward(dh, cache),
                products_alone(x, h0, Wx, Wh, gates),
            ],
            repeats,
        )
        if torch is not None:  # in rounds of its own: see time_medians
            t_torch, t_torch_products = time_medians(
                [
                    torch_step(torch, cell, x, h0, Wx, Wh, b, dh),
                    products_alone(x, h0, Wx, Wh, gates, as_array=torch.from_numpy),
                ],
                repeats,
            )
    total = t_f + t_b
    rate = 3 * 2 * N * T * (D + H) * gates * H / total / 1e9
    line = (
        f"  {cell:4s} {n_threads} thread{'s' if n_threads > 1 else ' '}  fwd {t_f * 1e3:6.1f} ms  "
        f"bwd {t_b * 1e3:6.1f} ms  total {total * 1e3:6.1f} ms  {rate:6.1f} GFLOP/s = "
        f"{rate / gemm:4.2f} x GEMM ({gemm:5.1f} GFLOP/s)"
    )
    if torch is not None:
        line += f"  torch {t_torch * 1e3:6.1f} ms: ours takes {total / t_torch:4.2f} x torch's time"
    print(line)
    products = f"         its matrix products alone {t_products * 1e3:6.1f} ms"
    if torch is not None:
        products += (
            f" = {t_products / t_torch:4.2f} x torch's whole time; the same products in torch's BLAS "
            f"{t_torch_products * 1e3:6.1f} ms (numpy's take {t_products / t_torch_products:4.2f} x)"
        )
    print(products)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per figure (median)")
    parser.add_argument(
        "--shape",
        type=int,
        nargs=4,
        default=(100, 16, 256, 512),
        metavar=("N", "T", "D", "H"),
        help="batch, time steps, input and hidden sizes",
    )
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="time with the process's CPU time instead of wall time (meaningful for one thread only)",
    )
    args = parser.parse_args()
    set_clock("cpu" if args.cpu_time else "wall")
    torch = try_import_torch()
    N, T, D, H = args.shape
    clock = "CPU time" if args.cpu_time else "wall time"
    print(f"bench/rnn.py: {machine_line()}, load average {os.getloadavg()[0]:.1f}, medians of {clock}")
    torch_found = torch.__version__ if torch else "not installed"
    print(f"torch: {torch_found}")
    print(f"\nForward+backward, float32, N={N} T={T} D={D} H={H}")
    print("(targets: the LSTM at most 1.0x torch's time on one thread, 1.25x on two)")
    for n_threads in (1, 2):
        for cell in CELLS:
            time_cell(cell, args.shape, n_threads, args.repeats, torch)


if __name__ == "__main__":
    main()
