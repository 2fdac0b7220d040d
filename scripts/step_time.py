"""The training step of networks given as layer specs (``fastnet train --layers``), timed side by
side in one process: interleaved rounds of ``Sequential.steps`` on random 28×28 images, B = 100,
Adam; the median seconds per step and what an epoch of 60,000 images takes at that rate.

    python scripts/step_time.py conv32x3p1,bn,relu,pool2,affine10 conv64x3p1,bn,relu,pool2,affine10
"""

import argparse
import time

import numpy as np

from fastnet import Sequential, optim


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("specs", nargs="+", metavar="SPEC", help="layers as fastnet train --layers takes them")
    parser.add_argument("--input", default="1x28x28", help="the input shape (1x28x28)")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--steps", type=int, default=20, help="steps per timed call (20)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    nets = [Sequential.from_spec(f"{args.input}:{spec}", seed=0) for spec in args.specs]
    x = rng.random((2000, *(int(size) for size in args.input.split("x"))), dtype=np.float32)
    t = rng.integers(0, 10, len(x))
    batches = rng.integers(0, len(x), (args.steps, args.batch))
    times = {spec: [] for spec in args.specs}
    for net in nets:  # compile (or load the cache) outside the timing
        net.steps(x, t, batches[:2], optim.Adam(1e-3))
    for _ in range(args.rounds):
        for spec, net in zip(args.specs, nets):
            start = time.perf_counter()
            net.steps(x, t, batches, optim.Adam(1e-3))
            times[spec].append((time.perf_counter() - start) / args.steps)
    for spec in args.specs:
        step = float(np.median(times[spec]))
        print(f"{step * 1e3:7.2f} ms a step  {step * 60_000 / args.batch:6.1f} s an epoch  {spec}")


if __name__ == "__main__":
    main()
