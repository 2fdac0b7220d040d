"""Chapter 7's experiments on real MNIST (``fastnet book ch7 NAME``): the book's figure and its data.

``train-convnet``     the book's ``train_convnet.py``: SimpleConvNet, Adam 0.001, batch 100, 20
                      epochs, accuracy on the first 1,000 training and 1,000 test images after
                      each epoch; the final test accuracy on all 10,000; the weights (params.pkl in
                      the book's format, weights.npz).
``visualize-filter``  the 30 first-layer filters as images, at random initialisation and trained
                      (``--params``, or the params.pkl that train-convnet wrote in --out).
``apply-filter``      the trained first-layer filters applied to a test image: its feature maps.
"""

import time
from pathlib import Path

import numpy as np

from .. import optim
from .._atomic import atomic_write_json
from ..convnet import SimpleConvNet
from . import (
    CH7_EXPERIMENTS,  # noqa: F401  (the names, listed where the CLI reads them)
    save_figure,
)

EVALUATION_SAMPLES = 1000  # the book's Trainer(evaluate_sample_num_per_epoch=1000)


def trained_params(out, params, file_name="params.pkl", command="fastnet book ch7 train-convnet"):
    """The path of the trained weights an experiment shows: ``params``, else what ``command`` wrote."""
    path = Path(params) if params else Path(out) / file_name
    if not path.exists():
        raise ValueError(f"{path}: no trained weights; run `{command} --out {out}` first, or give --params "
                         f"(the book's {file_name}, or a fastnet weights file)")  # fmt: skip
    return path


def train_book_net(net, data, out, seed, epochs, name, file_name, log=print):
    """The book's Trainer on ``net``: Adam 0.001, batch 100, ``epochs`` epochs of batches drawn with
    replacement, accuracy on the first 1,000 training and test images after each epoch, the final
    test accuracy on all of them; writes OUT/``file_name`` (the book's format), OUT/weights.npz and
    OUT/``name``.png. Returns (result, line)."""
    (x, t), (x_test, t_test) = data
    opt = optim.Adam(lr=0.001)
    batch, per_epoch = 100, max(len(x) // 100, 1)
    rng = np.random.default_rng(seed)
    train_acc, test_acc, step_seconds = [], [], 0.0
    n_eval = min(EVALUATION_SAMPLES, len(x), len(x_test))
    net.steps(x, t, np.zeros((0, batch), np.int64), opt)  # compile or load before the clock
    net.accuracy(x[:1], t[:1])
    start = time.perf_counter()
    for epoch in range(epochs):
        batches = rng.integers(0, len(x), (per_epoch, batch))  # the book's np.random.choice: with replacement
        t0 = time.perf_counter()
        for s in range(0, per_epoch, 100):  # 100 steps per compiled call
            net.steps(x, t, batches[s : s + 100], opt)
        step_seconds += time.perf_counter() - t0
        train_acc.append(net.accuracy(x[:n_eval], t[:n_eval]))
        test_acc.append(net.accuracy(x_test[:n_eval], t_test[:n_eval]))
        log(f"=== epoch:{epoch + 1}, train acc:{train_acc[-1]:.3f}, test acc:{test_acc[-1]:.3f} ===")
    seconds = time.perf_counter() - start
    final = net.accuracy(x_test, t_test)
    net.save_params(Path(out) / file_name)
    net.save_params(Path(out) / "weights.npz")
    result = {"epochs": epochs, "batch_size": batch, "steps": epochs * per_epoch, "optimizer": "Adam(lr=0.001)",
              "train_acc": train_acc, "test_acc": test_acc, "final_test_acc": final, "step_seconds": step_seconds,
              "seconds": seconds}  # fmt: skip
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # epochs: 1, 2, ... (not 0.96 ... 1.04)
    epochs_axis = np.arange(1, epochs + 1)
    if epochs:
        ax.plot(epochs_axis, train_acc, marker="o", label="train", markevery=2)
        ax.plot(epochs_axis, test_acc, marker="s", label="test", markevery=2)
        ax.legend(loc="lower right")
    ax.set_xlabel("epochs")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.0)
    ax.set_title(f"{type(net).__name__}: final test accuracy {final:.4f}")
    save_figure(fig, Path(out) / f"{name}.png")
    line = (f"{name}: final test accuracy {final:.4f} after {epochs} epochs; {step_seconds:.1f} s of steps, "
            f"{seconds:.1f} s with the evaluations")  # fmt: skip
    return result, line


