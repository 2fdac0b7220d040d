"""The book's minibatch loop on fastnet's networks (TwoLayerNet, MultiLayerNet), with per-epoch evaluation.

Batches are drawn as the book draws them (``batch_size`` indices with
replacement, each step), and train/test accuracy is evaluated whenever
``i % iter_per_epoch == 0``, which prints the book's lines. A final evaluation
follows the last step. The steps between evaluations run in compiled calls of
up to 100 steps (``TwoLayerNet.steps``), with the batches drawn in bulk from the
same random stream (so the same seed gives the same run as drawing per step).
"""

import math
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from . import _cores
from ._atomic import atomic_write_text, json_text
from .augment import augmented, check_augmentation
from .kernels import pixel_codes_unchecked, require_finite, require_labels
from .weights import describe


@dataclass
class EpochRecord:
    epoch: float  # iterations / iter_per_epoch at the evaluation
    iteration: int  # steps taken before it
    train_acc: float
    test_acc: float
    loss: float  # mean training loss over the steps since the previous record
    val_acc: float = None  # accuracy on the validation split, when there is one


@dataclass
class History:
    config: dict
    epochs: list = field(default_factory=list)
    train_seconds: float = 0.0  # wall time of the whole loop: steps and evaluations
    eval_seconds: float = 0.0  # of which evaluations
    steps_done: int = 0
    stopped: str = "completed"  # or "interrupted", "diverged", "early-stopped"
    best_epoch: float = None  # with early stopping: the epoch whose weights were kept
    message: str = ""
    step_losses: np.ndarray = None  # per step, for the plot (not written to JSON)

    def to_json(self):
        d = asdict(self)
        d.pop("step_losses")
        return json_text(d, indent=2)  # NaN (a diverged loss) as null: strict JSON

    def save(self, path):
        atomic_write_text(path, self.to_json() + "\n")


def resolve_seed(seed=None):
    """``seed``, or a fresh one drawn from the OS when it is None (to be recorded, so a run can be repeated)."""
    return int(np.random.SeedSequence().entropy % 2**32) if seed is None else int(seed)


def train(
    net, train_data, test_data, iters=10_000, batch_size=100, lr=0.1, seed=None, progress=None, log=print,
    optimizer=None, validation=0.0, early_stopping=None, lr_decay=1.0, shift=0, flip=False, eval_size=None,
    rotate=0, zoom=0,
):  # fmt: skip
    """Train ``net`` in place; returns a ``History``. Never raises for Ctrl-C or divergence:
    it stops after the current run of steps (at most 100; a few ms) or evaluation, and says why
    in ``history.stopped`` and ``history.message``.

    ``validation`` (a fraction in [0, 1)) holds out that share of the training set, drawn with
    the seed, and records its accuracy at every evaluation; ``early_stopping=N`` then stops after
    N evaluations without a better validation accuracy and restores the best weights.
    ``lr_decay`` multiplies the learning rate by that factor after each epoch (1: constant).
    ``shift``, ``flip``, ``rotate`` (degrees) and ``zoom`` (a fraction) augment the training images of a
    convnet afresh each epoch (``fastnet.augment``).
    ``eval_size=N`` estimates the training accuracy on N training rows drawn once with the seed, rather
    than on all of them: a shorter evaluation (validation and test sets are always scored whole)."""
    if not (isinstance(validation, (int, float)) and 0 <= validation < 1):
        raise ValueError(f"validation must be a fraction in [0, 1), got {validation!r}")
    if early_stopping is not None and (not isinstance(early_stopping, int) or early_stopping < 1):
        raise ValueError(f"early_stopping must be a positive number of evaluations, got {early_stopping!r}")
    if early_stopping is not None and validation == 0:
        raise ValueError("early_stopping needs a validation split (validation > 0)")
    if isinstance(lr_decay, bool) or not isinstance(lr_decay, (int, float)) or not 0 < lr_decay <= 1:
        raise ValueError(f"lr_decay must be a factor in (0, 1], got {lr_decay!r}")
    if eval_size is not None and (isinstance(eval_size, bool) or not isinstance(eval_size, int) or eval_size < 1):
        raise ValueError(f"eval_size must be a positive number of rows, got {eval_size!r}")
    check_augmentation(shift, flip, getattr(net, "input_dim", None), rotate, zoom)
    with _StopOnCtrlC() as ctrl_c:  # from here on Ctrl-C means "stop soon, cleanly"
        update = optimizer if optimizer is not None else lr
        return _train(net, train_data, test_data, iters, batch_size, update, seed, progress, log, ctrl_c,
                      validation, early_stopping, lr_decay, (shift, flip, rotate, zoom), eval_size)  # fmt: skip


