"""Chapter 6's experiments on real MNIST (``fastnet book ch6 NAME``): the book's figure and its data.

Each experiment is written once, against a *method* that makes networks and
optimizers and trains an experiment's networks as a group: ``Fastnet``
(float32, one ``NetStack``: all steps of all networks in one compiled call)
or ``BookMethod`` (the numpy reference in float64, each step each network's
layered forward and backward, as the book's scripts run). ``scripts/bench_book.py``
times both on the same experiment.

Every network sees the same minibatches as the others in its experiment (drawn
with replacement from ``seed``, as the book's ``np.random.choice``); a curve's
loss at step s is that step's batch loss before its update. A network whose
loss stops being finite is left as it was and trained no further (its curve
reads None from there, its accuracy stays).
"""

import time

import numpy as np

from .. import optim, reference
from .._atomic import atomic_write_json
from ..multilayer import MultiLayerNet
from ..stack import NetStack
from . import CH6_EXPERIMENTS, save_figure


class Fastnet:
    """Networks and optimizers of fastnet, float32. The networks of one experiment train together:
    one ``NetStack`` (all of a run's steps in one compiled call, each network on a core of its own)."""

    name = "fastnet"
    dtype = np.float32

    def network(self, *args, **kwargs):
        return MultiLayerNet(*args, dtype=self.dtype, **kwargs)

    def optimizer(self, name, **hyper):
        return getattr(optim, name)(**hyper)

    def group(self, nets, optimizers):
        return _FastGroup(nets, optimizers)


class _FastGroup:
    def __init__(self, nets, optimizers):
        self.nets, self.optimizers = nets, optimizers
        self.stack = NetStack(nets, optimizers) if len(nets) > 1 else None
        self.frozen = False  # a lone network that diverged

    def train(self, x, t, batches):
        """(S, K) losses, each before its step; NaN for a network frozen after its loss stopped being finite."""
        if self.stack is not None:
            return self.stack.steps(x, t, batches)
        losses = np.full((len(batches), 1), np.nan)
        if not self.frozen:
            taken = self.nets[0].steps(x, t, batches, self.optimizers[0])
            losses[: len(taken), 0] = taken
            self.frozen = len(taken) < len(batches) or not np.isfinite(taken[-1])
        return losses

    def accuracy(self, x, t):
        try:
            return self.stack.accuracy(x, t) if self.stack is not None else np.array([self.nets[0].accuracy(x, t)])
        except ValueError:  # a network's logits overflow: one that diverged
            return np.array([_or_nan(net.accuracy, x, t) for net in self.nets])


def _or_nan(accuracy, x, t):
    try:
        return accuracy(x, t)
    except ValueError:
        return float("nan")


class BookMethod:
    """The book's way: the numpy reference in float64; each step, each network's ``gradient`` then
    its optimizer's ``update``."""

    name = "reference"
    dtype = np.float64

    def network(self, *args, **kwargs):
        return reference.MultiLayerNet(*args, dtype=self.dtype, **kwargs)

    def optimizer(self, name, **hyper):
        return getattr(reference, name)(**hyper)

    def group(self, nets, optimizers):
        return _BookGroup(nets, optimizers)


class _BookGroup:
    def __init__(self, nets, optimizers):
        self.nets, self.optimizers = nets, optimizers
        self.active = [True] * len(nets)

    def train(self, x, t, batches):
        losses = np.full((len(batches), len(self.nets)), np.nan)
        with np.errstate(all="ignore"):  # the book's numpy runs on through overflow, into NaN
            for s, rows in enumerate(batches):
                for k, (net, opt) in enumerate(zip(self.nets, self.optimizers)):
                    if self.active[k]:
                        opt.update(net.params, net.gradient(x[rows], t[rows]))
                        losses[s, k] = net.last_loss
                        self.active[k] = bool(np.isfinite(net.last_loss))
        return losses

    def accuracy(self, x, t):
        with np.errstate(all="ignore"):
            return np.array([float(net.accuracy(x, t)) for net in self.nets])


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


def _curve(losses):
    """A loss curve for JSON: None where the loss is not finite (a diverged network)."""
    return [float(v) if np.isfinite(v) else None for v in losses]


def _epochs_of_training(group, train, test, batches, epochs, per_epoch):
    """The book's loop: a step, then accuracy; then ``per_epoch`` steps and accuracy, ``epochs - 1``
    times (its ``if i % iter_per_epoch == 0`` check after each step). Returns accuracies, (epochs, K)."""
    train_acc, test_acc, done = [], [], 0
    for epoch in range(epochs):
        n = 1 if epoch == 0 else per_epoch
        group.train(*train, batches[done : done + n])
        done += n
        train_acc.append(group.accuracy(*train))
        if test is not None:
            test_acc.append(group.accuracy(*test))
    return np.array(train_acc), np.array(test_acc)


def _batches(seed, rows, steps, batch_size):
    return np.random.default_rng(seed).integers(0, rows, (steps, batch_size))


# -- the experiments --------------------------------------------------------------------------------


