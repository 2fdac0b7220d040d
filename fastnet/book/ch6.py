"""Chapter 6's experiments on real MNIST (``fastnet book ch6 NAME``): the book's figure and its data.

Each experiment is written once, against a *method* that makes networks and
optimizers and trains them: ``Fastnet`` (float32, compiled steps, many per
call) or ``BookMethod`` (the numpy reference in float64, one layered forward
and backward per step, as the book's scripts run). ``scripts/bench_book.py``
times both on the same experiment.

Every network sees the same minibatches as the others in its experiment (drawn
with replacement from ``seed``, as the book's ``np.random.choice``); a curve's
loss at step s is that step's batch loss before its update. A network whose
loss stops being finite is left as it was and trained no further (its curve
ends, its accuracy stays).
"""

import io
import json
import time

import numpy as np

from .. import optim, reference
from .._atomic import atomic_write_bytes
from ..multilayer import MultiLayerNet
from . import CH6_EXPERIMENTS


class Fastnet:
    """Networks and optimizers of fastnet, float32; ``train`` runs all its steps in one compiled call."""

    name = "fastnet"
    dtype = np.float32

    def network(self, *args, **kwargs):
        return MultiLayerNet(*args, dtype=self.dtype, **kwargs)

    def optimizer(self, name, **hyper):
        return getattr(optim, name)(**hyper)

    def train(self, net, optimizer, x, t, batches):
        """The steps' losses; fewer if a step's loss was not finite (that step changed nothing)."""
        return net.steps(x, t, batches, optimizer)

    def accuracy(self, net, x, t):
        try:
            return net.accuracy(x, t)
        except ValueError:  # the logits overflow: a network that diverged
            return float("nan")


class BookMethod:
    """The book's way: the numpy reference in float64, ``gradient`` then ``update`` for each batch."""

    name = "reference"
    dtype = np.float64

    def network(self, *args, **kwargs):
        return reference.MultiLayerNet(*args, dtype=self.dtype, **kwargs)

    def optimizer(self, name, **hyper):
        return getattr(reference, name)(**hyper)

    def train(self, net, optimizer, x, t, batches):
        losses = np.empty(len(batches))
        with np.errstate(all="ignore"):  # the book's numpy runs on through overflow, into NaN
            for s, rows in enumerate(batches):
                optimizer.update(net.params, net.gradient(x[rows], t[rows]))
                losses[s] = net.last_loss
        return losses

    def accuracy(self, net, x, t):
        with np.errstate(all="ignore"):
            return float(net.accuracy(x, t))


METHODS = {"fastnet": Fastnet, "reference": BookMethod}


def smooth_curve(x):
    """The book's smoothing of a loss curve: an 11-point Kaiser window (β = 2), edges mirrored."""
    x = np.asarray(x, dtype=float)
    if x.size < 11:
        return x
    window = 11
    s = np.r_[x[window - 1 : 0 : -1], x, x[-1:-window:-1]]
    w = np.kaiser(window, 2)
    y = np.convolve(w / w.sum(), s, mode="valid")
    return y[5 : len(y) - 5]


def _train_run(method, net, optimizer, x, t, batches, state):
    """Train on ``batches`` unless the net diverged before (``state['diverged']``); losses as a list."""
    if state.get("diverged"):
        return []
    losses = method.train(net, optimizer, x, t, batches)
    if len(losses) < len(batches) or not np.all(np.isfinite(losses)):
        state["diverged"] = True
    return [float(v) if np.isfinite(v) else None for v in losses]


def _epochs_of_training(method, net, optimizer, train, test, batches, epochs, per_epoch):
    """The book's loop: a step, then accuracy; then ``per_epoch`` steps and accuracy, ``epochs - 1``
    times (its ``if i % iter_per_epoch == 0`` check after each step). Returns accuracies per epoch."""
    state, train_acc, test_acc, done = {}, [], [], 0
    for epoch in range(epochs):
        n = 1 if epoch == 0 else per_epoch
        _train_run(method, net, optimizer, *train, batches[done : done + n], state)
        done += n
        train_acc.append(method.accuracy(net, *train))
        if test is not None:
            test_acc.append(method.accuracy(net, *test))
    return train_acc, test_acc


def _batches(seed, rows, steps, batch_size):
    return np.random.default_rng(seed).integers(0, rows, (steps, batch_size))


# -- the experiments --------------------------------------------------------------------------------