def split_validation(x, t, fraction, seed):
    """(train x, train t, validation x, validation t): a random ``fraction`` of the rows held out."""
    n_val = int(round(len(x) * fraction))
    if fraction and not 0 < n_val < len(x):
        raise ValueError(f"validation {fraction} of {len(x)} rows leaves no training or no validation rows")
    order = np.random.default_rng([seed, 1]).permutation(len(x))  # not the batches' stream
    val, keep = np.sort(order[:n_val]), np.sort(order[n_val:])
    return x[keep], t[keep], x[val], t[val]


def _train(net, train_data, test_data, iters, batch_size, update, seed, progress, log, ctrl_c, validation,
           early_stopping, lr_decay, augmentation, eval_size):  # fmt: skip
    shift, flip, rotate, zoom = augmentation
    x_train, t_train = _prepared(net, *train_data, "training")
    x_test, t_test = _prepared(net, *test_data, "test")
    seed = resolve_seed(seed)
    x_val = t_val = None
    if validation:
        x_train, t_train, x_val, t_val = split_validation(x_train, t_train, validation, seed)
    x_eval, t_eval = x_train, t_train  # the rows whose accuracy is reported as the training accuracy
    if eval_size is not None and eval_size < len(x_train):
        rows = np.sort(np.random.default_rng([seed, 3]).choice(len(x_train), eval_size, replace=False))
        x_eval, t_eval = x_train[rows], t_train[rows]
    # The steps gather 1 byte per input instead of 4 or 8, where that is exact
    train_x, train_divisor = pixel_codes(x_train) or (x_train, None)
    original_x, augment_rng = train_x, np.random.default_rng([seed, 2])  # not the batches' stream
    train_size = x_train.shape[0]
    if batch_size < 1 or iters < 0:
        raise ValueError("batch_size must be >= 1 and iters >= 0")
    iter_per_epoch = max(train_size / batch_size, 1)
    rng = np.random.default_rng(seed)
    history = History(
        config=dict(
            iters=iters,
            batch_size=batch_size,
            lr=getattr(update, "lr", update),
            optimizer=type(update).__name__ if not isinstance(update, (int, float)) else "SGD",
            seed=seed,
            network=type(net).__name__,
            layers=describe(net),
            spec=getattr(net, "spec", None),  # a Sequential's text form (Sequential.from_spec)
            dtype=net.dtype.name,
            train_size=train_size,
            test_size=x_test.shape[0],
            validation_size=0 if x_val is None else x_val.shape[0],
            eval_size=x_eval.shape[0],  # training rows scored at each evaluation
            early_stopping=early_stopping,
            lr_decay=lr_decay,
            shift=shift,
            flip=flip,
            rotate=rotate,
            zoom=zoom,
            pixel_divisor=train_divisor,  # steps read uint8 codes / this (None: floats)
            blas=_cores.BACKEND,
            blocks=_cores.BLOCKS,  # results are bitwise reproducible for one BLAS and block count
        )
    )
    step_losses = np.full(iters, np.nan)
    if progress is None:
        progress = sys.stderr.isatty()
    bar = _progress_bar(iters) if progress else None
    say = bar.write if bar is not None else log

    best = {"val_acc": -1.0, "params": None, "epoch": None, "waited": 0}

    def evaluate(i):
        nonlocal since
        t0 = time.perf_counter()
        train_acc = net.accuracy(x_eval, t_eval)
        test_acc = net.accuracy(x_test, t_test)
        val_acc = None if x_val is None else net.accuracy(x_val, t_val)
        history.eval_seconds += time.perf_counter() - t0
        recent = step_losses[since:i]
        loss = float(np.mean(recent)) if len(recent) else float("nan")
        since = i
        history.epochs.append(EpochRecord(i / iter_per_epoch, i, train_acc, test_acc, loss, val_acc))
        if val_acc is not None:
            if val_acc > best["val_acc"]:
                state = {**net.params, **getattr(net, "running", {})}  # batch norm's statistics too
                best.update(val_acc=val_acc, epoch=i / iter_per_epoch, waited=0,
                            params={k: v.copy() for k, v in state.items()})  # fmt: skip
            else:
                best["waited"] += 1
        return train_acc, test_acc

    def line(train_acc, test_acc):
        val = "" if x_val is None else f", val acc {history.epochs[-1].val_acc:.4f}"
        return f"train acc, test acc | {train_acc:.4f}, {test_acc:.4f}{val}"

    # Compile (or load from Numba's cache) what the loop calls, before the clock
    # starts: lr=0 computes gradients without touching the weights.
    net.steps(train_x, t_train, np.zeros((0, batch_size), np.int64), update, train_divisor)  # no step taken
    net.accuracy(x_test[:1], t_test[:1])

    since = 0
    start = time.perf_counter()
    chunk = _steps_per_call(batch_size, net)
    try:
        i = 0
        while i < iters and not ctrl_c.requested:
            if i % iter_per_epoch == 0:
                if i > 0 and lr_decay != 1:
                    if isinstance(update, (int, float)):
                        update *= lr_decay
                    else:
                        update.lr = update.lr * lr_decay
                say(line(*evaluate(i)))
                if ctrl_c.requested:
                    break
                if early_stopping is not None and best["waited"] >= early_stopping:
                    history.stopped = "early-stopped"
                    break
                if any(augmentation):  # this epoch's images
                    train_x = augmented(original_x, net.input_dim, augment_rng, *augmentation)
            # Steps up to the next evaluation, at most `chunk`, in one compiled call.
            stop = i + 1
            while stop < min(i + chunk, iters) and stop % iter_per_epoch != 0:
                stop += 1
            batches = rng.integers(0, train_size, (stop - i, batch_size))  # the book's draws, in bulk
            losses = net.steps(train_x, t_train, batches, update, train_divisor)
            step_losses[i : i + len(losses)] = losses
            i += len(losses)
            history.steps_done = i
            if not math.isfinite(losses[-1]):  # net.steps stopped at it
                history.stopped = "diverged"
                history.message = (
                    f"training diverged at step {i - 1}: the loss is {losses[-1]}; the "
                    f"weights are the last finite ones (before step {i - 1}). Try a smaller lr."
                )
                break
            if bar is not None:
                bar.update(len(losses))
                bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside the main thread's handler
        ctrl_c.requested = True
    finally:
        if bar is not None:
            bar.close()
    if ctrl_c.requested:
        history.stopped = "interrupted"
        history.message = f"interrupted after {history.steps_done} steps"
    elif history.stopped != "diverged":
        if history.stopped != "early-stopped":
            say("final: " + line(*evaluate(history.steps_done)))
        if early_stopping is not None and best["params"] is not None:
            state = {**net.params, **getattr(net, "running", {})}
            for key, value in best["params"].items():
                state[key][...] = value
            history.best_epoch = best["epoch"]
            history.message = (f"best validation accuracy {best['val_acc']:.4f} at epoch {best['epoch']:g}: "
                               "those weights were restored")  # fmt: skip
            say(history.message)
    history.train_seconds = time.perf_counter() - start
    history.step_losses = step_losses[: history.steps_done]
    return history


