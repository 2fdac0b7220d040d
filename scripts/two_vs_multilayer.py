"""Should TwoLayerNet run on the layer engine? Its hand-fused SGD step against the engine's step of
the same network (``MultiLayerNet([H])``, on the engine), paired, at the four shapes of the issue.

    python scripts/two_vs_multilayer.py [--rounds 10]

One process; each round takes the median of a few ``step_indices`` calls (SGD, lr 0.001) of each;
prints a markdown table with the median (min-max) of the per-round ratios engine / hand-fused.
"""

import argparse
import statistics

import numpy as np
from old_vs_new import median_seconds  # scripts/: the folder of the script run

from fastnet import MultiLayerNet, TwoLayerNet

SHAPES = ((100, 50, 200), (1000, 50, 40), (100, 1000, 20), (1000, 1000, 4))  # (B, H, calls per round)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=10)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    x, t = rng.random((2000, 784)).astype(np.float32), rng.integers(0, 10, 2000)
    print("| (B, H) | hand-fused µs | engine µs | engine / hand-fused |\n|---|---:|---:|---:|")
    for batch, hidden, calls in SHAPES:
        two = TwoLayerNet(784, hidden, 10, seed=0)
        engine = MultiLayerNet(784, [hidden], 10, weight_init_std=0.01, seed=0)
        idx = rng.integers(0, 2000, batch)
        pair = (lambda: two.step_indices(x, t, idx, 0.001), lambda: engine.step_indices(x, t, idx, 0.001))
        for call in pair:  # compile / load
            call()
        rounds = [tuple(median_seconds(call, calls) for call in pair) for _ in range(args.rounds)]
        ratios = [e / h for h, e in rounds]
        hand, eng = statistics.median(h for h, _ in rounds), statistics.median(e for _, e in rounds)
        print(f"| ({batch}, {hidden}) | {hand * 1e6:,.0f} | {eng * 1e6:,.0f} | {statistics.median(ratios):.2f} "
              f"({min(ratios):.2f}-{max(ratios):.2f}) |")  # fmt: skip


if __name__ == "__main__":
    main()
