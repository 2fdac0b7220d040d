"""MultiLayerNet: the book's network of any depth (ch. 6) on fastnet's kernels.

(Affine → [BatchNorm] → activation → [Dropout]) × hidden layers → Affine →
softmax-with-cross-entropy, with the book's weight initialisations and weight
decay, trained by any optimizer of ``fastnet.optim``. All parameters live in one flat vector
(``params`` holds live views into it); each training step is one call into
compiled code (``kernels.multilayer``), which allocates nothing.
"""

import math

import numpy as np

from . import _cores
from .base import Network
from .gradcheck import network_numerical_gradient
from .kernels import multilayer as compiled
from .kernels import softmax_cross_entropy
from .kernels.checks import require_finite, require_labels
from .kernels.layers import RELU, SIGMOID
from .kernels.regularize import update_running_statistics
from .net import PREDICT_CHUNK

FORWARD_SIZES_KEPT = 3  # forward buffers kept per net, by row count (training rows, test rows, a last chunk)

ACTIVATIONS = {"relu": RELU, "sigmoid": SIGMOID}
INIT_NAMES = {"relu": "he", "he": "he", "sigmoid": "xavier", "xavier": "xavier"}


def init_std(weight_init_std, n_in):
    """The initial weights' standard deviation for a layer with n_in inputs: 'relu'/'he'
    √(2/n_in), 'sigmoid'/'xavier' √(1/n_in), or the number given."""
    if isinstance(weight_init_std, str):
        return math.sqrt((2.0 if INIT_NAMES[weight_init_std.lower()] == "he" else 1.0) / n_in)
    return float(weight_init_std)


def param_views(flat, sizes, batchnorm=False):
    """{'W1': ..., 'b1': ..., ..., 'gamma1': ..., 'beta1': ...}: views of a flat vector in the layout
    ``kernels.multilayer`` uses."""
    views, offset = {}, 0
    for l in range(1, len(sizes)):
        n, m = int(sizes[l - 1]), int(sizes[l])
        views[f"W{l}"] = flat[offset : offset + n * m].reshape(n, m)
        views[f"b{l}"] = flat[offset + n * m : offset + n * m + m]
        offset += n * m + m
    for l in range(1, len(sizes) - 1) if batchnorm else ():
        m = int(sizes[l])
        views[f"gamma{l}"] = flat[offset : offset + m]
        views[f"beta{l}"] = flat[offset + m : offset + 2 * m]
        offset += 2 * m
    return views


def running_views(running_mean, running_var, sizes):
    """{'running_mean1': ..., 'running_var1': ..., ...}: each hidden layer's batch-norm statistics."""
    views, offset = {}, 0
    for l in range(1, len(sizes) - 1):
        m = int(sizes[l])
        views[f"running_mean{l}"] = running_mean[offset : offset + m]
        views[f"running_var{l}"] = running_var[offset : offset + m]
        offset += m
    return views


def _dropout_ratio(dropout_ration, dropout_ratio):
    """The ratio given by either spelling (the book's ``dropout_ration``, or ``dropout_ratio``), checked."""
    where = "MultiLayerNet"
    if dropout_ratio is not None and dropout_ration != 0.5 and dropout_ratio != dropout_ration:
        raise ValueError(f"{where}: dropout_ration and dropout_ratio disagree; give one of them")
    ratio = dropout_ration if dropout_ratio is None else dropout_ratio
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float, np.number)):
        raise TypeError(f"{where}: dropout_ratio must be a number, not {ratio!r}")
    if not (0 <= ratio < 1):
        raise ValueError(f"{where}: dropout_ratio must lie in [0, 1), got {ratio!r}")
    return float(ratio)