class _StopOnCtrlC:
    """While training, Ctrl-C asks the loop to stop after the current compiled call instead of raising
    KeyboardInterrupt wherever Python happens to be (possibly inside Numba's runtime). A second
    Ctrl-C raises at once. Only the main thread can own the handler; elsewhere nothing changes."""

    def __enter__(self):
        self.requested = False
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False


def _prepared(net, x, t, which):
    """The data as the compiled step wants it: C-contiguous, the net's dtype, int64 labels;
    checked once here (finite inputs, labels in range) rather than at every evaluation."""
    x = net.prepare_inputs(np.asarray(x).reshape(len(x), -1))
    t = net.prepare_labels(np.asarray(t), x.shape[0])
    require_finite("train", f"the {which} inputs", x)
    require_labels("train", t, net.output_size)
    return x, t


def pixel_codes(x, divisors=(255, 1)):
    """(uint8 codes, divisor) such that codes / divisor, computed in x's dtype, is x bit for bit;
    or None. Divisor 255 is the book's normalize=True (x = pixel / 255), 1 raw pixel values.

    The training steps then gather one byte per input instead of four: measured 8 % faster
    steps on random MNIST rows at batch 100 and 1000 (the gather was a quarter of a step at
    batch 1000). (Evaluations read the floats: decoding there measured no faster.) One
    compiled pass over x (a NumPy pass took 1.4 s for the MNIST training set)."""
    x = np.ascontiguousarray(x)
    if x.dtype not in (np.float32, np.float64) or x.ndim != 2:
        return None
    codes = np.empty(x.shape, np.uint8)
    for divisor in divisors:
        if pixel_codes_unchecked(x, x.dtype.type(divisor), codes):
            return codes, divisor
    return None


def _steps_per_call(batch_size, net):
    """Steps per compiled call: about 2 GFLOP of work (~10-20 ms here), at most 100 steps, so that
    Ctrl-C and the progress bar answer within a fraction of a second."""
    flops_per_step = 4 * batch_size * net.multiply_adds  # the forward and weight-gradient products
    return int(min(100, max(1, 2e9 // flops_per_step)))


def _progress_bar(total):
    from tqdm import tqdm

    return tqdm(total=total, unit="step", dynamic_ncols=True, mininterval=0.2)
