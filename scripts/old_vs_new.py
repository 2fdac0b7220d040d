"""MultiLayerNet and NetStack of an older checkout against this one, in one process, interleaved.

    git worktree add /tmp/before <commit>
    python scripts/old_vs_new.py /tmp/before --rounds 8 [--what multilayer|stack|predict]

The older checkout's ``fastnet`` package is copied as ``fastnet_old`` into a temporary folder (its
own Numba cache) and imported beside this one; each round times both on the same inputs, so the
per-round ratio cancels what the shared machine does meanwhile (alternating processes, as
``paired_ab.py``, leave more of it in). Prints a markdown table: new/old per round, median (min-max).
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


def row(name, pairs, per=1):
    ratios = [new / old for old, new in pairs]
    old, new = statistics.median(o for o, _ in pairs) / per, statistics.median(n for _, n in pairs) / per
    return (f"| {name} | {old * 1e6:,.0f} | {new * 1e6:,.0f} | {statistics.median(ratios):.3f} "
            f"({min(ratios):.2f}-{max(ratios):.2f}) |")  # fmt: skip


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("before", help="a checkout of fastnet (its fastnet/ package is compared)")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--what", choices=("multilayer", "stack", "predict"), default="multilayer")
    args = p.parse_args()
    folder = Path(tempfile.mkdtemp())
    shutil.copytree(Path(args.before) / "fastnet", folder / "fastnet_old", ignore=shutil.ignore_patterns("__pycache__"))
    sys.path.insert(0, str(folder))
    import fastnet_old
    import numpy as np

    import fastnet

    rng = np.random.default_rng(0)
    x, t = rng.random((2000, 784)).astype(np.float32), rng.integers(0, 10, 2000)
    if args.what in ("stack", "predict"):
        compare = compare_stacks if args.what == "stack" else compare_predict
        compare(fastnet_old, fastnet, x, t, rng, args.rounds)
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


def _interleaved(pair, rounds):
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
            print(row(f"{name}, {rows:,} images", _interleaved(pair, rounds)))


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
