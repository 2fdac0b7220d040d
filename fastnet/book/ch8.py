"""Chapter 8's experiments on real MNIST (``fastnet book ch8 NAME``): the book's figure and its data.

``train-deepnet``  the book's ``train_deepnet.py``: DeepConvNet, Adam 0.001, batch 100, 20 epochs,
                   accuracy on the first 1,000 training and test images after each epoch; the final
                   test accuracy on all 10,000; the weights (deep_convnet_params.pkl in the book's
                   format, weights.npz).
``misclassified``  the trained net (``--params``, or train-deepnet's in --out) on the 10,000 test
                   images: its accuracy and the first 20 misclassified digits, with label and guess.
``half-float``     accuracy with the weights and the inputs rounded to float16, next to full
                   precision (the book's point: 16 bits lose nothing here).
"""

from pathlib import Path

import numpy as np

from .._atomic import atomic_write_json
from ..convnet import DeepConvNet
from . import save_figure
from .ch7 import prepare, train_book_net, trained_params

PARAMS_FILE = "deep_convnet_params.pkl"  # the book's name for the trained weights
COMMAND = "fastnet book ch8 train-deepnet"


def _trained_net(out, params):
    path = trained_params(out, params, PARAMS_FILE, COMMAND)
    net = DeepConvNet()
    net.load_params(path)
    return net, path


def misclassified(data, out, params):
    import matplotlib.pyplot as plt

    net, path = _trained_net(out, params)
    (_, _), (x_test, t_test) = data
    guess = np.concatenate([net.predict(x_test[i : i + 1000]).argmax(axis=1) for i in range(0, len(x_test), 1000)])
    wrong = np.flatnonzero(guess != t_test)
    accuracy = 1 - len(wrong) / len(x_test)
    fig, axes = plt.subplots(4, 5, figsize=(6, 5.6))
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    for ax, i in zip(axes.ravel(), wrong[:20]):
        ax.imshow(x_test[i].reshape(28, 28), cmap="gray_r", interpolation="nearest")
        ax.set_title(f"{int(t_test[i])} → {int(guess[i])}", fontsize=9)
    fig.suptitle(f"DeepConvNet: {len(wrong)} of {len(x_test)} misclassified (label → guess)", fontsize=10)
    save_figure(fig, Path(out) / "misclassified.png")
    first = [{"index": int(i), "label": int(t_test[i]), "guess": int(guess[i])} for i in wrong[:20]]
    result = {"params": str(path), "test_accuracy": accuracy, "misclassified": int(len(wrong)), "first": first}
    return result, f"misclassified: test accuracy {accuracy:.4f}, {len(wrong)} of {len(x_test)} wrong ({path})"


def half_float(data, out, params):
    import matplotlib.pyplot as plt

    net, path = _trained_net(out, params)
    (_, _), (x_test, t_test) = data
    full = net.accuracy(x_test, t_test)
    half = DeepConvNet()
    for key, value in net.params.items():
        half.params[key][...] = value.astype(np.float16)
    x16 = x_test.astype(np.float16).astype(np.float32)
    rounded = half.accuracy(x16, t_test)
    fig, ax = plt.subplots(figsize=(4, 3.2))
    bars = ax.bar(["float32", "float16 weights\nand inputs"], [full, rounded], color=["tab:blue", "tab:orange"])
    for bar, value in zip(bars, [full, rounded]):
        ax.text(bar.get_x() + bar.get_width() / 2, value, f"{value:.4f}", ha="center", va="bottom", fontsize=9)
    ax.set_ylim(min(full, rounded) - 0.01, 1.0)
    ax.set_ylabel("test accuracy")
    ax.set_title(f"half-float: DeepConvNet on {len(x_test)} test images", fontsize=10)
    save_figure(fig, Path(out) / "half-float.png")
    result = {"params": str(path), "float32_accuracy": full, "float16_accuracy": rounded}
    return result, f"half-float: test accuracy {full:.4f} in float32, {rounded:.4f} with float16 weights and inputs"


def run(name, out, data=None, seed=0, epochs=20, params=None):
    """Run experiment ``name``, write ``OUT/NAME.png`` and ``OUT/NAME.json``; returns (result, line)."""
    out, data = prepare(out, data)
    if name == "train-deepnet":
        result, line = train_book_net(DeepConvNet(seed=seed), data, out, seed, epochs, name, PARAMS_FILE)
    elif name == "misclassified":
        result, line = misclassified(data, out, params)
    else:
        result, line = half_float(data, out, params)
    atomic_write_json(out / f"{name}.json", {"experiment": name, "seed": seed, **result})
    return result, line
