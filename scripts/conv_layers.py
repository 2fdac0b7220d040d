"""Where a DeepConvNet (or SimpleConvNet) training step spends its time: each convolution's forward
and backward (with and without dx) timed alone on the step's own buffers, B = 100, medians.

    python scripts/conv_layers.py [--net simple-conv] [--batch 100] [--repeats 30]
"""

import argparse
import time

import numpy as np

from fastnet import DeepConvNet, SimpleConvNet, optim
from fastnet.kernels import records as E
from fastnet.kernels.conv import (
    conv_backward_rows,
    conv_forward_rows,
    no_pool,
    no_winners,
    uses_direct,
    uses_shifted,
    uses_weight_tiles,
)


def median_seconds(func, repeats):
    func()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        func()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--net", choices=["deep-conv", "simple-conv"], default="deep-conv")
    args = parser.parse_args()
    B = args.batch
    net = DeepConvNet(seed=0) if args.net == "deep-conv" else SimpleConvNet(seed=0)
    rng = np.random.default_rng(0)
    x, t = rng.random((1000, 784), dtype=np.float32), rng.integers(0, 10, 1000)
    batches, adam = rng.integers(0, 1000, (6, B)), optim.Adam()
    net.steps(x, t, batches[:1], adam)  # compiles (or loads) and fills the buffers
    step = median_seconds(lambda: net.steps(x, t, batches[1:], adam), max(args.repeats // 3, 3)) / 5
    print(f"{type(net).__name__} step, batch {B}, Adam: {step * 1e3:.2f} ms")
    work, rec = E.EngineWork(*net._workspace(B)[0]), net.net.rec
    flat, grad = net._flat, net._grad
    print("| conv | C→FN, H×W | route fwd / bwd | forward ms | backward ms | of which dW, db | GFLOP/s fwd, bwd |")
    print("|---|---|---|---:|---:|---:|---:|")
    for number, l in enumerate(np.flatnonzero(rec[:, E.KIND] == E.CONV), start=1):
        r = rec[l]
        h = work.x if l == 0 else E.layer_rows(work.acts, rec, l - 1, B)
        out, d = E.layer_rows(work.acts, rec, l, B), E.layer_rows(work.deltas, rec, l, B)
        dh = E.layer_rows(work.deltas, rec, l - 1, B) if l > 0 else work.x[:0]
        w0, b0, fn = r[E.W_OFF], r[E.B_OFF], r[E.OC]
        geometry = tuple(int(v) for v in (r[E.C], r[E.H], r[E.W], r[E.FH], r[E.FW], r[E.STRIDE], r[E.PAD]))
        below = 0 if l == 0 else rec[l - 1, E.ACT]
        W, b, dW, db = flat[w0:b0], flat[b0 : b0 + fn], grad[w0:b0], grad[b0 : b0 + fn]

        def backward(dx):
            conv_backward_rows(h, W, d, dW, db, dx, (work.col, work.dcol, work.taps, work.parts, work.acc), geometry,
                               below, (work.one_zero, work.one_one), no_pool(work.winners, flat))  # fmt: skip

        def forward_pass():
            conv_forward_rows(h, W, b, out, no_winners(work.winners), work.col, work.taps, geometry, r[E.ACT],
                              (work.one_zero, work.one_one))  # fmt: skip

        forward = median_seconds(forward_pass, args.repeats)
        back = median_seconds(lambda: backward(dh), args.repeats)
        params_only = median_seconds(lambda: backward(work.x[:0]), args.repeats)
        flops = 2 * B * fn * r[E.C] * r[E.FH] * r[E.FW] * r[E.OH] * r[E.OW]
        forward_route = "direct" if uses_direct(r[E.STRIDE]) else "unfolded"
        if forward_route == "direct" and uses_shifted(r[E.H], r[E.W], r[E.FH], r[E.FW], r[E.PAD], flat.itemsize):
            forward_route = "shifted"  # the direct tiles on shifted copies
        tiled = uses_weight_tiles(r[E.C], fn, r[E.FH], r[E.FW], r[E.STRIDE], l > 0)
        backward_route = "weight tiles" if tiled else "unfolded"
        if tiled and forward_route == "shifted":
            backward_route = "shifted weight tiles"  # conv.gradient_layout: the same rows as the forward's
        route = forward_route + " / " + backward_route
        print(
            f"| {number} | {r[E.C]}→{fn}, {r[E.H]}×{r[E.W]} | {route} | {forward * 1e3:.2f} | {back * 1e3:.2f} | "
            f"{params_only * 1e3:.2f} | {flops / forward / 1e9:.0f}, {(2 if l else 1) * flops / back / 1e9:.0f} |"
        )


if __name__ == "__main__":
    main()