def optimizer_compare(method, data, seed=0, iterations=2000, batch_size=128):
    """SGD, Momentum, AdaGrad, Adam (the book's learning rates) on 784-[100×4]-10, same batches."""
    (x, t), _ = data
    batches = _batches(seed, len(x), iterations, batch_size)
    settings = {"SGD": {"lr": 0.01}, "Momentum": {"lr": 0.01}, "AdaGrad": {"lr": 0.01}, "Adam": {"lr": 0.001}}
    nets = [method.network(784, [100] * 4, 10, seed=seed + i) for i in range(len(settings))]
    group = method.group(nets, [method.optimizer(name, **hyper) for name, hyper in settings.items()])
    losses = group.train(x, t, batches)
    loss = {name: _curve(losses[:, k]) for k, name in enumerate(settings)}
    return {"iterations": iterations, "batch_size": batch_size, "optimizers": settings, "loss": loss}


def weight_init_compare(method, data, seed=0, iterations=2000, batch_size=128):
    """std 0.01, Xavier and He initial weights on 784-[100×4]-10 (ReLU), SGD lr 0.01, same batches."""
    (x, t), _ = data
    batches = _batches(seed, len(x), iterations, batch_size)
    inits = {"std=0.01": 0.01, "Xavier": "sigmoid", "He": "relu"}
    nets = [
        method.network(784, [100] * 4, 10, weight_init_std=init, seed=seed + i) for i, init in enumerate(inits.values())
    ]
    group = method.group(nets, [method.optimizer("SGD", lr=0.01) for _ in inits])
    losses = group.train(x, t, batches)
    loss = {name: _curve(losses[:, k]) for k, name in enumerate(inits)}
    return {"iterations": iterations, "batch_size": batch_size, "loss": loss}


def batch_norm(method, data, seed=0, train_size=1000, epochs=20, batch_size=100, lr=0.01):
    """16 initial weight scales (logspace 0 → -4) × with and without batch norm, 784-[100×5]-10,
    SGD lr 0.01 on 1,000 training images; training accuracy per epoch."""
    (x, t), _ = data
    train = (x[:train_size], t[:train_size])
    per_epoch = max(train_size // batch_size, 1)
    batches = _batches(seed, train_size, 1 + (epochs - 1) * per_epoch, batch_size)
    scales = np.logspace(0, -4, num=16)
    accuracy = {}
    for key, use_batchnorm in (("batchnorm", True), ("plain", False)):  # one group each: one architecture
        nets = [method.network(784, [100] * 5, 10, weight_init_std=float(scale), use_batchnorm=use_batchnorm,
                               seed=seed + k) for k, scale in enumerate(scales)]  # fmt: skip
        group = method.group(nets, [method.optimizer("SGD", lr=lr) for _ in scales])
        accuracy[key], _ = _epochs_of_training(group, train, None, batches, epochs, per_epoch)
    runs = [{"weight_scale": float(scale), "batchnorm": accuracy["batchnorm"][:, k].tolist(),
             "plain": accuracy["plain"][:, k].tolist()} for k, scale in enumerate(scales)]  # fmt: skip
    return {"train_size": train_size, "epochs": epochs, "batch_size": batch_size, "lr": lr, "runs": runs}


def _overfit(method, data, seed, epochs, train_size=300, batch_size=100, **net_options):
    (x, t), test = data
    train = (x[:train_size], t[:train_size])
    per_epoch = max(train_size // batch_size, 1)
    batches = _batches(seed, train_size, 1 + (epochs - 1) * per_epoch, batch_size)
    group = method.group([method.network(784, [100] * 6, 10, seed=seed, **net_options)],
                         [method.optimizer("SGD", lr=0.01)])  # fmt: skip
    train_acc, test_acc = _epochs_of_training(group, train, test, batches, epochs, per_epoch)
    return {"train_size": train_size, "epochs": epochs, "batch_size": batch_size, "network": net_options,
            "train_acc": train_acc[:, 0].tolist(), "test_acc": test_acc[:, 0].tolist()}  # fmt: skip


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
    import matplotlib.ticker

    fig, axes = plt.subplots(4, 4, figsize=(12, 10), sharex=True, sharey=True)
    for ax, run in zip(axes.ravel(), result["runs"]):
        epochs = np.arange(len(run["batchnorm"]))
        ax.plot(epochs, run["batchnorm"], marker="o", markersize=3, markevery=2, label="Batch Normalization")
        ax.plot(epochs, run["plain"], linestyle="--", marker="s", markersize=3, markevery=2,
                label="Normal(without BatchNorm)")  # fmt: skip
        ax.set_title(f"W:{run['weight_scale']:.4g}", fontsize=9)
        ax.set_ylim(0, 1.0)
    axes[-1, 0].set(xlabel="epochs", ylabel="accuracy")
    axes[-1, 0].xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True, min_n_ticks=1))  # shared
    axes[0, 0].legend(loc="lower right", fontsize=7)
    return fig


def _accuracy_figure(result):
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(7, 4.5))
    epochs = np.arange(len(result["train_acc"]))
    ax.plot(epochs, result["train_acc"], marker="o", markevery=10, label="train")
    ax.plot(epochs, result["test_acc"], marker="s", markevery=10, label="test")
    ax.set(xlabel="epochs", ylabel="accuracy", ylim=(0, 1.0))
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True, min_n_ticks=1))
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
    save_figure(fig, out / f"{name}.png")
    atomic_write_json(out / f"{name}.json", result)
    return result, f"{name}: {summary(result)} ({seconds:.1f} s, {how.name})"
