"""Where a DeepConvNet (or SimpleConvNet) training step spends its time: each convolution's forward
and backward (with and without dx) timed alone on the step's own buffers, B = 100, medians.

    python scripts/conv_layers.py [--net simple-conv] [--batch 100] [--repeats 30]

With ``--test-time``: each convolution that runs by Winograd's transform, its output alone
(``predict``'s, an image at a time on every core, the image padded and the bias and ReLU applied) by
the direct tiles and by Winograd's transform, side by side in rounds that alternate which goes
first, ``--batch`` images (1,000 by default there); GFLOP/s counts the direct sum's multiply-adds
for both; the error is one image's largest, against float64's, relative to its largest output.

    python scripts/conv_layers.py --test-time [--net accurate-conv] [--rounds 7]
"""

import argparse
import time

import numpy as np
from numba import get_num_threads, njit, prange

from fastnet import DeepConvNet, Sequential, SimpleConvNet, optim, reference
from fastnet.kernels import records as E
from fastnet.kernels.activations import RELU
from fastnet.kernels.conv import (
    _pad_image,
    _padded_plane,
    conv_backward_rows,
    conv_forward_rows,
    conv_scratch_size,
    direct_filters,
    direct_tiles,
    dw_by_winograd,
    dx_by_winograd,
    no_pool,
    no_winners,
    padded_size,
    shift_image,
    shifted_pixels,
    shifted_size,
    shifted_tiles,
    taps_size,
    uses_direct,
    uses_shifted,
    uses_weight_tiles,
    uses_winograd,
    wide_pixels,
    winograd_filters,
    winograd_tiles,
)
from fastnet.kernels.partition import block_bounds

NETS = {
    "deep-conv": lambda: DeepConvNet(seed=0),
    "simple-conv": lambda: SimpleConvNet(seed=0),
    "accurate-conv": lambda: Sequential.from_spec(
        "1x28x28:conv32x3p1,bn,relu,pool2,conv64x3p1,bn,relu,pool2,affine256,bn,relu,dropout0.4,affine10", seed=0
    ),
}


def median_seconds(func, repeats):
    func()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        func()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


@njit
def image_output(x, filters, b, padded, scratch, geometry, winograd):
    """(out, N, row): image x padded and convolved as ``predict`` does it (``conv.tiles_output``'s
    layout), by Winograd's transform (filters from ``winograd_filters``) or by the direct tiles."""
    C, H, W, FH, FW, _, pad = geometry
    Hq, Wp = _padded_plane(H, W, FW, pad)
    _pad_image(x, C, H, W, pad, Hq, Wp, padded)
    OH, OW, FN = H + 2 * pad - FH + 1, W + 2 * pad - FW + 1, b.shape[0]
    if uses_shifted(H, W, FH, FW, pad, x.itemsize):
        N, row = shifted_pixels(OH, OW, x.itemsize), OW
        size = shifted_size(C, H, W, FH, FW, pad)
        if winograd:
            winograd_tiles(padded, filters, b, scratch, N, row, scratch[FN * N :], geometry, RELU)
            return scratch, N, row
        shift_image(padded, C, H, W, FW, pad, scratch[:size])
        shifted_tiles(scratch[:size], filters, b, scratch[size:], 0, N, geometry, RELU)
        return scratch[size:], N, row
    N = wide_pixels(OH, Wp, x.itemsize)
    if winograd:
        winograd_tiles(padded, filters, b, scratch, N, Wp, scratch[FN * N :], geometry, RELU)
    else:
        direct_tiles(padded, filters, b, scratch, 0, N, geometry, RELU)
    return scratch, N, Wp


@njit(parallel=True)
def test_time_outputs(x, images, filters, b, padded, scratch, geometry, winograd):
    """``images`` images through ``image_output``, image n being x[n % len(x)], block k of images in
    padded[k] and scratch[k]."""
    blocks = scratch.shape[0]
    for k in prange(blocks):
        n0, n1 = block_bounds(images, blocks, k)
        for n in range(n0, n1):
            image_output(x[n % x.shape[0]], filters, b, padded[k], scratch[k], geometry, winograd)


def largest_error(x, filters, b, padded, scratch, geometry, winograd, weights):
    """The largest error of one image's output against float64's, relative to its largest value."""
    C, H, W, FH, FW, stride, pad = geometry
    out, N, row = image_output(x, filters, b, padded, scratch, geometry, winograd)
    layer = reference.Convolution(weights.reshape(-1, C, FH, FW).astype(np.float64), b.astype(np.float64), 1, pad)
    exact = np.maximum(layer.forward(x.reshape(1, C, H, W).astype(np.float64))[0], 0)
    FN, OH, OW = exact.shape
    got = np.stack([[out[f * N + y * row : f * N + y * row + OW] for y in range(OH)] for f in range(FN)])
    return np.abs(got - exact).max() / np.abs(exact).max()


