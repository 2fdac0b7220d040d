"""The book's chapter 6 experiments, fastnet against the book's method, side by side.

    python scripts/bench_book.py [--only NAME ...] [--out benchmarks/results/BOOK.md]

For each experiment: fastnet (float32), the book's method (the numpy reference
in float64, as the book's scripts run), fastnet again; the same experiment,
data, minibatches and seeds. Times cover the experiment only: the data is
loaded and every kernel compiled before the first timing. The ratio divides the
reference's time by the mean of fastnet's two.
"""

import argparse
import platform
import time

import numpy as np

from fastnet import MultiLayerNet, NetStack, optim
from fastnet.book import CH6_EXPERIMENTS, ch6


def warm_up():
    """Compile (or load from the cache) every kernel the experiments call."""
    rng = np.random.default_rng(0)
    x, t = rng.random((40, 784)).astype(np.float32), rng.integers(0, 10, 40)
    for options in ({}, {"use_batchnorm": True}, {"use_dropout": True}, {"weight_decay_lambda": 0.1}):
        net = MultiLayerNet(784, [20, 20], 10, **options)
        net.steps(x, t, rng.integers(0, 40, (2, 8)), optim.SGD())
        net.accuracy(x, t)
        stack = NetStack([MultiLayerNet(784, [20, 20], 10, **options) for _ in range(2)], [optim.SGD(), optim.Adam()])
        stack.steps(x, t, rng.integers(0, 40, (2, 8)))
        stack.accuracy(x, t)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="*", choices=CH6_EXPERIMENTS, default=list(CH6_EXPERIMENTS))
    parser.add_argument("--out", default="benchmarks/results/BOOK.md")
    args = parser.parse_args()
    warm_up()
    methods = {name: cls() for name, cls in ch6.METHODS.items()}
    data = {name: ch6.load_data(method) for name, method in methods.items()}
    rows = []
    for name in args.only:
        experiment = ch6.EXPERIMENTS[name][0]
        seconds = {}
        for method in ("fastnet", "reference", "fastnet"):
            start = time.perf_counter()
            experiment(methods[method], data[method], seed=0)
            seconds.setdefault(method, []).append(time.perf_counter() - start)
            print(f"{name}: {method} {seconds[method][-1]:.1f} s", flush=True)
        fast = float(np.mean(seconds["fastnet"]))
        rows.append((name, seconds["fastnet"], seconds["reference"][0], seconds["reference"][0] / fast))
    lines = [
        "# The book's chapter 6 experiments: fastnet vs the book's method",
        "",
        f"`python scripts/bench_book.py` on {platform.processor() or platform.machine()}, "
        f"{time.strftime('%Y-%m-%d')}. fastnet float32 (run before and after the reference), "
        "the book's method = the numpy reference in float64; the same experiment, data and minibatches.",
        "",
        "| experiment | fastnet (s, two runs) | book's method (s) | speed-up |",
        "|---|---|---|---|",
    ]
    for name, fast, ref, ratio in rows:
        lines.append(f"| {name} | {fast[0]:.1f}, {fast[1]:.1f} | {ref:.1f} | {ratio:.1f}× |")
    text = "\n".join(lines) + "\n"
    print(text)
    with open(args.out, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
