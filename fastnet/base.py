"""What every network class shares: its inputs and labels as the compiled code takes them.

``TwoLayerNet``, ``MultiLayerNet`` and the convnets are siblings over this base (each has
``input_size`` and ``output_size``; a convnet also ``input_dim``, the (C, H, W) of an image).
"""

import contextlib
import operator

import numpy as np

from . import optim


def writable(x):
    """x, or a copy of it if it is read-only (a memory-mapped file, say): the compiled code is typed
    for writable arrays and does not compile for read-only ones."""
    return x if x.flags.writeable else x.copy()


@contextlib.contextmanager
def named_errors(func):
    """A ``ValueError`` raised by compiled checks in the block (whose messages do not know their
    caller) names the call it comes from: ``func: message``."""
    try:
        yield
    except ValueError as e:
        raise ValueError(f"{func}: {e}") from None


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


class Network:
    """Input and label preparation, checked, for any of fastnet's networks; for those whose
    parameters live in one flat vector (``_flat``, with ``_views`` into it), keeping ``params``
    in it and handing an optimizer to the compiled step (``_sgd``, ``_bound_optimizer``)."""

    input_dim = None  # (C, H, W) for a network of images, whose x may also be (N, C, H, W)

    def to_onnx(self, path=None):
        """This network at test time as an ONNX model (float32, standard operators: ``fastnet.export``),
        written to ``path`` if given; returns the ``onnx.ModelProto``. Needs the ``onnx`` extra."""
        from .export import to_onnx

        return to_onnx(self, path)

    def prepare_inputs(self, x):
        """x as the net computes with it: a C-contiguous (N, input_size) array of its dtype (checked).
        A network of images also takes (N, C, H, W) images, as rows of C·H·W values."""
        name = type(self).__name__
        if not isinstance(x, np.ndarray):
            raise TypeError(f"{name}: x must be a numpy array, not {type(x).__name__}")
        if x.dtype.kind != "f":
            raise TypeError(f"{name}: x must hold floats (float32 or float64), not {x.dtype}")
        if self.input_dim is not None and x.ndim == 4:
            if tuple(x.shape[1:]) != tuple(self.input_dim) or x.shape[0] == 0:
                raise ValueError(f"{name}: images x must have shape (N, {', '.join(map(str, self.input_dim))}) with "
                                 f"N >= 1, got {x.shape}")  # fmt: skip
            x = x.reshape(x.shape[0], -1)
        if x.ndim != 2 or x.shape[1] != self.input_size or x.shape[0] == 0:
            images = f" or images (N, {', '.join(map(str, self.input_dim))})" if self.input_dim is not None else ""
            raise ValueError(f"{name}: x must have shape (N, {self.input_size}){images} with N >= 1, got {x.shape}")
        return writable(np.ascontiguousarray(x, dtype=self.dtype))

    def prepare_labels(self, t, n):
        """t as the net computes with it: int64 class indices (n,), from integer labels or one-hot
        rows (checked; the range of the labels is checked where they are used)."""
        name = type(self).__name__
        if not isinstance(t, np.ndarray):
            raise TypeError(f"{name}: t must be a numpy array, not {type(t).__name__}")
        if t.ndim == 2:
            if t.shape != (n, self.output_size):
                raise ValueError(f"{name}: one-hot t must have shape ({n}, {self.output_size}), got {t.shape}")
            if t.dtype.kind not in "iuf" or not (((t == 0) | (t == 1)).all() and (t.sum(axis=1) == 1).all()):
                raise ValueError(f"{name}: a 2-D t must be one-hot: each row one 1, zeros elsewhere")
            return np.argmax(t, axis=1)
        if t.ndim != 1 or t.shape[0] != n:
            raise ValueError(f"{name}: t must have shape ({n},) (integer labels) or ({n}, {self.output_size}) "
                             f"(one-hot), got {t.shape}")  # fmt: skip
        if t.dtype.kind not in "iu":
            raise TypeError(f"{name}: integer labels t must have an integer dtype, not {t.dtype}")
        return np.ascontiguousarray(t, dtype=np.int64)

    def step_indices(self, x, t, idx, optimizer):
        """One update on rows ``idx`` of the training set (x, t) with ``optimizer`` (or a learning
        rate), gathered in compiled code; returns the loss."""
        if not isinstance(idx, np.ndarray) or idx.ndim != 1 or idx.dtype.kind not in "iu" or idx.size == 0:
            raise ValueError(f"{type(self).__name__}.step_indices: idx must be a non-empty 1-D integer array")
        return self.steps(x, t, idx[None, :], optimizer)[0]

    def _sync_params(self):
        """Make the flat vector hold ``params``: an array someone assigned is copied in (checked)."""
        params, views = self.params, self._views
        if len(params) == len(views) and all(map(operator.is_, params.values(), views.values())):
            return  # every entry is still its live view: the usual case, checked without a Python loop
        for key, view in self._views.items():
            value = self.params[key]
            if value is view:
                continue
            if not isinstance(value, np.ndarray) or value.shape != view.shape:
                raise ValueError(f"{type(self).__name__}: params[{key!r}] must be an array of shape {view.shape}")
            view[...] = value
            self.params[key] = view

    def _optimizer_args(self, optimizer_or_lr, func):
        """(kind, hyperparameters, s1, s2) for the compiled step: the optimizer's, or for a plain
        learning rate the net's own SGD's. The optimizer's state is checked against the parameters
        once, when it is first used with this net (``_sync_params`` keeps their layout)."""
        if isinstance(optimizer_or_lr, optim.Optimizer):
            opt = optimizer_or_lr
        elif isinstance(optimizer_or_lr, (str, type(None))):
            raise TypeError(f"{func}: give an optimizer of fastnet.optim or a learning rate, not {optimizer_or_lr!r}")
        else:
            if self._sgd is None:
                self._sgd = optim.SGD(optimizer_or_lr)
            self._sgd.lr = optimizer_or_lr
            opt = self._sgd
        if opt is not self._bound_optimizer:
            kind, hyper, s1, s2 = opt.compiled_args(self.params)
            if s1.dtype != self.dtype:
                raise TypeError(f"{func}: the optimizer's state is {s1.dtype}, the network {self.dtype}")
            self._bound_optimizer = opt
        return opt.compiled_args_bound()
