"""The book's training loop (``gradient`` then ``optimizer.update``) against ``steps`` on MNIST.

Trains the same net (same initial weights, same batches) three ways and prints the test accuracy
of each: fastnet's ``steps``; the book's loop; the book's loop with ``gradient(advance=False)``,
which is what ``gradient`` did before it moved batch norm's running statistics and the dropout
mask counter (statistics left at zero, one mask for every step).

    python scripts/book_loop.py [--steps 1000] [--dtype float64]
"""

import argparse
import time

import numpy as np

from fastnet import MultiLayerNet, load_mnist, optim


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = parser.parse_args()
    dtype = np.dtype(args.dtype)
    (x, t), (x_test, t_test) = load_mnist()
    x, x_test = x.astype(dtype), x_test.astype(dtype)
    batches = np.random.default_rng(0).integers(0, len(x), (args.steps, args.batch))
    nets = {
        "batch norm": dict(use_batchnorm=True),
        "dropout 0.2": dict(use_dropout=True, dropout_ratio=0.2),
    }
    print(f"784-100-100-10, Adam 0.001, {args.steps} steps of {args.batch}, {dtype.name}: test accuracy")
    for name, options in nets.items():
        row = []
        for way in ("steps", "book's loop", "book's loop, advance=False"):
            net = MultiLayerNet(784, [100, 100], 10, dtype=dtype, seed=1, **options)
            opt = optim.Adam(0.001)
            began = time.perf_counter()
            if way == "steps":
                net.steps(x, t, batches, opt)
            else:
                for b in batches:
                    opt.update(net.params, net.gradient(x[b], t[b], advance=way == "book's loop"))
            row.append(f"{way} {net.accuracy(x_test, t_test):.4f} ({time.perf_counter() - began:.1f} s)")
        print(f"  {name:<12} " + " | ".join(row))


if __name__ == "__main__":
    main()
