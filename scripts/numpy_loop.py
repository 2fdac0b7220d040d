"""fastnet inside a user's numpy loop: each side's median alone and mixed with the other.

    python scripts/numpy_loop.py [default|passive|SPINCOUNT]

The loop alternates a numpy product of the user's own (256x256 float32, NumPy's
BLAS at its default threads) with ``net.step_indices`` on the book's network
(batch 100, hidden 50). The argument sets Numba's OpenMP spin before fastnet is
imported: ``default`` leaves it to fastnet, ``passive`` sets
OMP_WAIT_POLICY=PASSIVE, a number sets GOMP_SPINCOUNT. Prints medians in µs.
"""

import os
import sys
import time

setting = sys.argv[1] if len(sys.argv) > 1 else "default"
if setting == "passive":
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
elif setting != "default":
    os.environ["GOMP_SPINCOUNT"] = setting

import numpy as np  # noqa: E402

from fastnet import TwoLayerNet, _cores  # noqa: E402


def median_us(call, between=None, rounds=400):
    """Median of ``call``'s time over ``rounds``, with ``between`` (untimed) before each."""
    times = []
    for _ in range(rounds):
        if between is not None:
            between()
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return sorted(times)[rounds // 2] * 1e6


def main():
    rng = np.random.default_rng(0)
    x = rng.random((2000, 784)).astype(np.float32)
    t = rng.integers(0, 10, 2000)
    a, b = rng.random((256, 256)).astype(np.float32), rng.random((256, 256)).astype(np.float32)
    net = TwoLayerNet(784, 50, 10, seed=0)
    idx = rng.integers(0, 2000, 100)

    def step():
        net.step_indices(x, t, idx, 0.001)

    def product():
        return a @ b

    step(), product()  # compile, warm up
    result = {
        "step alone": median_us(step),
        "numpy alone": median_us(product),
        "step mixed": median_us(step, product),
        "numpy mixed": median_us(product, step),
    }
    print(
        f"{setting} (OpenMP start: {_cores.OPENMP_SETTINGS}): " + ", ".join(f"{k} {v:.0f}" for k, v in result.items())
    )


if __name__ == "__main__":
    main()