def optimizer_compare(method, data, seed=0, iterations=2000, batch_size=128):
    """SGD, Momentum, AdaGrad, Adam (the book's learning rates) on 784-[100×4]-10, same batches."""
    (x, t), _ = data
    batches = _batches(seed, len(x), iterations, batch_size)
    settings = {"SGD": {"lr": 0.01}, "Momentum": {"lr": 0.01}, "AdaGrad": {"lr": 0.01}, "Adam": {"lr": 0.001}}
    loss = {}
    for i, (name, hyper) in enumerate(settings.items()):
        net = method.network(784, [100] * 4, 10, seed=seed + i)
        loss[name] = _train_run(method, net, method.optimizer(name, **hyper), x, t, batches, {})
    return {"iterations": iterations, "batch_size": batch_size, "optimizers": settings, "loss": loss}


def weight_init_compare(method, data, seed=0, iterations=2000, batch_size=128):
    """std 0.01, Xavier and He initial weights on 784-[100×4]-10 (ReLU), SGD lr 0.01, same batches."""
    (x, t), _ = data
    batches = _batches(seed, len(x), iterations, batch_size)
    inits = {"std=0.01": 0.01, "Xavier": "sigmoid", "He": "relu"}
    loss = {}
    for i, (name, init) in enumerate(inits.items()):
        net = method.network(784, [100] * 4, 10, weight_init_std=init, seed=seed + i)
        loss[name] = _train_run(method, net, method.optimizer("SGD", lr=0.01), x, t, batches, {})
    return {"iterations": iterations, "batch_size": batch_size, "loss": loss}