def test_time_table(net, batch, rounds):
    rec, flat = net.net.rec, net._flat
    rng = np.random.default_rng(0)
    blocks = 2 * get_num_threads()
    print(f"| conv, {batch:,} images, test time | C→FN, H×W | tiles ms | Winograd ms | Winograd / tiles, median "
          "(min-max) | GFLOP/s tiles, Winograd | error tiles, Winograd |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|")
    for number, l in enumerate(np.flatnonzero(rec[:, E.KIND] == E.CONV), start=1):
        r = rec[l]
        C, H, W, FN, FH, FW, stride, pad = (int(v) for v in r[[E.C, E.H, E.W, E.OC, E.FH, E.FW, E.STRIDE, E.PAD]])
        if not uses_winograd(C, H, W, FN, FH, FW, stride, pad, flat.itemsize):
            continue
        geometry = (C, H, W, FH, FW, stride, pad)
        weights = flat[r[E.W_OFF] : r[E.B_OFF]].reshape(FN, -1)
        b = flat[r[E.B_OFF] : r[E.B_OFF] + FN]
        packed, transformed = np.empty(weights.size, flat.dtype), np.empty(taps_size(C, FN, FH, FW), flat.dtype)
        direct_filters(weights, C, FH, FW, packed)
        winograd_filters(weights, C, transformed, False)
        # 100 images over and over: in cache, as predict's layers read what the layer below just wrote
        x = rng.standard_normal((min(batch, 100), C * H * W)).astype(flat.dtype)
        padded = np.zeros((blocks, padded_size(C, H, W, FW, pad)), flat.dtype)
        size = conv_scratch_size(C, H, W, FN, FH, FW, stride, pad)
        scratch = np.zeros((blocks, size), flat.dtype)
        calls = [lambda: test_time_outputs(x, batch, packed, b, padded, scratch, geometry, False),
                 lambda: test_time_outputs(x, batch, transformed, b, padded, scratch, geometry, True)]  # fmt: skip
        for call in calls:
            call()
        timings = []
        for round_ in range(rounds):
            order = (1, 0) if round_ % 2 else (0, 1)
            seconds = {i: median_seconds(calls[i], 3) for i in order}
            timings.append((seconds[0], seconds[1]))
        tiles, wino = (float(np.median([t[i] for t in timings])) for i in (0, 1))
        ratios = [w / t for t, w in timings]
        flops = 2 * batch * FN * C * FH * FW * r[E.OH] * r[E.OW]
        errors = [largest_error(x[0], f, b, padded[0], scratch[0], geometry, w, weights)
                  for f, w in ((packed, False), (transformed, True))]  # fmt: skip
        print(f"| {number} | {C}→{FN}, {H}×{W}, pad {pad} | {tiles * 1e3:.2f} | {wino * 1e3:.2f} | "
              f"{np.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) | "
              f"{flops / tiles / 1e9:.0f}, {flops / wino / 1e9:.0f} | {errors[0]:.1e}, {errors[1]:.1e} |")  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=None, help="images (default: 100, or 1,000 with --test-time)")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--net", choices=sorted(NETS), default="deep-conv")
    parser.add_argument("--test-time", action="store_true", help="predict's convolutions: direct tiles and Winograd")
    parser.add_argument("--rounds", type=int, default=7, help="with --test-time: alternating rounds")
    args = parser.parse_args()
    net = NETS[args.net]()
    if args.test_time:
        test_time_table(net, args.batch or 1000, args.rounds)
        return
    B = args.batch or 100
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
        shifted = uses_direct(r[E.STRIDE]) and uses_shifted(r[E.H], r[E.W], r[E.FH], r[E.FW], r[E.PAD], flat.itemsize)
        if shifted:
            forward_route = "shifted"  # the direct tiles on shifted copies
        if uses_winograd(*r[[E.C, E.H, E.W, E.OC, E.FH, E.FW, E.STRIDE, E.PAD]], flat.itemsize):
            forward_route = "Winograd"  # into the tiles' layout, wide or shifted
        tiled = uses_weight_tiles(r[E.C], fn, r[E.FH], r[E.FW], r[E.STRIDE], l > 0)
        shape = r[[E.C, E.H, E.W, E.OC, E.FH, E.FW, E.STRIDE, E.PAD]]
        backward_route = ("shifted weight tiles" if shifted else "weight tiles") if tiled else "unfolded"
        if tiled and dw_by_winograd(*shape, flat.itemsize):
            backward_route = "Winograd dW"
        if tiled and l > 0 and dx_by_winograd(*shape, flat.itemsize):
            backward_route += ", Winograd dx"
        route = forward_route + " / " + backward_route
        print(
            f"| {number} | {r[E.C]}→{fn}, {r[E.H]}×{r[E.W]} | {route} | {forward * 1e3:.2f} | {back * 1e3:.2f} | "
            f"{params_only * 1e3:.2f} | {flops / forward / 1e9:.0f}, {(2 if l else 1) * flops / back / 1e9:.0f} |"
        )


if __name__ == "__main__":
    main()
