"""Hyperparameter search over one architecture on Optuna, trials trained K at a time in a NetStack.

The defaults are the book's ``hyperparameter_optimization.py``: 784-[100×6]-10
on the first 500 MNIST training images, 20 % of them held out for validation,
50 epochs of SGD at batch 100, lr = 10^U(-6, -2) and weight decay =
10^U(-8, -4) drawn at random, the last validation accuracy as the objective.

A study lives in a database: by default an SQLite file under ``out`` (one
machine, nothing to set up; re-running with the same study name resumes it),
or any URL SQLAlchemy takes (``postgresql://user@host/db``: many machines,
one study). Each worker asks Optuna for K trials, trains them together in a
``NetStack`` on the same minibatches, and tells Optuna their results. While
they train, a thread records the trials' heartbeats: a worker that dies
(``kill -9``) leaves trials whose heartbeat goes stale, and the next worker
to ask marks them failed and queues them again with the same parameters.
"""

import csv
import io
import json
import math
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ._atomic import atomic_write_bytes, atomic_write_json
from .sweep_storage import SweepError, creation_lock, open_storage, redact  # noqa: F401  (SweepError: the API's)


@dataclass(frozen=True)
class Range:
    """A hyperparameter's search range, from 'LOW:HIGH' or 'LOW:HIGH:log'."""

    low: float
    high: float
    log: bool = False

    @classmethod
    def parse(cls, text, option):
        parts = str(text).split(":")
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "log"):
            raise SweepError(f"{option} {text!r}: expected LOW:HIGH or LOW:HIGH:log")
        try:
            low, high = float(parts[0]), float(parts[1])
        except ValueError:
            raise SweepError(f"{option} {text!r}: LOW and HIGH must be numbers") from None
        log = len(parts) == 3
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise SweepError(f"{option} {text!r}: LOW must be below HIGH (both finite)")
        if log and low <= 0:
            raise SweepError(f"{option} {text!r}: a log range needs LOW > 0")
        return cls(low, high, log)


NETS = ("dense", "simple-conv", "deep-conv")


@dataclass
class Settings:
    """What a study searches and how each trial trains; stored in the study, shared by its workers."""

    net: str = "dense"  # dense: MultiLayerNet(hidden); simple-conv, deep-conv: the book's convnets
    hidden: list = field(default_factory=lambda: [100] * 6)
    train_size: int = 500
    validation: float = 0.2
    epochs: int = 50
    batch_size: int = 100
    lr: Range = Range(1e-6, 1e-2, True)
    weight_decay: Range = Range(1e-8, 1e-4, True)
    sampler: str = "random"
    seed: int = 0
    layers: str = None  # a Sequential's layers (--layers text) instead of net/hidden; λ on each Affine and Conv

    def to_json(self):
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text):
        raw = json.loads(text)
        raw["lr"], raw["weight_decay"] = Range(**raw["lr"]), Range(**raw["weight_decay"])
        return cls(**raw)

    def check(self):
        if not self.hidden or min(self.hidden) < 1:
            raise SweepError("--hidden: every size must be at least 1")
        if not 0 < self.validation < 1:
            raise SweepError(f"--validation {self.validation}: must lie in (0, 1)")
        n_val = int(self.train_size * self.validation)
        if self.train_size < 2 or not 0 < n_val < self.train_size:
            raise SweepError(f"--train-size {self.train_size} with --validation {self.validation} leaves no rows")
        if self.epochs < 1 or self.batch_size < 1:
            raise SweepError("--epochs and --batch-size must be at least 1")
        if self.net not in NETS:
            raise SweepError(f"--net {self.net!r}: one of {', '.join(NETS)}")
        if self.layers is not None:
            from .layers import parse_layers

            if self.net != "dense":
                raise SweepError("--layers gives the whole network: leave out --net")
            try:
                parse_layers(self.layers)
            except ValueError as e:
                raise SweepError(str(e)) from None
        if self.sampler not in ("random", "tpe"):
            raise SweepError(f"--sampler {self.sampler!r}: random or tpe")


def split(data, settings):
    """(train x, train t, validation x, validation t): the book's: the first ``train_size`` images,
    shuffled (seeded), the first ``validation`` share of them held out."""
    (x, t), _ = data
    x, t = x[: settings.train_size], t[: settings.train_size]
    order = np.random.default_rng(settings.seed).permutation(len(x))
    n_val = int(len(x) * settings.validation)
    val, train = order[:n_val], order[n_val:]
    return x[train], t[train], x[val], t[val]


