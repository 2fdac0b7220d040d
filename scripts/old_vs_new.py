"""MultiLayerNet, NetStack and the convnets of an older checkout against this one, in one process, interleaved.

    git worktree add /tmp/before <commit>
    python scripts/old_vs_new.py /tmp/before --rounds 8 [--what multilayer|stack|predict|convnet-step|conv-layers|
                                                                pooled-layers]

The older checkout's ``fastnet`` package is copied as ``fastnet_old`` into a temporary folder (its
own Numba cache) and imported beside this one; each round times both on the same inputs, so the
per-round ratio cancels what the shared machine does meanwhile (alternating processes, as
``paired_ab.py``, leave more of it in). Prints a markdown table: new/old per round, median (min-max).

One artifact of two packages in one process: the engine's ``EngineWork`` named tuple exists twice
under one name, and Numba then takes its slow dispatch path for whichever package calls second with
one (``accuracy``): a checkout against itself measures accuracy new/old 1.22, predict 1.00.
"""

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

NETWORKS = [
    ("4 layers B128", [100] * 4, 128, {}),
    ("5 layers batch norm B100", [100] * 5, 100, {"use_batchnorm": True}),
    ("6 layers weight decay B100", [100] * 6, 100, {"weight_decay_lambda": 0.1}),
    ("6 layers dropout B100", [100] * 6, 100, {"use_dropout": True, "dropout_ratio": 0.2}),
]
STACKS = [  # name, members, hidden sizes, options; B = 100, Adam
    ("K=32 784-50-10", 32, [50], {}),
    ("K=16 784-[100x6]-10", 16, [100] * 6, {}),
    ("K=16 784-[100x6]-10 batch norm, dropout", 16, [100] * 6, {"use_batchnorm": True, "use_dropout": True}),
]


def median_seconds(call, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def row(name, pairs, per=1, unit=1e6, decimals=0):
    """A markdown row from (a, b) seconds per round: both medians over ``per`` (µs, or ``unit``) and
    b/a per round, median (min-max)."""
    ratios = [new / old for old, new in pairs]
    old, new = statistics.median(o for o, _ in pairs) / per, statistics.median(n for _, n in pairs) / per
    return (f"| {name} | {old * unit:,.{decimals}f} | {new * unit:,.{decimals}f} | {statistics.median(ratios):.3f} "
            f"({min(ratios):.2f}-{max(ratios):.2f}) |")  # fmt: skip


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("before", help="a checkout of fastnet (its fastnet/ package is compared)")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--what", choices=("multilayer", "stack", "predict", "convnet-step", "conv-layers", "pooled-layers"),
                   default="multilayer")  # fmt: skip
    p.add_argument("--batch", type=int, default=1000, help="images per call (conv-layers)")
    args = p.parse_args()
    folder = Path(tempfile.mkdtemp())
    shutil.copytree(Path(args.before) / "fastnet", folder / "fastnet_old", ignore=shutil.ignore_patterns("__pycache__"))
    sys.path.insert(0, str(folder))
    import fastnet_old
    import numpy as np

    import fastnet

    rng = np.random.default_rng(0)
    x, t = rng.random((2000, 784)).astype(np.float32), rng.integers(0, 10, 2000)
    if args.what == "conv-layers":
        compare_conv_layers(fastnet_old, fastnet, args.batch, rng, args.rounds)
        shutil.rmtree(folder, ignore_errors=True)
        return
    if args.what in ("stack", "predict", "convnet-step", "pooled-layers"):
        compare = {"stack": compare_stacks, "predict": compare_predict, "convnet-step": compare_convnet_steps,
                   "pooled-layers": compare_pooled_layers}  # fmt: skip
        compare[args.what](fastnet_old, fastnet, x, t, rng, args.rounds)
        shutil.rmtree(folder, ignore_errors=True)
        return
    print("| MultiLayerNet 784-[100xL]-10 | old µs | new µs | new/old per round, median (min-max) |")
    print("|---|---:|---:|---:|")
    for name, hidden, batch, options in NETWORKS:
        old = fastnet_old.MultiLayerNet(784, hidden, 10, seed=0, **options)
        new = fastnet.MultiLayerNet(784, hidden, 10, seed=0, **options)
        batches = rng.integers(0, 2000, (20, batch))
        for opt_name in ("SGD", "Adam"):
            opt_old, opt_new = getattr(fastnet_old.optim, opt_name)(0.01), getattr(fastnet.optim, opt_name)(0.01)
            calls = {
                "steps": (lambda: old.steps(x, t, batches, opt_old), lambda: new.steps(x, t, batches, opt_new)),
                "accuracy": (lambda: old.accuracy(x, t), lambda: new.accuracy(x, t)),
            }
            for a, b in calls.values():  # compile and warm both
                a(), b()
            steps, accuracy = [], []
            for _ in range(args.rounds):
                steps.append(tuple(median_seconds(f, 3) for f in calls["steps"]))
                if opt_name == "SGD":
                    accuracy.append(tuple(median_seconds(f, 3) for f in calls["accuracy"]))
            print(row(f"{name}, {opt_name}, a step", steps, per=len(batches)))
            if accuracy:
                print(row(f"{name}, accuracy on 2,000 rows", accuracy))
    shutil.rmtree(folder, ignore_errors=True)


