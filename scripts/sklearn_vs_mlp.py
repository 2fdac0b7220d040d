"""NetClassifier against scikit-learn's MLPClassifier: one architecture, optimizer and schedule.

    python scripts/sklearn_vs_mlp.py [--rounds 3] [--epochs 10]

784-100-10 on MNIST and 64-100-10 on scikit-learn's own ``load_digits`` (a quarter held out), ReLU,
Adam 1e-3, batch 100, the same number of epochs, no L2 and no early stopping for either, float32
inputs for both. Each round fits both (alternating which goes first) and times ``fit``; prints a
markdown table of median fit times, test accuracies and the ratio. The NetClassifier's kernels are
compiled before the first timing.
"""

import argparse
import statistics
import time
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

from fastnet import load_mnist
from fastnet.sklearn import NetClassifier


def datasets():
    digits = load_digits()
    x, xt, t, tt = train_test_split((digits.data / 16).astype(np.float32), digits.target, test_size=0.25,
                                    random_state=0)  # fmt: skip
    yield "load_digits (1,347 train / 450 test)", (x, t), (xt, tt)
    (x, t), (xt, tt) = load_mnist()
    yield "MNIST (60,000 / 10,000)", (x, t), (xt, tt)


def models(epochs, seed):
    mlp = MLPClassifier(hidden_layer_sizes=(100,), solver="adam", learning_rate_init=1e-3, batch_size=100,
                        max_iter=epochs, alpha=0.0, tol=0.0, n_iter_no_change=epochs + 1, early_stopping=False,
                        random_state=seed)  # fmt: skip
    ours = NetClassifier(layers="100", optimizer="adam", lr=1e-3, batch_size=100, epochs=epochs, random_state=seed,
                         dtype="float32")  # fmt: skip
    return {"MLPClassifier": mlp, "NetClassifier": ours}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=10)
    args = p.parse_args()
    warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter reached: the schedule asked for
    NetClassifier(epochs=1).fit(np.random.default_rng(0).random((200, 64)).astype(np.float32), np.arange(200) % 10)
    print("| data | MLPClassifier fit s | its accuracy | NetClassifier fit s | its accuracy | MLP / Net |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (x, t), (xt, tt) in datasets():
        seconds, accuracy = {"MLPClassifier": [], "NetClassifier": []}, {}
        for r in range(args.rounds):
            pair = list(models(args.epochs, r).items())
            for label, model in pair if r % 2 == 0 else pair[::-1]:
                t0 = time.perf_counter()
                model.fit(x, t)
                seconds[label].append(time.perf_counter() - t0)
                accuracy.setdefault(label, []).append(model.score(xt, tt))
        mlp, net = statistics.median(seconds["MLPClassifier"]), statistics.median(seconds["NetClassifier"])
        print(f"| {name} | {mlp:.2f} | {statistics.median(accuracy['MLPClassifier']):.4f} | {net:.2f} | "
              f"{statistics.median(accuracy['NetClassifier']):.4f} | {mlp / net:.1f}× |")  # fmt: skip


if __name__ == "__main__":
    main()