def open_study(storage, name, settings, join):
    """The study ``name``: joined (its stored settings are used; ``settings`` None or equal) or
    created. ``join``: it must exist already."""
    import optuna

    exists = name in [s.study_name for s in optuna.get_all_study_summaries(storage)]
    if not exists and join:
        raise SweepError(f"--study {name!r}: no such study in this storage (drop --join to create it)")
    if exists:
        stored = Settings.from_json(optuna.load_study(study_name=name, storage=storage).user_attrs["settings"])
        if settings is not None and settings != stored:
            raise SweepError(f"--study {name!r} exists with other settings ({stored.to_json()}); "
                             "give none of them to join it, or another study name")  # fmt: skip
        settings = stored
    settings = settings or Settings()
    settings.check()
    sampler = (optuna.samplers.RandomSampler(seed=None) if settings.sampler == "random"
               else optuna.samplers.TPESampler(seed=None))  # fmt: skip
    study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, direction="maximize",
                                load_if_exists=True)  # fmt: skip
    if not exists:
        study.set_user_attr("settings", settings.to_json())
    return study, settings


class _Heartbeat:
    """Records the running trials' heartbeats every ``interval`` s from a thread of its own."""

    def __init__(self, storage, trial_ids, interval):
        self.storage, self.trial_ids, self.interval = storage, trial_ids, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            for trial_id in self.trial_ids:
                self.storage.record_heartbeat(trial_id)
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def new_net(settings, inputs, decay, seed):
    """The network a trial trains: ``settings.layers`` or ``settings.net``'s, with weight decay ``decay``."""
    from . import layers as L
    from .convnet import DeepConvNet, SimpleConvNet
    from .multilayer import MultiLayerNet
    from .presets import layers_input
    from .sequential import Sequential

    if settings.layers is not None:
        layers = [type(layer)(**{**layer.args, "weight_decay": decay}) if isinstance(layer, (L.Affine, L.Conv))
                  else layer for layer in L.parse_layers(settings.layers)]  # fmt: skip
        try:
            return Sequential(layers_input(layers, inputs), layers, seed=seed)
        except ValueError as e:
            raise SweepError(str(e)) from None
    if settings.net == "dense":
        return MultiLayerNet(inputs, settings.hidden, 10, weight_decay_lambda=decay, seed=seed)
    side = int(round(inputs**0.5))
    if side * side != inputs:
        raise SweepError(f"--net {settings.net} takes square one-channel images; the data has {inputs} inputs")
    make = SimpleConvNet if settings.net == "simple-conv" else DeepConvNet
    return make((1, side, side), output_size=10, seed=seed, weight_decay_lambda=decay)


def train_group(trials, settings, data, stack_seed, on_epoch=None):
    """Train one network per trial (``settings.net``), all in one NetStack on the same minibatches;
    returns (train accuracy curves, validation accuracy curves), one per epoch, each (K,).
    ``on_epoch(epoch, val_acc)`` is called after each epoch with the K validation accuracies."""
    from . import optim
    from .stack import NetStack

    x, t, x_val, t_val = data
    nets, opts = [], []
    for trial in trials:
        lr = trial.suggest_float("lr", settings.lr.low, settings.lr.high, log=settings.lr.log)
        decay = trial.suggest_float("weight_decay", settings.weight_decay.low, settings.weight_decay.high,
                                    log=settings.weight_decay.log)  # fmt: skip
        nets.append(new_net(settings, x.shape[1], decay, settings.seed * 1_000_003 + trial.number))
        opts.append(optim.SGD(lr))
    stack = NetStack(nets, opts)
    per_epoch = max(len(x) // settings.batch_size, 1)
    rng = np.random.default_rng([settings.seed, stack_seed])
    train_acc, val_acc = [], []
    for _ in range(settings.epochs):
        stack.steps(x, t, rng.integers(0, len(x), (per_epoch, settings.batch_size)))
        train_acc.append(stack.accuracy(x, t))
        val_acc.append(stack.accuracy(x_val, t_val))
        if on_epoch is not None:
            on_epoch(len(val_acc) - 1, val_acc[-1])
    return np.array(train_acc), np.array(val_acc)


def run(study_name, trials, out, storage_url=None, settings=None, join=False, stack=16, heartbeat=30,
        data=None, progress=False, log=print):  # fmt: skip
    """Run ``trials`` trials of the study (this worker's share), K = ``stack`` at a time; then write
    every finished trial of the study into ``out`` (trials.json, trials.csv, best.json, sweep.png).
    Returns the study."""
    import optuna

    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 0:
        raise SweepError(f"--trials {trials!r}: a number of trials >= 0")
    if isinstance(stack, bool) or not isinstance(stack, int) or stack < 1:
        raise SweepError(f"--stack {stack!r}: at least 1")
    out = Path(out)
    if storage_url is None:
        storage_url = f"sqlite:///{(out / (study_name + '.db')).resolve()}"
        out.mkdir(parents=True, exist_ok=True)
    with creation_lock(storage_url):  # workers started together: one creates, the others join
        storage = open_storage(storage_url, heartbeat)
        study, settings = open_study(storage, study_name, settings, join)
    out.mkdir(parents=True, exist_ok=True)
    if data is None:
        from .datasets import load_mnist

        data = load_mnist()
    group_data = split(data, settings)
    new_net(settings, group_data[0].shape[1], 0.0, 0)  # a network these inputs cannot feed: refused before any trial
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=trials, unit="trial", dynamic_ncols=True)
    done = 0
    optuna.storages.fail_stale_trials(study)  # even with --trials 0: a dead worker's, failed and queued again
    while done < trials:
        optuna.storages.fail_stale_trials(study)
        group = [study.ask() for _ in range(min(stack, trials - done))]

        def report(epoch, val_acc, group=group):  # intermediate values: the dashboard's curves
            for k, trial in enumerate(group):
                trial.report(float(val_acc[k]), epoch)

        with _Heartbeat(storage, [trial._trial_id for trial in group], heartbeat):
            train_acc, val_acc = train_group(group, settings, group_data, group[0].number, report)
        for k, trial in enumerate(group):
            trial.set_user_attr("train_acc", [float(v) for v in train_acc[:, k]])
            trial.set_user_attr("val_acc", [float(v) for v in val_acc[:, k]])
            study.tell(trial, float(val_acc[-1, k]))
        done += len(group)
        if bar is not None:
            bar.update(len(group))
            bar.set_postfix(best=f"{study.best_value:.3f}", refresh=False)
    if bar is not None:
        bar.close()
    write_results(study, out)
    return study