def _check_arguments(input_size, hidden_size_list, output_size, activation, weight_init_std, weight_decay_lambda):
    where = "MultiLayerNet"
    if isinstance(hidden_size_list, (str, bytes)) or not hasattr(hidden_size_list, "__len__"):
        raise TypeError(f"{where}: hidden_size_list must be a list of integers, not {hidden_size_list!r}")
    if len(hidden_size_list) == 0:
        raise ValueError(f"{where}: hidden_size_list must not be empty (one size per hidden layer)")
    for name, n in [("input_size", input_size), ("output_size", output_size)] + [
        (f"hidden_size_list[{i}]", n) for i, n in enumerate(hidden_size_list)
    ]:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
            raise TypeError(f"{where}: {name} must be an integer, got {n!r}")
        if n < 1:
            raise ValueError(f"{where}: {name} must be at least 1, got {n!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"{where}: activation must be 'relu' or 'sigmoid', not {activation!r}")
    if isinstance(weight_init_std, str):
        if weight_init_std.lower() not in INIT_NAMES:
            raise ValueError(f"{where}: weight_init_std must be 'relu', 'he', 'sigmoid', 'xavier' or a "
                             f"number, not {weight_init_std!r}")  # fmt: skip
    elif isinstance(weight_init_std, bool) or not isinstance(weight_init_std, (int, float, np.number)):
        raise TypeError(f"{where}: weight_init_std must be a name or a number, not {weight_init_std!r}")
    elif not (math.isfinite(weight_init_std) and weight_init_std >= 0):
        raise ValueError(f"{where}: weight_init_std must be finite and >= 0, got {weight_init_std!r}")
    if isinstance(weight_decay_lambda, bool) or not isinstance(weight_decay_lambda, (int, float, np.number)):
        raise TypeError(f"{where}: weight_decay_lambda must be a number, not {weight_decay_lambda!r}")
    if not (math.isfinite(weight_decay_lambda) and weight_decay_lambda >= 0):
        raise ValueError(f"{where}: weight_decay_lambda must be finite and >= 0, got {weight_decay_lambda!r}")


def check_steps_inputs(func, x, batches, x_divisor, dtype):
    """What ``steps`` takes beyond the kernels' own checks: a 2-D integer batch array, x in the
    net's dtype, or uint8 pixel codes with their divisor (and the divisor only with them)."""
    if not isinstance(batches, np.ndarray) or batches.ndim != 2 or batches.dtype.kind not in "iu" \
            or batches.shape[1] == 0:  # fmt: skip
        raise ValueError(f"{func}: batches must be a 2-D integer array, one batch per row")
    if not isinstance(x, np.ndarray) or (x.dtype == np.uint8) != (x_divisor is not None):
        raise ValueError(f"{func}: x_divisor goes with uint8 pixel codes x, and only with them")
    if x.dtype != np.uint8 and x.dtype != dtype:
        raise TypeError(f"{func}: x must be {dtype} (see prepare_inputs), not {x.dtype}")


class MultiLayerNet(Network):
    """The book's ``MultiLayerNet`` (ch. 6; with ``use_dropout``/``use_batchnorm`` its
    ``MultiLayerNetExtend``), with fastnet's fused, checked, deterministic step.

    ``params`` holds W1, b1, ..., Wn, bn (and gamma1, beta1, ... with batch
    norm): live arrays (views into one flat vector; assigning a new array copies
    its values in). ``running`` holds batch norm's running statistics.
    ``predict``, ``loss`` (both with ``train_flg``), ``accuracy``, ``gradient``,
    ``numerical_gradient`` as the book; ``step``, ``step_indices`` and ``steps``
    train with an optimizer of ``fastnet.optim`` or a learning rate (plain SGD).
    Dropout masks are drawn from ``seed`` and the count of training steps taken
    (``dropout_step``), so training is reproducible. Every training-mode pass (``step``,
    ``steps``, ``gradient``, ``predict``/``loss`` with ``train_flg=True``) moves the running
    statistics and the mask counter as the book's layers do. Thread-safe as ``TwoLayerNet``.
    """

    def __init__(self, input_size, hidden_size_list, output_size, activation="relu", weight_init_std="relu",
                 weight_decay_lambda=0, use_dropout=False, dropout_ration=0.5, use_batchnorm=False,
                 dtype=np.float32, seed=None, dropout_ratio=None):  # fmt: skip
        _check_arguments(input_size, hidden_size_list, output_size, activation, weight_init_std, weight_decay_lambda)
        self.dropout_ratio = _dropout_ratio(dropout_ration, dropout_ratio)
        self.use_dropout, self.use_batchnorm = bool(use_dropout), bool(use_batchnorm)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(f"MultiLayerNet: dtype must be float32 or float64, not {self.dtype}")
        self.input_size, self.output_size = int(input_size), int(output_size)
        self.hidden_size_list = [int(n) for n in hidden_size_list]
        self.activation = activation
        self.weight_init_std = weight_init_std
        self.weight_decay_lambda = float(weight_decay_lambda)
        self.sizes = np.array([self.input_size, *self.hidden_size_list, self.output_size], np.int64)
        self.num_layers = len(self.sizes) - 1
        total = compiled.num_params(self.sizes, self.use_batchnorm)
        self._flat = np.zeros(total, self.dtype)
        self._grad = np.zeros(total, self.dtype)
        self._views = param_views(self._flat, self.sizes, self.use_batchnorm)
        rng = np.random.default_rng(seed)  # W1 first, as the reference draws them
        for l in range(1, self.num_layers + 1):
            W = self._views[f"W{l}"]
            W[...] = init_std(weight_init_std, W.shape[0]) * rng.standard_normal(W.shape)
        for l in range(1, self.num_layers) if self.use_batchnorm else ():
            self._views[f"gamma{l}"][...] = 1
        self.dropout_seed = int(rng.integers(2**63))  # drawn after the weights: they stay the reference's
        self.dropout_step = 0  # training steps taken: numbers the next step's dropout masks
        hidden_units = int(self.sizes[1:-1].sum()) if self.use_batchnorm else 0
        self._running_mean = np.zeros(hidden_units, self.dtype)
        self._running_var = np.zeros(hidden_units, self.dtype)
        self.running = running_views(self._running_mean, self._running_var, self.sizes) if self.use_batchnorm else {}
        self.params = dict(self._views)
        self.PARAM_NAMES = tuple(self._views)
        self._grad_views = param_views(self._grad, self.sizes, self.use_batchnorm)
        self._workspaces = {}
        self._forward_buffers = {}  # rows -> work of a forward pass, FORWARD_SIZES_KEPT sizes at most
        self._sgd = None  # the SGD that a plain learning rate trains with
        self._bound_optimizer = None  # the optimizer whose state was last checked against params
        self._lock = _cores.CallLock()  # watches the cores as calls begin

    @property
    def multiply_adds(self):
        """Multiply-adds of one example's forward pass (the step does about three times as many)."""
        return int(sum(self.sizes[:-1] * self.sizes[1:]))

    # -- arguments ----------------------------------------------------------------------------

    def _move_into(self, flat, grad, running_mean, running_var):
        """Keep the parameters, gradient and running statistics in the arrays given (a ``NetStack``'s
        rows), their values carried over; ``params`` and ``running`` become views of them."""
        with self._lock:
            self._sync_params()
            flat[...], grad[...] = self._flat, self._grad
            running_mean[...], running_var[...] = self._running_mean, self._running_var
            self._flat, self._grad = flat, grad
            self._running_mean, self._running_var = running_mean, running_var
            self._views = param_views(flat, self.sizes, self.use_batchnorm)
            self._grad_views = param_views(grad, self.sizes, self.use_batchnorm)
            self.params = dict(self._views)
            if self.use_batchnorm:
                self.running = running_views(running_mean, running_var, self.sizes)

    def _workspace(self, batch):
        """(work for compiled calls, as a plain tuple; the batch's own rows as one batch) for ``batch`` rows."""
        ws = self._workspaces.get(batch)
        if ws is None:
            work = compiled.new_multilayer_work(batch, self.sizes, self.dtype, self.use_batchnorm)
            ws = self._workspaces[batch] = (tuple(work), np.arange(batch)[None, :])
        return ws

    def _regularization(self, train):
        """The compiled calls' ``Regularization``, as a plain tuple."""
        return (self.use_batchnorm, self.dropout_ratio if self.use_dropout else -1.0, self.dropout_seed, train,
                self._running_mean, self._running_var)  # fmt: skip

    def _check_batch(self, rows, func):
        if self.use_batchnorm and rows < 2:
            raise ValueError(f"{func}: batch normalization in training needs a batch of at least 2 rows, got {rows}")

    # -- the book's interface -----------------------------------------------------------------

    def _forward_work(self, rows):
        """Buffers for a forward pass over ``rows`` rows (no gathered inputs: x is read in place).
        A few sizes are kept: a training loop evaluates on its training and its test rows in turn,
        and a fresh buffer per call would cost its page faults every time."""
        work = self._forward_buffers.get(rows)
        if work is None:
            if len(self._forward_buffers) == FORWARD_SIZES_KEPT:
                del self._forward_buffers[next(iter(self._forward_buffers))]  # the oldest size
            work = compiled.new_multilayer_work(rows, self.sizes, self.dtype, self.use_batchnorm)
            work = self._forward_buffers[rows] = tuple(work._replace(x=work.x[:0]))
        return work

    def _chunks(self, n, train):
        """(r0, r1) over chunks of at most PREDICT_CHUNK rows; one chunk in training (batch statistics)."""
        chunk = n if train else min(n, PREDICT_CHUNK)
        for r0 in range(0, n, max(chunk, 1)):
            yield r0, min(r0 + chunk, n)

    def predict(self, x, train_flg=False, advance=True):
        """Logits (N, output_size) for inputs x (N, input_size).

        ``train_flg`` as the book: batch statistics and this step's dropout masks (numbered
        ``dropout_step``) instead of the running statistics and the (1 - ratio) scaling. And as
        the book's layers, a training-mode pass leaves its mark: batch norm's running statistics
        move toward the batch's, and ``dropout_step`` advances, so the next pass draws fresh
        masks. ``advance=False`` asks for the same pass with no side effect (what
        ``numerical_gradient`` uses). A test-mode pass changes nothing."""
        x = self.prepare_inputs(x)
        train = bool(train_flg)
        if train:
            self._check_batch(x.shape[0], "MultiLayerNet.predict")
        z = np.empty((x.shape[0], self.output_size), self.dtype)
        with self._lock:
            self._sync_params()
            reg = self._regularization(train)
            for r0, r1 in self._chunks(x.shape[0], train):
                z[r0:r1] = compiled.multilayer_forward_unchecked(
                    x[r0:r1], self._flat, self.sizes, ACTIVATIONS[self.activation], self._forward_work(r1 - r0), reg,
                    self.dropout_step,
                )  # fmt: skip
            finite = bool(np.isfinite(z).all())
            if train and advance and finite:
                self._advance(self._forward_work(x.shape[0]))
        if not finite:
            self._explain_non_finite(x)
        return z

    def _advance(self, work):
        """What a training-mode forward pass over a batch leaves behind, as a step does before its
        update: the running statistics move toward the batch's (from ``work``, just written),
        the mask counter counts the pass."""
        if self.use_batchnorm:
            stats = compiled.MultiLayerWork(*work).batch_stats
            update_running_statistics(self._running_mean, self._running_var, stats[0], stats[1])
        self.dropout_step += 1

    def _explain_non_finite(self, x):
        rows = np.flatnonzero(~np.isfinite(x).all(axis=1))
        if rows.size:
            raise ValueError(f"MultiLayerNet: x contains NaN or infinity (row {rows[0]})")
        for key, value in self.params.items():
            require_finite("MultiLayerNet", f"params[{key!r}]", np.ascontiguousarray(value))
        raise ValueError("MultiLayerNet: the logits overflowed (finite inputs and weights: has training diverged?)")

    def loss(self, x, t, train_flg=False, advance=True):
        """Mean cross-entropy plus ½·λ·Σ‖W‖², a float (``train_flg`` and ``advance`` as ``predict``:
        a training-mode loss moves the running statistics and the mask counter, as the book's)."""
        x = self.prepare_inputs(x)
        t = self.prepare_labels(t, x.shape[0])
        z = self.predict(x, train_flg, advance)
        decay = compiled.weight_decay_loss(self._flat, self.sizes, self.weight_decay_lambda)
        return softmax_cross_entropy(z, t, np.empty_like(z)) + (decay if self.weight_decay_lambda else 0.0)

    def accuracy(self, x, t):
        """Fraction of rows whose largest logit is at the label t."""
        x = self.prepare_inputs(x)
        t = self.prepare_labels(t, x.shape[0])
        require_labels("MultiLayerNet.accuracy", t, self.output_size)
        correct = 0
        with self._lock:
            self._sync_params()
            reg = self._regularization(False)
            for r0, r1 in self._chunks(x.shape[0], False):
                count = compiled.multilayer_correct_count_unchecked(
                    x[r0:r1], t[r0:r1], self._flat, self.sizes, ACTIVATIONS[self.activation],
                    self._forward_work(r1 - r0), reg,
                )  # fmt: skip
                if count < 0:
                    self._explain_non_finite(x[r0:r1])
                correct += count
        return correct / x.shape[0]

    def gradient(self, x, t, advance=True):
        """Backprop gradients of the training-mode loss (weight decay included), as new arrays keyed
        like ``params``: one training step's forward and backward, with the book's side effects.
        Batch norm's running statistics move toward the batch's and ``dropout_step`` advances (the
        next call draws fresh masks), exactly as ``step`` does before its update, so the book's
        loop (``gradient`` then ``optimizer.update``) ends bit for bit where ``steps`` ends.
        ``advance=False``: the same gradients, nothing changed."""
        x = self.prepare_inputs(x)
        t = self.prepare_labels(t, x.shape[0])
        with self._lock:
            loss = self._run(x, t, self._workspace(x.shape[0])[1], None, None, "MultiLayerNet.gradient", update=False)
            finite = bool(np.isfinite(loss[0]))
            if finite and advance:
                self._advance(self._workspace(x.shape[0])[0])
            grads = {key: g.copy() for key, g in self._grad_views.items()}
        if not finite:
            self._explain_non_finite(x)
        return grads

    def numerical_gradient(self, x, t):
        """Central-difference gradients of the training-mode loss (slow; for checking ``gradient``).
        Every evaluation uses the masks and batch statistics that the next ``gradient`` call will use,
        and changes nothing: compare with ``gradient`` called after it (the book's gradient check
        does it in that order) or with ``gradient(x, t, advance=False)``."""
        return network_numerical_gradient(self, x, t, train_flg=True, advance=False)

    # -- training -----------------------------------------------------------------------------

    def step(self, x, t, optimizer):
        """One update on the batch (x, t) with ``optimizer`` (or a learning rate); returns the loss before it."""
        x = self.prepare_inputs(x)
        t = self.prepare_labels(t, x.shape[0])
        with self._lock:
            rows = self._workspace(x.shape[0])[1]
        return self._run(x, t, rows, optimizer, None, "MultiLayerNet.step")[0]

    def steps(self, x, t, batches, optimizer, x_divisor=None):
        """One update per row of ``batches`` (S, B), in one compiled call; returns the losses
        (fewer if a step's loss is not finite: that step changed nothing). x in the net's dtype
        and t int64, or x uint8 pixel codes with ``x_divisor``, as ``TwoLayerNet.steps``."""
        check_steps_inputs("MultiLayerNet.steps", x, batches, x_divisor, self.dtype)
        return self._run(x, t, batches, optimizer, x_divisor, "MultiLayerNet.steps")

    def _run(self, x, t, batches, optimizer, x_divisor, func, update=True):
        batches = np.ascontiguousarray(batches, np.int64)
        if not isinstance(t, np.ndarray) or t.dtype != np.int64:
            raise TypeError(f"{func}: t must be int64 class indices (see prepare_labels)")
        x = np.ascontiguousarray(x)
        divisor = 1.0 if x_divisor is None else float(x_divisor)
        if not (math.isfinite(divisor) and divisor > 0):
            raise ValueError(f"{func}: x_divisor must be finite and positive")
        with self._lock:
            self._sync_params()
            if update:
                opt_args = self._optimizer_args(optimizer, func)
            else:  # gradients only: no optimizer runs (its arguments only need the right types)
                opt_args = (0, np.zeros(4), self._grad, self._grad)
            self._check_batch(batches.shape[1], func)
            buffers, _ = self._workspace(batches.shape[1])
            act, reg = ACTIVATIONS[self.activation], self._regularization(True)
            if not update:
                compiled.check_multilayer_batches(func, x, t, batches, self.sizes, batches.shape[1])
                loss = compiled.multilayer_step_unchecked(
                    x, t, batches[0], self._flat, self._grad, self.sizes, act, self.weight_decay_lambda, buffers,
                    reg, self.dropout_step, opt_args, False, divisor,
                )  # fmt: skip
                return np.array([loss])
            losses = np.empty(batches.shape[0])
            taken = compiled.multilayer_steps(  # checks the batches' indices and labels first
                x, t, batches, self._flat, self._grad, self.sizes, act, self.weight_decay_lambda, buffers, reg,
                self.dropout_step, opt_args, losses, divisor,
            )  # fmt: skip
            self.dropout_step += taken
        return losses[:taken]