def batch_norm(method, data, seed=0, train_size=1000, epochs=20, batch_size=100, lr=0.01):
    """16 initial weight scales (logspace 0 → -4) × with and without batch norm, 784-[100×5]-10,
    SGD lr 0.01 on 1,000 training images; training accuracy per epoch."""
    (x, t), _ = data
    train = (x[:train_size], t[:train_size])
    per_epoch = max(train_size // batch_size, 1)
    batches = _batches(seed, train_size, 1 + (epochs - 1) * per_epoch, batch_size)
    runs = []
    for k, scale in enumerate(np.logspace(0, -4, num=16)):
        run = {"weight_scale": float(scale)}
        for key, use_batchnorm in (("batchnorm", True), ("plain", False)):
            net = method.network(784, [100] * 5, 10, weight_init_std=float(scale), use_batchnorm=use_batchnorm,
                                 seed=seed + k)  # fmt: skip
            opt = method.optimizer("SGD", lr=lr)
            run[key], _ = _epochs_of_training(method, net, opt, train, None, batches, epochs, per_epoch)
        runs.append(run)
    return {"train_size": train_size, "epochs": epochs, "batch_size": batch_size, "lr": lr, "runs": runs}


def _overfit(method, data, seed, epochs, train_size=300, batch_size=100, **net_options):
    (x, t), test = data
    train = (x[:train_size], t[:train_size])
    per_epoch = max(train_size // batch_size, 1)
    batches = _batches(seed, train_size, 1 + (epochs - 1) * per_epoch, batch_size)
    net = method.network(784, [100] * 6, 10, seed=seed, **net_options)
    opt = method.optimizer("SGD", lr=0.01)
    train_acc, test_acc = _epochs_of_training(method, net, opt, train, test, batches, epochs, per_epoch)
    return {"train_size": train_size, "epochs": epochs, "batch_size": batch_size, "network": net_options,
            "train_acc": train_acc, "test_acc": test_acc}  # fmt: skip


def overfit_weight_decay(method, data, seed=0, epochs=201):
    """300 training images, 784-[100×6]-10, weight decay λ = 0.1, SGD lr 0.01: train vs test accuracy."""
    return _overfit(method, data, seed, epochs, weight_decay_lambda=0.1)


def overfit_dropout(method, data, seed=0, epochs=301):
    """300 training images, 784-[100×6]-10, dropout 0.2, SGD lr 0.01: train vs test accuracy."""
    return _overfit(method, data, seed, epochs, use_dropout=True, dropout_ration=0.2)


# -- figures and summaries --------------------------------------------------------------------------


def _loss_figure(result, ylim):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (name, losses), marker in zip(result["loss"].items(), "o^sd"):
        curve = smooth_curve([np.nan if v is None else v for v in losses])
        ax.plot(np.arange(len(curve)), curve, marker=marker, markevery=100, label=name)
    ax.set(xlabel="iterations", ylabel="loss", ylim=ylim)
    ax.legend()
    return fig


def _batch_norm_figure(result):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(4, 4, figsize=(12, 10), sharex=True, sharey=True)
    for ax, run in zip(axes.ravel(), result["runs"]):
        epochs = np.arange(len(run["batchnorm"]))
        ax.plot(epochs, run["batchnorm"], label="Batch Normalization", markevery=2)
        ax.plot(epochs, run["plain"], linestyle="--", label="Normal(without BatchNorm)", markevery=2)
        ax.set_title(f"W:{run['weight_scale']:.4g}", fontsize=9)
        ax.set_ylim(0, 1.0)
    axes[-1, 0].set(xlabel="epochs", ylabel="accuracy")
    axes[0, 0].legend(loc="lower right", fontsize=7)
    return fig


def _accuracy_figure(result):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    epochs = np.arange(len(result["train_acc"]))
    ax.plot(epochs, result["train_acc"], marker="o", markevery=10, label="train")
    ax.plot(epochs, result["test_acc"], marker="s", markevery=10, label="test")
    ax.set(xlabel="epochs", ylabel="accuracy", ylim=(0, 1.0))
    ax.legend(loc="lower right")
    return fig


def _final_losses(result):
    return ", ".join(
        f"{name} {smooth_curve([v for v in losses if v is not None])[-1]:.3f}" if losses and losses[-1] is not None
        else f"{name} diverged"
        for name, losses in result["loss"].items()
    )  # fmt: skip


def _batch_norm_summary(result):
    wins = sum(run["batchnorm"][-1] > run["plain"][-1] for run in result["runs"])
    return f"batch norm ends with the higher training accuracy at {wins} of {len(result['runs'])} weight scales"


def _overfit_summary(result):
    train, test = result["train_acc"][-1], result["test_acc"][-1]
    return f"after {result['epochs']} epochs: train {train:.3f}, test {test:.3f} (gap {train - test:.3f})"


EXPERIMENTS = {
    # name: (run, figure, summary)
    "optimizer-compare": (optimizer_compare, lambda r: _loss_figure(r, (0, 1)),
                          lambda r: f"final smoothed loss: {_final_losses(r)}"),
    "weight-init-compare": (weight_init_compare, lambda r: _loss_figure(r, (0, 2.5)),
                            lambda r: f"final smoothed loss: {_final_losses(r)}"),
    "batch-norm": (batch_norm, _batch_norm_figure, _batch_norm_summary),
    "overfit-weight-decay": (overfit_weight_decay, _accuracy_figure, _overfit_summary),
    "overfit-dropout": (overfit_dropout, _accuracy_figure, _overfit_summary),
}  # fmt: skip
assert tuple(EXPERIMENTS) == CH6_EXPERIMENTS


def _json_ready(value):
    """``value`` with every NaN or infinity (a diverged network's accuracy) replaced by None."""
    if isinstance(value, dict):
        return {key: _json_ready(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    return value


def load_data(method, data=None):
    """((x, t), (x_test, t_test)) in the method's dtype: ``data`` (arrays in the same form, the
    inputs scaled to [0, 1]), or else MNIST (from the cache, or downloaded)."""
    if data is None:
        from ..datasets import load_mnist

        data = load_mnist()
    (x, t), (xt, tt) = data
    return (x.astype(method.dtype), t.astype(np.int64)), (xt.astype(method.dtype), tt.astype(np.int64))


def run(name, out, method="fastnet", data=None, seed=0, **sizes):
    """Run experiment ``name`` (``sizes`` override its iterations or epochs), write ``OUT/NAME.png``
    and ``OUT/NAME.json``; returns (result, summary line)."""
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    experiment, figure, summary = EXPERIMENTS[name]
    how = METHODS[method]()
    data = load_data(how, data)
    start = time.perf_counter()
    result = experiment(how, data, seed=seed, **sizes)
    seconds = time.perf_counter() - start
    result = {"experiment": name, "method": how.name, "seed": seed, "seconds": seconds, **result}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fig = figure(result)
    fig.suptitle(f"{name} ({how.name})")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(out / f"{name}.png", buf.getvalue())
    atomic_write_bytes(out / f"{name}.json", json.dumps(_json_ready(result), allow_nan=False).encode())
    return result, f"{name}: {summary(result)} ({seconds:.1f} s, {how.name})"