def write_results(study, out):
    """trials.json and trials.csv (every finished trial: parameters, curves), best.json, and
    sweep.png (the book's figure: the best 20 trials' validation and training curves)."""
    import optuna

    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    rows = [{"number": t.number, "val_acc": t.value, **t.params, "val_curve": t.user_attrs.get("val_acc"),
             "train_curve": t.user_attrs.get("train_acc")} for t in complete]  # fmt: skip
    atomic_write_json(out / "trials.json", rows)
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["number", "val_acc", "lr", "weight_decay", "final_train_acc"])
    for row in rows:
        writer.writerow([row["number"], row["val_acc"], row["lr"], row["weight_decay"], row["train_curve"][-1]])
    atomic_write_bytes(out / "trials.csv", text.getvalue().encode())
    if rows:
        best = max(rows, key=lambda r: r["val_acc"])
        atomic_write_json(out / "best.json", best)
        _figure(sorted(rows, key=lambda r: -r["val_acc"])[:20], out / "sweep.png")


def sweep_figure(best):
    """The book's figure of a search: one panel per trial (best first), its validation and training
    accuracy per epoch, its lr and weight decay in the title; a legend and labelled axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = max(1, min(5, len(best)))
    rows = max(1, math.ceil(len(best) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols + 0.6, 2.3 * rows + 0.8), squeeze=False, sharey=True)
    for ax in axes.ravel()[len(best) :]:
        ax.axis("off")
    for i, (ax, row) in enumerate(zip(axes.ravel(), best)):
        epochs = np.arange(1, len(row["val_curve"]) + 1)
        ax.plot(epochs, row["val_curve"], marker="o", markersize=3, label="validation accuracy")
        ax.plot(epochs, row["train_curve"], "--", marker="s", markersize=3, label="training accuracy")
        ax.set_title(f"#{i + 1}: val {row['val_acc']:.3f}\nlr {row['lr']:.1e}, wd {row['weight_decay']:.1e}",
                     fontsize=8)  # fmt: skip
        ax.set_ylim(0.0, 1.0)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True, nbins=4))
        ax.tick_params(labelsize=7)
        if i % cols == 0:
            ax.set_ylabel("accuracy", fontsize=8)
        if i >= len(best) - cols:
            ax.set_xlabel("epoch", fontsize=8)
    if best:
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper center", ncol=2, fontsize=8, frameon=False)
    fig.suptitle(f"the best {len(best)} trials (by validation accuracy)", fontsize=9, y=0.995)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    return fig


def _figure(best, path):
    import matplotlib.pyplot as plt

    fig = sweep_figure(best)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def dashboard_hint(storage_url, out, study_name):
    """The command that opens the study in Optuna's dashboard."""
    if storage_url is None:
        storage_url = f"sqlite:///{(Path(out) / (study_name + '.db')).resolve()}"
    return (
        f'watch it: optuna-dashboard {redact(storage_url)}   (pip install "fastnet-dlfs[dashboard]"; from a '
        'checkout: pip install -e ".[dashboard]")'
    )


def summary(study):
    import optuna

    states = [t.state for t in study.get_trials(deepcopy=False)]
    complete = states.count(optuna.trial.TrialState.COMPLETE)
    running = states.count(optuna.trial.TrialState.RUNNING)
    note = (f"; {running} running (another worker's, or a dead one's until its heartbeat is stale: "
            "docs/SWEEPS.md)") if running else ""  # fmt: skip
    if not complete:
        return f"study {study.study_name}: no finished trials{note}"
    best = study.best_trial
    lr, decay = best.params["lr"], best.params["weight_decay"]
    return (f"study {study.study_name}: {complete} finished trials; best val acc {best.value:.4f} "
            f"(trial {best.number}: lr {lr:.3g}, weight decay {decay:.3g}){note}")  # fmt: skip
