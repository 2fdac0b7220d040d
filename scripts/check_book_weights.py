"""Count the MNIST test images a book weights file classifies correctly, with fastnet (float32 and
float64) and with the book's numpy code (the reference, float64), which loads the file with plain
``pickle.load`` exactly as the book's ``load_params`` does.

    python scripts/check_book_weights.py params.pkl --net simple-conv
    python scripts/check_book_weights.py deep_convnet_params.pkl --net deep-conv
"""

import argparse
import pickle
import time
import warnings

import numpy as np

from fastnet import DeepConvNet, SimpleConvNet, load_mnist, reference


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--net", choices=["simple-conv", "deep-conv"], required=True)
    args = parser.parse_args()
    _, (x, t) = load_mnist(flatten=False)
    fast_class, ref_class = {"simple-conv": (SimpleConvNet, reference.SimpleConvNet),
                             "deep-conv": (DeepConvNet, reference.DeepConvNet)}[args.net]  # fmt: skip
    for dtype in (np.float32, np.float64):
        net = fast_class(dtype=dtype)
        net.load_params(args.path)
        t0 = time.perf_counter()
        correct = round(net.accuracy(x.astype(dtype), t) * len(x))
        print(f"fastnet {np.dtype(dtype).name}: {correct} of {len(x)} correct ({time.perf_counter() - t0:.2f} s)")
    ref = ref_class()
    with open(args.path, "rb") as f, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for key, value in pickle.load(f).items():  # the book's load_params
            ref.params[key][...] = value
    t0 = time.perf_counter()
    correct = round(ref.accuracy(x.astype(np.float64), t) * len(x))
    print(f"the book's numpy code (float64): {correct} of {len(x)} correct ({time.perf_counter() - t0:.2f} s)")


if __name__ == "__main__":
    main()
