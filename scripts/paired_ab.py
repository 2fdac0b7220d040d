"""Paired A/B of two checkouts of fastnet: alternating processes, medians of per-round ratios.

    git worktree add /tmp/before <commit>
    python scripts/paired_ab.py /tmp/before . --rounds 8 --measure steps
    python scripts/paired_ab.py /tmp/before . --rounds 6 --measure deep
    python scripts/paired_ab.py /tmp/before . --rounds 6 --measure book
    python scripts/paired_ab.py /tmp/before . --rounds 6 --measure conv

Each round runs one process per checkout (``PYTHONPATH`` set to it), in alternating order, and
each process times: ``steps``: ``TwoLayerNet.step_indices`` medians at (100, 50), (1000, 50),
(100, 1000), (1000, 1000) and ``accuracy`` on 2,000 rows; ``deep``: ``MultiLayerNet.step_indices``
and ``steps`` on 784-100x4-10 at batch 128 with SGD and Adam, and ``TwoLayerNet.steps`` at (100,
50); ``book``: ``MultiLayerNet.steps`` on the networks of ``fastnet book ch6``; ``conv``: the
book's ``SimpleConvNet`` and ``DeepConvNet`` steps at batch 100 with Adam, and their predict on
1,000 images. On a shared
machine single timings drift by tens of percent; a ratio taken within each round
cancels most of it. Prints a markdown table: B's time over A's (below 1: B is faster).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def median_seconds(call, rounds):
    call()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return sorted(times)[rounds // 2]


def measure(which):
    import numpy as np

    from fastnet import MultiLayerNet, TwoLayerNet, optim

    rng = np.random.default_rng(0)
    x = rng.random((2000, 784)).astype(np.float32)
    t = rng.integers(0, 10, 2000)
    out = {}
    if which == "steps":
        for batch, hidden, rounds in ((100, 50, 1500), (1000, 50, 300), (100, 1000, 150), (1000, 1000, 30)):
            net, idx = TwoLayerNet(784, hidden, 10, seed=0), rng.integers(0, 2000, batch)
            out[f"step {batch}-{hidden}"] = median_seconds(lambda: net.step_indices(x, t, idx, 0.001), rounds)
            out[f"accuracy 2k H{hidden}"] = median_seconds(lambda: net.accuracy(x, t), max(rounds // 10, 10))
    elif which == "book":  # the networks of the chapter 6 experiments (fastnet book ch6)
        for name, hidden, batch, options in (
            ("4 layers B128", [100] * 4, 128, {}),
            ("5 layers B100", [100] * 5, 100, {}),
            ("5 layers batch norm B100", [100] * 5, 100, {"use_batchnorm": True}),
            ("6 layers weight decay B100", [100] * 6, 100, {"weight_decay_lambda": 0.1}),
            ("6 layers dropout B100", [100] * 6, 100, {"use_dropout": True, "dropout_ratio": 0.2}),
        ):
            net, batches = MultiLayerNet(784, hidden, 10, seed=0, **options), rng.integers(0, 2000, (50, batch))
            out[f"SGD steps x50, {name}"] = median_seconds(lambda: net.steps(x, t, batches, 0.01), 10) / 50
    elif which == "conv":
        from fastnet import DeepConvNet, SimpleConvNet

        for name, make, rounds in (("SimpleConvNet", SimpleConvNet, 60), ("DeepConvNet", DeepConvNet, 20)):
            net, opt, idx = make(seed=0), optim.Adam(), rng.integers(0, 2000, 100)
            out[f"{name} step B100 Adam"] = median_seconds(lambda: net.step_indices(x, t, idx, opt), rounds)
            out[f"{name} predict 1k"] = median_seconds(lambda: net.predict(x[:1000]), max(rounds // 10, 5))
    else:
        for name in ("SGD", "Adam"):
            net, opt = MultiLayerNet(784, [100] * 4, 10, seed=0), getattr(optim, name)()
            idx, batches = rng.integers(0, 2000, 128), rng.integers(0, 2000, (50, 128))
            out[f"deep {name}"] = median_seconds(lambda: net.step_indices(x, t, idx, opt), 300)
            out[f"deep {name}, steps x50"] = median_seconds(lambda: net.steps(x, t, batches, opt), 10) / 50
        net, batches = TwoLayerNet(784, 50, 10, seed=0), rng.integers(0, 2000, (100, 100))
        out["two-layer steps x100"] = median_seconds(lambda: net.steps(x, t, batches, 0.01), 20) / 100
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--measure", choices=["steps", "deep", "book", "conv"], default="steps")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(measure(args.measure)))
        return
    results = {args.a: [], args.b: []}
    for r in range(args.rounds):
        for tree in (args.a, args.b) if r % 2 == 0 else (args.b, args.a):
            run = subprocess.run(
                [sys.executable, __file__, args.a, args.b, "--measure", args.measure, "--worker"],
                capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": os.path.abspath(tree)},
            )  # fmt: skip
            results[tree].append(json.loads(run.stdout.strip().splitlines()[-1]))
    print("| measure | A median µs | B median µs | B/A per round, median (min-max) |\n|---|---:|---:|---:|")
    for key in results[args.a][0]:
        a = [r[key] for r in results[args.a]]
        b = [r[key] for r in results[args.b]]
        ratios = [y / x for x, y in zip(a, b)]
        print(f"| {key} | {statistics.median(a) * 1e6:,.1f} | {statistics.median(b) * 1e6:,.1f} | "
              f"{statistics.median(ratios):.3f} ({min(ratios):.2f}-{max(ratios):.2f}) |")  # fmt: skip


if __name__ == "__main__":
    main()
