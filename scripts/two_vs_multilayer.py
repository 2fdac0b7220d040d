"""Should TwoLayerNet delegate to MultiLayerNet([H])? Time both on the same batches, paired.

    python scripts/two_vs_multilayer.py

One process; each round times 100 steps (batch 100, 784-50-10, SGD lr 0.1) of TwoLayerNet's
specialised step, then of MultiLayerNet([50]); prints the median of the per-round ratios.
"""

import time

import numpy as np

from fastnet import MultiLayerNet, TwoLayerNet


def main(rounds=15):
    rng = np.random.default_rng(0)
    x, t = rng.random((2000, 784)).astype(np.float32), rng.integers(0, 10, 2000)
    batches = rng.integers(0, 2000, (100, 100))
    two = TwoLayerNet(784, 50, 10, seed=0)
    multi = MultiLayerNet(784, [50], 10, weight_init_std=0.01, seed=0)
    two.steps(x, t, batches, 0.1), multi.steps(x, t, batches, 0.1)  # compile / load
    ratios = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        two.steps(x, t, batches, 0.1)
        t1 = time.perf_counter()
        multi.steps(x, t, batches, 0.1)
        ratios.append((time.perf_counter() - t1) / (t1 - t0))
    ratios.sort()
    print(f"MultiLayerNet([50]) / TwoLayerNet, 100 steps at batch 100, {rounds} paired rounds: "
          f"median {ratios[rounds // 2]:.2f} ({ratios[0]:.2f}-{ratios[-1]:.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