CONVNETS = [  # name, how each package builds it
    ("SimpleConvNet", lambda package: package.SimpleConvNet(seed=0)),
    ("DeepConvNet", lambda package: package.DeepConvNet(seed=0)),
    (
        "accurate-conv (batch norm)",
        lambda package: package.Sequential.from_spec(
            "1x28x28:conv32x3p1,bn,relu,pool2,conv64x3p1,bn,relu,pool2,affine256,bn,relu,dropout0.4,affine10", seed=0
        ),
    ),
]


def interleaved(pair, rounds):
    """(old, new) seconds per round, odd rounds timing the new one first: no order effect."""
    timings = []
    for r in range(rounds):
        order = (1, 0) if r % 2 else (0, 1)
        seconds = {i: median_seconds(pair[i], 3) for i in order}
        timings.append((seconds[0], seconds[1]))
    return timings


def compare_predict(fastnet_old, fastnet, x, t, rng, rounds):
    """The convnets' predict on 1,000 images and on the book's batch of 100, float32."""
    print("| predict, float32 | old µs | new µs | new/old per round, median (min-max) |")
    print("|---|---:|---:|---:|")
    images = x[:1000].reshape(1000, 1, 28, 28)
    for name, make in CONVNETS:
        nets = [make(package) for package in (fastnet_old, fastnet)]
        for rows in (1000, 100):
            pair = [lambda net=net: net.predict(images[:rows]) for net in nets]
            for call in pair:  # compile and warm both
                call()
            print(row(f"{name}, {rows:,} images", interleaved(pair, rounds)))


def compare_convnet_steps(fastnet_old, fastnet, x, t, rng, rounds):
    """The convnets' training step, batch 100, Adam, float32 (10 steps per timing)."""
    print("| a step, B = 100, Adam, float32 | old µs | new µs | new/old per round, median (min-max) |")
    print("|---|---:|---:|---:|")
    images = x.reshape(len(x), 1, 28, 28)
    batches = rng.integers(0, len(x), (10, 100))
    for name, make in CONVNETS:
        nets = [make(package) for package in (fastnet_old, fastnet)]
        optimizers = [package.optim.Adam(0.001) for package in (fastnet_old, fastnet)]
        pair = [lambda net=net, o=o: net.steps(images, t, batches, o) for net, o in zip(nets, optimizers)]
        for call in pair:  # compile and warm both
            call()
        print(row(name, interleaved(pair, rounds), per=len(batches)))


