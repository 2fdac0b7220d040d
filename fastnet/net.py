"""TwoLayerNet: the book's network on fastnet's kernels.

A thin orchestrator: it owns the parameters and, per batch size, a workspace of
preallocated buffers; each training step is a single call into compiled code
(``kernels.train_step``), which allocates nothing.
"""

import numpy as np

from . import _cores, kernels, optim
from .base import Network
from .gradcheck import network_numerical_gradient
from .kernels import Params, new_step_work, require_finite, require_labels, train_step, train_steps
from .kernels._kinds import learning_rate
from .weights import network_class

PREDICT_CHUNK = 10_000  # rows per forward call in predict(); bounds the hidden buffer


class Workspace:
    """Every buffer one training step needs for a batch of ``batch`` rows."""

    def __init__(self, batch, input_size, hidden_size, output_size, dtype):
        self.batch = batch
        self.rows = np.arange(batch, dtype=np.int64)  # idx for step(x, t): the batch itself
        self.work = new_step_work(batch, input_size, hidden_size, output_size, dtype)
        self.buffers = tuple(self.work)  # what the compiled step gets: plain tuples dispatch faster


@network_class
class TwoLayerNet(Network):
    """Affine → ReLU → Affine → softmax-cross-entropy, trained by minibatch SGD (its hand-fused step)
    or any optimizer of ``fastnet.optim`` (fused, on the layer engine).

    The same interface as ``fastnet.reference.TwoLayerNet`` (``params``,
    ``predict``, ``loss``, ``accuracy``, ``gradient``, ``numerical_gradient``)
    plus ``step``. ``params`` holds the live arrays: changing one in place
    changes the network. ``seed`` makes the initial weights reproducible (the
    reference draws the same numbers for the same seed).

    Thread-safe: one instance used from several threads runs one call at a
    time (a lock guards the workspaces); separate instances share nothing.
    """

    PARAM_NAMES = Params._fields  # ("W1", "b1", "W2", "b2"): the keys of ``params``, in order

    def __init__(self, input_size, hidden_size, output_size, weight_init_std=0.01, dtype=np.float32, seed=None):
        for name, n in (("input_size", input_size), ("hidden_size", hidden_size), ("output_size", output_size)):
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
                raise ValueError(f"TwoLayerNet: {name} must be a positive integer, got {n!r}")
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(f"TwoLayerNet: dtype must be float32 or float64, not {self.dtype}")
        self.input_size, self.hidden_size, self.output_size = int(input_size), int(hidden_size), int(output_size)
        rng = np.random.default_rng(seed)
        D, H, C = self.input_size, self.hidden_size, self.output_size
        with _explained_memory_error(f"TwoLayerNet({D}, {H}, {C}): the weights", 2 * (D * H + H * C) * 8):
            # one flat vector, W1, b1, W2, b2: the layer engine's layout, so that an optimizer other than SGD
            # can run fused on the engine's twin of this network (``_twin``) over the same numbers
            self._flat = np.zeros(D * H + H + H * C + C, self.dtype)
            offsets = np.cumsum([0, D * H, H, H * C, C])
            self._views = {name: self._flat[a:b].reshape(shape) for name, a, b, shape in
                           zip(self.PARAM_NAMES, offsets, offsets[1:], ((D, H), (H,), (H, C), (C,)))}  # fmt: skip
            self._views["W1"][...] = weight_init_std * rng.standard_normal((D, H))
            self._views["W2"][...] = weight_init_std * rng.standard_normal((H, C))
            self.params = dict(self._views)
            self._grads = (
                np.empty((D, H), self.dtype),
                np.empty(H, self.dtype),
                np.empty((H, C), self.dtype),
                np.empty(C, self.dtype),
            )
        self._param_shapes = ((D, H), (H,), (H, C), (C,))  # in PARAM_NAMES order
        self._workspaces = {}
        self._scratch = None  # (hidden, logits) buffers of predict and accuracy
        self._lock = _cores.CallLock()  # watches the cores as calls begin
        self._engine_twin = None

    def _twin(self):
        """The same network on the layer engine, over this network's flat vector: what trains it with an
        optimizer other than SGD (fused), while SGD keeps the hand-fused step."""
        if self._engine_twin is None:
            from .sequential import Sequential

            layers = [("affine", self.hidden_size, "relu"), ("affine", self.output_size, "identity")]
            twin = Sequential((self.input_size, 1, 1), layers, self.dtype)
            twin._flat[...] = self._flat
            twin._move_into(self._flat, twin._grad, twin.net.running_mean, twin.net.running_var)
            self._engine_twin = twin
        self._sync_params()  # an array someone assigned to params: copied into the flat vector
        return self._engine_twin

    def architecture(self):
        """The class and its constructor's arguments (what a weights file records)."""
        return {"network": "TwoLayerNet", "input_size": self.input_size, "hidden_size": self.hidden_size,
                "output_size": self.output_size, "dtype": self.dtype.name}  # fmt: skip

    def describe(self):
        return f"{self.input_size}-{self.hidden_size}-{self.output_size}"

    @classmethod
    def from_architecture(cls, meta):
        return cls(int(meta["input_size"]), int(meta["hidden_size"]), int(meta["output_size"]),
                   dtype=np.dtype(meta["dtype"]))  # fmt: skip

    @property
    def multiply_adds(self):
        """Multiply-adds of one example's forward pass (the step does about three times as many)."""
        return self.input_size * self.hidden_size + self.hidden_size * self.output_size

    # -- argument handling -------------------------------------------------

    def _live_params(self):
        """The parameter arrays as a tuple in ``Params`` order, checked: someone may have replaced one.
        (Every step calls this: written for speed, one pass over plain attributes.)"""
        arrays = tuple([self.params[name] for name in self.PARAM_NAMES])
        for name, a, shape in zip(self.PARAM_NAMES, arrays, self._param_shapes):
            flags = a.flags if type(a) is np.ndarray else None
            if (
                flags is None
                or a.shape != shape
                or a.dtype != self.dtype
                or not (flags.c_contiguous and flags.writeable)
            ):
                raise ValueError(
                    f"TwoLayerNet: params[{name!r}] must be a writable C-contiguous {self.dtype} array of shape {shape}"
                )
        return arrays

    def _workspace(self, batch):
        ws = self._workspaces.get(batch)
        if ws is None:
            D, H, C = self.input_size, self.hidden_size, self.output_size
            with _explained_memory_error(f"a workspace for batch {batch}", batch * (D + 2 * H + 2 * C + 3) * 8):
                ws = Workspace(batch, D, H, C, self.dtype)
            self._workspaces[batch] = ws
        return ws

    # -- the book's interface ---------------------------------------------

    def predict(self, x):
        """Logits (N, output_size) for inputs x (N, input_size).

        The logits are checked: if one is NaN or infinite, the input row or
        parameter that caused it is named in a ValueError (scanning x only
        then keeps the common case fast).
        """
        x = self.prepare_inputs(x)
        z = np.empty((x.shape[0], self.output_size), self.dtype)
        with self._lock:
            params = self._live_params()
            for r0, r1, hid, _ in self._row_chunks(x.shape[0]):
                kernels.forward_unchecked(x[r0:r1], params, hid, z[r0:r1])
        if not np.isfinite(z).all():
            self._explain_non_finite(x, params)
        return z

    def _row_chunks(self, n):
        """(r0, r1, hidden scratch, logits scratch) for chunks of at most PREDICT_CHUNK of n rows."""
        chunk = min(n, PREDICT_CHUNK)
        if self._scratch is None or self._scratch[0].shape[0] < chunk:
            self._scratch = (
                np.empty((chunk, self.hidden_size), self.dtype),
                np.empty((chunk, self.output_size), self.dtype),
            )
        hid, z = self._scratch
        for r0 in range(0, n, chunk):
            r1 = min(r0 + chunk, n)
            yield r0, r1, hid[: r1 - r0], z[: r1 - r0]

    def _explain_non_finite(self, x, params):
        rows = np.flatnonzero(~np.isfinite(x).all(axis=1))
        if rows.size:
            raise ValueError(
                f"TwoLayerNet: x contains NaN or infinity (row {rows[0]}"
                + (f" and {rows.size - 1} more)" if rows.size > 1 else ")")
            )
        for name, p in zip(self.PARAM_NAMES, params):
            require_finite("TwoLayerNet", f"params[{name!r}]", p)
        raise ValueError(
            "TwoLayerNet: the logits overflowed (finite inputs and weights; the weights "
            "are too large: has training diverged?)"
        )

    def loss(self, x, t):
        """Mean cross-entropy of the network on (x, t), a float."""
        x = self.prepare_inputs(x)
        t = self.prepare_labels(t, x.shape[0])
        z = self.predict(x)
        return kernels.softmax_cross_entropy(z, t, np.empty_like(z))

    def accuracy(self, x, t):
        """Fraction of rows whose largest logit is at the label t."""
        x = self.prepare_inputs(x)
        t = self.prepare_labels(t, x.shape[0])
        require_labels("TwoLayerNet.accuracy", t, self.output_size)
        correct = 0
        with self._lock:
            params = self._live_params()
            for r0, r1, hid, z in self._row_chunks(x.shape[0]):
                count = kernels.correct_count_unchecked(x[r0:r1], t[r0:r1], params, hid, z)
                if count < 0:
                    self._explain_non_finite(x[r0:r1], params)
                correct += count
        return correct / x.shape[0]

    def gradient(self, x, t):
        """Backprop gradients {'W1','b1','W2','b2'} on the batch (x, t), as new arrays."""
        with self._lock:
            loss = self._step(x, t, 0.0)
            grads = {name: g.copy() for name, g in zip(self.PARAM_NAMES, self._grads)}
        if not np.isfinite(loss):
            self._explain_non_finite(self.prepare_inputs(x), self._live_params())
        return grads

    def numerical_gradient(self, x, t):
        """Central-difference gradients (slow; for checking ``gradient``)."""
        return network_numerical_gradient(self, x, t)

    def step(self, x, t, lr):
        """One update on the batch (x, t) in place; returns the loss before the update. ``lr``: a
        learning rate (SGD) or any optimizer of ``fastnet.optim``."""
        if _other_optimizer(lr):
            with self._lock:
                return self._twin().step(x, t, lr)
        return self._step(x, t, _sgd_rate("TwoLayerNet.step", lr))

    def step_indices(self, x, t, idx, lr):
        """One SGD update on rows ``idx`` of the whole training set (x, t); returns the loss.

        The gather happens in compiled code: the training loop's path, with no
        copy of the batch in Python. x must already be in the net's dtype and t
        int64, as ``fastnet.train`` prepares them.
        """
        if not isinstance(idx, np.ndarray) or idx.ndim != 1 or idx.dtype.kind not in "iu" or idx.size == 0:
            raise ValueError("TwoLayerNet.step_indices: idx must be a non-empty 1-D integer array")
        if _other_optimizer(lr):
            with self._lock:
                return self._twin().step_indices(x, t, idx, lr)
        with self._lock:
            ws = self._workspace(idx.shape[0])
            return train_step(
                x,
                t,
                np.ascontiguousarray(idx, np.int64),
                self._live_params(),
                self._grads,
                ws.buffers,
                _sgd_rate("TwoLayerNet.step_indices", lr),
                1.0,
            )

    def steps(self, x, t, batches, lr, x_divisor=None):
        """One SGD update per row of ``batches`` (S, B): rows batches[s] of (x, t), in order.

        The same as ``step_indices`` on each row in turn, in one call into
        compiled code (no return to Python between steps: the training loop's
        path). Returns the S losses; fewer if a step's loss is not finite
        (that step changed nothing and the remaining ones are not taken).
        Indices and labels of every batch are checked before the first step;
        a NaN or infinite input row raises ValueError (naming the row) at the
        step that gathers it, after the steps before it.
        x must be in the net's dtype and t int64, as for ``step_indices``; or x
        may be uint8 pixel codes with ``x_divisor``: the steps then read
        code / x_divisor, computed in the net's dtype (see ``fastnet.train.pixel_codes``).
        """
        if (
            not isinstance(batches, np.ndarray)
            or batches.ndim != 2
            or batches.dtype.kind not in "iu"
            or batches.shape[1] == 0
        ):
            raise ValueError("TwoLayerNet.steps: batches must be a 2-D integer array, one batch per row")
        if (x.dtype == np.uint8) != (x_divisor is not None):
            raise ValueError("TwoLayerNet.steps: x_divisor goes with uint8 pixel codes x, and only with them")
        if _other_optimizer(lr):
            with self._lock:
                return self._twin().steps(x, t, batches, lr, x_divisor)
        losses = np.empty(batches.shape[0])
        with self._lock:
            ws = self._workspace(batches.shape[1])
            taken = train_steps(
                x,
                t,
                np.ascontiguousarray(batches, np.int64),
                self._live_params(),
                self._grads,
                ws.buffers,
                _sgd_rate("TwoLayerNet.steps", lr),
                losses,
                1.0 if x_divisor is None else float(x_divisor),
            )
        return losses[:taken]

    def _step(self, x, t, lr):
        x = self.prepare_inputs(x)
        t = self.prepare_labels(t, x.shape[0])
        with self._lock:
            ws = self._workspace(x.shape[0])
            return train_step(x, t, ws.rows, self._live_params(), self._grads, ws.buffers, lr, 1.0)


def _other_optimizer(lr):
    """Whether a step's ``lr`` is an optimizer other than plain SGD (one that the engine's twin runs)."""
    return isinstance(lr, optim.Optimizer) and type(lr) is not optim.SGD


def _sgd_rate(func, lr):
    """The learning rate of a step: ``lr`` itself (checked), or the rate of a ``fastnet.optim.SGD``."""
    if isinstance(lr, optim.Optimizer):
        return lr.lr
    return learning_rate(func, lr)


class _explained_memory_error:
    """Turn a MemoryError into one that says what was being allocated and how big it is."""

    def __init__(self, what, nbytes):
        self.what, self.nbytes = what, nbytes

    def __enter__(self):
        return self

    def __exit__(self, kind, error, tb):
        too_big = kind is not None and (
            issubclass(kind, MemoryError) or (issubclass(kind, ValueError) and "too big" in str(error))
        )
        if too_big:
            raise MemoryError(f"{self.what} would need about {self.nbytes / 2**30:,.1f} GiB: {error}") from error
        return False
