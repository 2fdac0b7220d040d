"""What a MultiLayerNet step's matrix products alone take: NumPy's sgemm, one thread, the same shapes.

    python scripts/product_floor.py [--hidden 100,100,100,100] [--batch 128] [--rounds 7]

Times the forward products, the weight-gradient products and the input-gradient
products (none for layer 1) of one step, in a loop, with NumPy's BLAS held at one
thread; prints the median per step and its GFLOP/s. Half of it is what two cores
could do at best with these products; a step cannot be faster than its products.
"""

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", default="100,100,100,100")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    dims = [784, *(int(h) for h in args.hidden.split(",")), 10]
    rng = np.random.default_rng(0)
    x = rng.random((args.batch, dims[0]), dtype=np.float32)
    weights = [rng.random((a, b), dtype=np.float32) for a, b in zip(dims, dims[1:])]
    outs = [np.empty((args.batch, b), np.float32) for b in dims[1:]]
    weight_grads = [np.empty_like(w) for w in weights]
    input_grads = [np.empty((args.batch, a), np.float32) for a in dims[:-1]]

    def products():
        h = x
        for w, out in zip(weights, outs):
            np.matmul(h, w, out)
            h = out
        inputs = [x, *outs[:-1]]
        for i in reversed(range(len(weights))):
            np.matmul(inputs[i].T, outs[i], weight_grads[i])
            if i:
                np.matmul(outs[i], weights[i].T, input_grads[i])

    pairs = [a * b for a, b in zip(dims, dims[1:])]
    flops = 2 * args.batch * (2 * sum(pairs) + sum(pairs[1:]))
    with threadpool_limits(1, user_api="blas"):
        for _ in range(50):
            products()
        times = []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            for _ in range(100):
                products()
            times.append((time.perf_counter() - t0) / 100)
    median = sorted(times)[len(times) // 2]
    print(f"784-{args.hidden.replace(',', '-')}-10, batch {args.batch}: the products of one step take "
          f"{median * 1e6:.0f} µs on one thread ({flops / median / 1e9:.1f} GFLOP/s), {median / 2 * 1e6:.0f} µs "
          "halved over two cores")  # fmt: skip


if __name__ == "__main__":
    main()