def compare_pooled_layers(fastnet_old, fastnet, x, t, rng, rounds):
    """Each convolution that pools in its training pass (``schedule.pools_in_training``) in the
    convnets' steps, its forward (with the pool) and its backward (from the pool's gradient), alone
    on each package's own network buffers after a step, B = 100, float32."""
    print("| pooled conv, B = 100 | forward old ms | new ms | new/old | backward old ms | new ms | new/old |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    images = x.reshape(len(x), 1, 28, 28)
    batches = rng.integers(0, len(x), (2, 100))
    for name, make in CONVNETS:
        calls = {}
        for package in (fastnet_old, fastnet):
            net = make(package)
            net.steps(images, t, batches, package.optim.Adam(0.001))
            for label, forward, backward in pooled_layer_calls(package, net, name):
                calls.setdefault(label, []).append((forward, backward))
        for label, (old, new) in calls.items():
            cells = []
            for part in (0, 1):
                pair = (old[part], new[part])
                for call in pair:  # compile and warm both
                    call()
                timings = interleaved(pair, rounds)
                ratios = [n / o for o, n in timings]
                old_ms, new_ms = (statistics.median(times) * 1e3 for times in zip(*timings))
                cells += [f"{old_ms:.2f}", f"{new_ms:.2f}", f"{statistics.median(ratios):.2f}"]
            print(f"| {label} | " + " | ".join(cells) + " |")


def pooled_layer_calls(package, net, name):
    """(label, forward, backward) for each convolution of ``net`` pooled in its training pass, on
    the network's own buffers (B = 100)."""
    import numpy as np

    E, conv = package.kernels.records, package.kernels.conv
    work, rec, flat, grad = E.EngineWork(*net._workspace(100)[0]), net.net.rec, net._flat, net._grad
    ones, scratch = (work.one_zero, work.one_one), (work.col, work.dcol, work.taps, work.parts, work.acc)
    for l in np.flatnonzero(rec[:, E.KIND] == E.CONV):
        if not package.kernels.schedule.pools_in_training(rec, l):
            continue
        r, geometry = rec[l], tuple(int(v) for v in package.kernels.engine.conv_geometry(rec, l))
        h = work.x if l == 0 else E.layer_rows(work.acts, rec, l - 1, 100)
        dh = E.layer_rows(work.deltas, rec, l - 1, 100) if l > 0 else work.x[:0]
        out, winners = E.layer_rows(work.acts, rec, l + 1, 100), E.layer_aux(work.winners, rec, l + 1, 100)
        d, below = E.layer_rows(work.deltas, rec, l + 1, 100), 0 if l == 0 else rec[l - 1, E.ACT]
        w0, b0, fn = r[E.W_OFF], r[E.B_OFF], r[E.OC]
        W, b, dW, db = flat[w0:b0], flat[b0 : b0 + fn], grad[w0:b0], grad[b0 : b0 + fn]
        label = f"{name}: {r[E.C]}→{fn}, {r[E.H]}×{r[E.W]}, {r[E.FH]}×{r[E.FW]}, pad {r[E.PAD]}"
        forward = (conv.conv_forward_rows, h, W, b, out, winners, work.col, work.taps, geometry, r[E.ACT], ones)
        backward = (conv.conv_backward_rows, h, W, d, dW, db, dh, scratch, geometry, below, ones,
                    (winners, out, r[E.ACT]))  # fmt: skip
        yield label, lambda f=forward: f[0](*f[1:]), lambda f=backward: f[0](*f[1:])


CONV_LAYERS = [  # C, FN, H = W, filter size, pad: DeepConvNet's six, SimpleConvNet's, accurate-conv's two
    (1, 16, 28, 3, 1), (16, 16, 28, 3, 1), (16, 32, 14, 3, 1), (32, 32, 14, 3, 2), (32, 64, 8, 3, 1),
    (64, 64, 8, 3, 1), (1, 30, 28, 5, 0), (1, 32, 28, 3, 1), (32, 64, 14, 3, 1),
]  # fmt: skip


def compare_conv_layers(fastnet_old, fastnet, batch, rng, rounds):
    """Each convolution of the book's networks alone (``kernels.conv_forward`` with ReLU,
    ``kernels.conv_backward`` with dx unless the input has one channel), float32, stride 1."""
    import numpy as np

    print(f"| conv, {batch:,} images | forward old ms | new ms | new/old | backward old ms | new ms | new/old |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for C, FN, size, F, pad in CONV_LAYERS:
        x = rng.standard_normal((batch, C, size, size)).astype(np.float32)
        W = (rng.standard_normal((FN, C, F, F)) * 0.1).astype(np.float32)
        b, side = np.zeros(FN, np.float32), size + 2 * pad - F + 1
        out = np.empty((batch, FN, side, side), np.float32)
        dout = rng.standard_normal(out.shape).astype(np.float32)
        dW, db, dx = np.zeros_like(W), np.zeros_like(b), np.zeros_like(x)
        calls = {}
        for package in (fastnet_old, fastnet):
            k = package.kernels
            calls.setdefault("forward", []).append(lambda k=k: k.conv_forward(x, W, b, out, 1, pad, relu=True))
            calls.setdefault("backward", []).append(
                lambda k=k: k.conv_backward(x, W, dout, dW, db, dx if C > 1 else None, 1, pad)
            )
        for pair in calls.values():  # compile and warm both
            for call in pair:
                call()
        cells = []
        for pair in calls.values():
            timings = interleaved(pair, rounds)
            ratios = [new / old for old, new in timings]
            cells += [
                f"{statistics.median(o for o, _ in timings) * 1e3:.2f}",
                f"{statistics.median(n for _, n in timings) * 1e3:.2f}",
                f"{statistics.median(ratios):.2f}",
            ]
        print(f"| {C}→{FN}, {size}×{size}, {F}×{F}, pad {pad} | " + " | ".join(cells) + " |")


def compare_stacks(fastnet_old, fastnet, x, t, rng, rounds):
    print("| NetStack, B = 100, Adam | old µs | new µs | new/old per round, median (min-max) |")
    print("|---|---:|---:|---:|")
    for name, k, hidden, options in STACKS:
        stacks = [package.NetStack([package.MultiLayerNet(784, hidden, 10, seed=i, **options) for i in range(k)],
                                   [package.optim.Adam(0.001) for _ in range(k)])
                  for package in (fastnet_old, fastnet)]  # fmt: skip
        batches = rng.integers(0, 2000, (10, 100))
        calls = {
            "steps": [lambda s=s: s.steps(x, t, batches) for s in stacks],
            "accuracy": [lambda s=s: s.accuracy(x, t) for s in stacks],
        }
        for a, b in calls.values():  # compile and warm both
            a(), b()
        timings = {key: [] for key in calls}
        for r in range(rounds):
            for key, pair in calls.items():  # odd rounds time the new one first: no order effect
                order = (1, 0) if r % 2 else (0, 1)
                seconds = {i: median_seconds(pair[i], 3) for i in order}
                timings[key].append((seconds[0], seconds[1]))
        print(row(f"{name}, a step of all K", timings["steps"], per=len(batches)))
        print(row(f"{name}, accuracy on 2,000 rows", timings["accuracy"]))


if __name__ == "__main__":
    main()
