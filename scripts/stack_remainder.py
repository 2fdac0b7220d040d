"""K = 3 networks 784-100x4-10 (batch 128, SGD) in one NetStack: the members that do not fill a
round of the cores trained in the stack kernel vs alone, each on every core.

    python scripts/stack_remainder.py [--rounds 15]

One process, one stack; each round times 20 steps both ways, the split switched through
``fastnet._cores.BLOCKS`` (what ``NetStack`` decides by; the kernels' blocks stay as they are).
Prints the medians and the median of per-round ratios.
"""

import argparse
import time

import numpy as np

import fastnet
from fastnet import _cores, optim


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x, t = rng.random((2000, 784), dtype=np.float32), rng.integers(0, 10, 2000)
    batches = rng.integers(0, 2000, (20, 128))
    nets = [fastnet.MultiLayerNet(784, [100] * 4, 10, seed=k) for k in range(3)]
    stack = fastnet.NetStack(nets, [optim.SGD(0.01) for _ in nets])
    blocks = _cores.BLOCKS if _cores.BLOCKS > 1 else 2  # K = 3 leaves a remainder that trains alone
    settings = {"all in the stack kernel": 1, "the remainder alone": blocks}  # BLOCKS=1: no remainder
    times = {name: [] for name in settings}
    for r in range(args.rounds + 1):
        for name, blocks in settings.items():
            _cores.BLOCKS = blocks
            t0 = time.perf_counter()
            stack.steps(x, t, batches)
            if r:  # round 0 warms up
                times[name].append((time.perf_counter() - t0) / len(batches))
    a, b = (np.array(v) for v in times.values())
    for name, v in times.items():
        print(f"{name}: {np.median(v) * 1e3:.2f} ms a step")
    print(f"ratio (alone / stacked), median of rounds: {np.median(b / a):.3f}")


if __name__ == "__main__":
    main()
