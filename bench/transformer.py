"""Benchmark of the Transformer decoder layer (asgn3/transformer_layers.py): forward+backward in float32 at
N=100, S=16, P=16, E=256, 4 heads, F=1024, in milliseconds and GFLOP/s next to numpy's own float32 GEMM rate,
and the ratio to torch.nn.TransformerDecoderLayer (post-norm, relu, no dropout) on the same shapes when torch
happens to be installed (it is never a dependency of the kit). Target: within 1.5x of torch's time.

    python bench/transformer.py                  # under a minute on two idle cores
    python bench/transformer.py --repeats 3      # fewer timed runs
    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python bench/transformer.py --cpu-time   # one core, busy machine

Every time is a median over --repeats runs; the kit's and torch's times are taken in the same run. The
GFLOP/s count only the matrix products: forward, the self-attention's four E x E projections and its two
(S x S) batched products, the cross-attention's four projections (two of them over the P memory positions)
and its two (S x P) products, and the feed-forward network's two E x F products; backward costs twice the
forward's products, so forward+backward is three times the forward's count.
"""

import argparse
import os

import numpy as np
from common import gemm_gflops, machine_line, median_seconds, set_clock, try_import_torch

from asgn3.transformer_layers import (
    ATTENTION_KEYS,
    LAYERNORM_NAMES,
    causal_mask,
    decoder_layer_backward,
    decoder_layer_forward,
)


def problem(N, S, P, E, F, seed=0):
    """Random float32 x (N, S, E), memory (N, P, E), decoder-layer params and upstream dout (N, S, E)."""
    rng = np.random.default_rng(seed)

    def normal(*shape, scale=1.0):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    def attention():
        return {
            k: normal(E, E, scale=E**-0.5) if k[0] == "W" else normal(E, scale=0.1) for k in ATTENTION_KEYS
        }

    params = {"self_attn": attention(), "cross_attn": attention()}
    params.update(W1=normal(E, F, scale=E**-0.5), b1=normal(F, scale=0.1))
    params.update(W2=normal(F, E, scale=F**-0.5), b2=normal(E, scale=0.1))
    for name in LAYERNORM_NAMES:
        params[f"{name}_gamma"] = 1 + normal(E, scale=0.1)
        params[f"{name}_beta"] = normal(E, scale=0.1)
    return normal(N, S, E), normal(N, P, E), params, normal(N, S, E)


def matmul_flops(N, S, P, E, F):
    """Flops of the matrix products of one forward+backward pass (see the module docstring)."""
    self_attention = 4 * 2 * N * S * E * E + 2 * 2 * N * S * S * E
    cross_attention = 2 * 2 * N * S * E * E + 2 * 2 * N * P * E * E + 2 * 2 * N * S * P * E
    feed_forward = 2 * 2 * N * S * E * F
    return 3 * (self_attention + cross_attention + feed_forward)


def numpy_seconds(x, memory, params, dout, num_heads, repeats):
    """Median seconds of the kit's forward pass and of its backward pass."""
    mask = causal_mask(x.shape[1])
    _, cache = decoder_layer_forward(x, memory, params, num_heads, mask)
    t_forward = median_seconds(lambda: decoder_layer_forward(x, memory, params, num_heads, mask), repeats)
    t_backward = median_seconds(lambda: decoder_layer_backward(dout, cache), repeats)
    return t_forward, t_backward