def train_convnet(data, out, seed=0, epochs=20, log=print):
    return train_book_net(SimpleConvNet(seed=seed), data, out, seed, epochs, "train-convnet", "params.pkl", log)


def _filter_grid(axes_row, filters, title):
    for i, ax in enumerate(axes_row):
        ax.set_xticks([])
        ax.set_yticks([])
        if i < len(filters):
            ax.imshow(filters[i, 0], cmap="gray_r", interpolation="nearest")
    axes_row[0].set_title(title, loc="left", fontsize=9)


def visualize_filter(out, params, seed=0):
    import matplotlib.pyplot as plt

    path = trained_params(out, params)
    trained = SimpleConvNet(seed=seed)
    trained.load_params(path)
    initial = SimpleConvNet(seed=seed).params["W1"]
    after = trained.params["W1"]
    n = after.shape[0]
    cols = 10
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(2 * rows, cols, figsize=(cols, 2 * rows + 0.5), squeeze=False)
    for r in range(rows):
        _filter_grid(axes[r], initial[r * cols : (r + 1) * cols], "random initialisation" if r == 0 else "")
        _filter_grid(axes[rows + r], after[r * cols : (r + 1) * cols], f"trained ({path.name})" if r == 0 else "")
    fig.suptitle(f"visualize-filter: SimpleConvNet's {n} first-layer filters, before and after training",
                 fontsize=10)  # fmt: skip
    save_figure(fig, Path(out) / "visualize-filter.png")
    result = {"params": str(path), "filters": int(n), "initial_std": float(initial.std()),
              "trained_std": float(after.std())}  # fmt: skip
    return result, f"visualize-filter: {n} filters, random init and trained ({path})"


def apply_filter(data, out, params, image=0):
    import matplotlib.pyplot as plt

    from .. import reference

    path = trained_params(out, params)
    net = SimpleConvNet()
    net.load_params(path)
    (_, _), (x_test, t_test) = data
    if not 0 <= image < len(x_test):
        raise ValueError(f"--image {image}: the test set has images 0 to {len(x_test) - 1}")
    img = x_test[image].reshape(1, 1, 28, 28).astype(np.float64)
    W1 = net.params["W1"].astype(np.float64)
    maps = reference.Convolution(W1, np.zeros(W1.shape[0])).forward(img)[0]  # the filters alone, no bias
    n, cols = maps.shape[0], 10
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows + 1, cols, figsize=(cols, rows + 1.3), squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].imshow(img[0, 0], cmap="gray_r")
    axes[0, 0].set_title(f"test image {image} (label {int(t_test[image])})", loc="left", fontsize=8)
    for ax in axes[0, 1:]:
        ax.axis("off")
    for i in range(n):
        axes[1 + i // cols, i % cols].imshow(maps[i], cmap="gray_r")
    fig.suptitle(f"apply-filter: the {n} first-layer filters of {path.name} applied to test image {image}",
                 fontsize=10)  # fmt: skip
    save_figure(fig, Path(out) / "apply-filter.png")
    result = {"params": str(path), "image": image, "label": int(t_test[image]),
              "map_range": [float(maps.min()), float(maps.max())]}  # fmt: skip
    return result, f"apply-filter: {n} feature maps of test image {image} (label {int(t_test[image])})"


def prepare(out, data):
    """(the output directory; MNIST or ``data`` as float32 inputs and int64 labels), with
    matplotlib drawing off screen."""
    import matplotlib

    matplotlib.use("Agg")
    out = Path(out)  # made by the first file written into it: a failed run leaves nothing behind
    if data is None:
        from ..datasets import load_mnist

        data = load_mnist()
    (x, t), (xt, tt) = data
    return out, ((x.astype(np.float32), t.astype(np.int64)), (xt.astype(np.float32), tt.astype(np.int64)))


def run(name, out, data=None, seed=0, epochs=20, params=None, image=0):
    """Run experiment ``name``, write ``OUT/NAME.png`` and ``OUT/NAME.json``; returns (result, line)."""
    out, data = prepare(out, data)
    if name == "train-convnet":
        result, line = train_convnet(data, out, seed, epochs)
    elif name == "visualize-filter":
        result, line = visualize_filter(out, params, seed)
    else:
        result, line = apply_filter(data, out, params, image)
    atomic_write_json(out / f"{name}.json", {"experiment": name, "seed": seed, **result})
    return result, line
