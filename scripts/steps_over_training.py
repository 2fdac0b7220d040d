"""A convnet's step time as training goes on, on real MNIST: chunks of 100 steps (B = 100, Adam),
the milliseconds a step of each chunk, and how many values of the optimizer's state are
subnormal at the end (arithmetic on those takes a slow path on x86). Benchmarks on random data
show the first chunks only.

    python scripts/steps_over_training.py [--net simple-conv|deep-conv] [--chunks 30]
"""

import argparse
import time

import numpy as np

from fastnet import DeepConvNet, SimpleConvNet, load_mnist, optim


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--net", choices=["simple-conv", "deep-conv"], default="simple-conv")
    parser.add_argument("--chunks", type=int, default=30)
    args = parser.parse_args()
    (x, t), _ = load_mnist(flatten=False)
    rng = np.random.default_rng(0)
    net = (SimpleConvNet if args.net == "simple-conv" else DeepConvNet)(seed=0)
    adam = optim.Adam(lr=0.001)
    net.steps(x, t, rng.integers(0, len(x), (2, 100)), adam)  # compiles (or loads) outside the timing
    per_step = []
    for _ in range(args.chunks):
        batches = rng.integers(0, len(x), (100, 100))
        start = time.perf_counter()
        net.steps(x, t, batches, adam)
        per_step.append((time.perf_counter() - start) / 100 * 1e3)
    tiny = np.finfo(np.float32).tiny
    state = adam._state  # (m, v), flat
    subnormal = sum(int(((np.abs(s) > 0) & (np.abs(s) < tiny)).sum()) for s in state)
    print(f"{type(net).__name__}, ms a step per chunk of 100: " + " ".join(f"{ms:.2f}" for ms in per_step))
    print(f"subnormal values in Adam's state: {subnormal:,} of {sum(s.size for s in state):,}")


if __name__ == "__main__":
    main()