def torch_layer(torch, params, num_heads):
    """torch.nn.TransformerDecoderLayer holding the same weights (torch keeps them (out, in))."""
    E, F = params["W1"].shape
    layer = torch.nn.TransformerDecoderLayer(E, num_heads, F, dropout=0.0, batch_first=True)

    def tensor(array):
        return torch.from_numpy(np.ascontiguousarray(array))

    with torch.no_grad():
        for module, p in (
            (layer.self_attn, params["self_attn"]),
            (layer.multihead_attn, params["cross_attn"]),
        ):
            module.in_proj_weight.copy_(tensor(np.concatenate([p["Wq"].T, p["Wk"].T, p["Wv"].T])))
            module.in_proj_bias.copy_(tensor(np.concatenate([p["bq"], p["bk"], p["bv"]])))
            module.out_proj.weight.copy_(tensor(p["Wo"].T))
            module.out_proj.bias.copy_(tensor(p["bo"]))
        for linear, name in ((layer.linear1, "1"), (layer.linear2, "2")):
            linear.weight.copy_(tensor(params[f"W{name}"].T))
            linear.bias.copy_(tensor(params[f"b{name}"]))
        for norm, name in zip((layer.norm1, layer.norm2, layer.norm3), LAYERNORM_NAMES, strict=True):
            norm.weight.copy_(tensor(params[f"{name}_gamma"]))
            norm.bias.copy_(tensor(params[f"{name}_beta"]))
    return layer


def torch_seconds(torch, x, memory, params, dout, num_heads, repeats):
    """Median seconds of torch's decoder layer forward + backward on the same float32 arrays, with the
    gradients of x and memory as well as of the weights, like the kit's backward. Also returns the largest
    difference between torch's output and the kit's, as a check that the two compute the same thing."""
    layer = torch_layer(torch, params, num_heads)
    tx = torch.from_numpy(x).requires_grad_(True)
    tmemory = torch.from_numpy(memory).requires_grad_(True)
    tmask = torch.from_numpy(~causal_mask(x.shape[1]))  # torch's boolean mask: True = may NOT attend
    tdout = torch.from_numpy(dout)

    def step():
        out = layer(tx, tmemory, tgt_mask=tmask)
        layer.zero_grad(set_to_none=True)
        tx.grad = tmemory.grad = None
        out.backward(tdout)
        return out

    ours, _ = decoder_layer_forward(x, memory, params, num_heads, causal_mask(x.shape[1]))
    difference = float(np.abs(step().detach().numpy() - ours).max())
    return median_seconds(step, repeats=repeats), difference


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per figure (median)")
    parser.add_argument(
        "--shape",
        type=int,
        nargs=6,
        default=(100, 16, 16, 256, 4, 1024),
        metavar=("N", "S", "P", "E", "HEADS", "F"),
        help="batch, words, memory positions, embedding size, heads, feed-forward size",
    )
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="time with the process's CPU time instead of wall time (use with one thread)",
    )
    args = parser.parse_args()
    set_clock("cpu" if args.cpu_time else "wall")
    torch = try_import_torch()
    N, S, P, E, num_heads, F = args.shape
    clock = "CPU time" if args.cpu_time else "wall time"
    print(
        f"bench/transformer.py: {machine_line()}, load average {os.getloadavg()[0]:.1f}, medians of {clock}"
    )
    torch_found = f"{torch.__version__} ({torch.get_num_threads()} threads)" if torch else "not installed"
    print(f"torch: {torch_found}")
    print(
        f"\nDecoder layer forward+backward, float32, N={N} S={S} P={P} E={E} heads={num_heads} F={F} "
        f"(target: within 1.5x of torch's time)"
    )
    gemm = gemm_gflops(n=1024, dtype=np.float32, repeats=args.repeats)
    x, memory, params, dout = problem(N, S, P, E, F)
    t_f, t_b = numpy_seconds(x, memory, params, dout, num_heads, args.repeats)
    total = t_f + t_b
    rate = matmul_flops(N, S, P, E, F) / total / 1e9
    line = (
        f"  fwd {t_f * 1e3:6.1f} ms  bwd {t_b * 1e3:6.1f} ms  total {total * 1e3:6.1f} ms"
        f"  {rate:6.1f} GFLOP/s = {rate / gemm:4.2f} x GEMM ({gemm:.1f} GFLOP/s)"
    )
    if torch is not None:
        t_torch, difference = torch_seconds(torch, x, memory, params, dout, num_heads, args.repeats)
        line += (
            f"  torch {t_torch * 1e3:6.1f} ms: ours takes {total / t_torch:4.2f} x torch's time"
            f" (outputs differ by at most {difference:.1e})"
        )
    print(line)


if __name__ == "__main__":
    main()
