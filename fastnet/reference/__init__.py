"""The book's layered numpy network (Deep Learning from Scratch, ch. 5), kept readable.

This is fastnet's *reference*: the Numba kernels are tested against it and
benchmarked against it. It follows the book's code, minus the traps that readers'
copies of it show:

* softmax subtracts the row maximum, so large logits do not overflow;
* the integer-label backward *subtracts* 1 at the target entry (one copy of the
  book's code sets it to 1, which is wrong);
* no layer modifies the caller's arrays (``Relu.backward`` in the book writes
  zeros into ``dout`` in place).

Labels may be integers ``(B,)`` or one-hot ``(B, C)``. Nothing here is optimised. The
optimizers are in ``reference.optim``, dropout and batch norm in ``reference.regularize``,
chapters 7-8's convolution, pooling, ``SimpleConvNet`` and ``DeepConvNet`` in
``reference.conv``; every name is importable from here. ``reference.sequential`` composes them
into any layer list the engine runs (the engine's twin).
"""

from collections import OrderedDict

import numpy as np

from .optim import SGD, AdaGrad, Adam, Momentum, Nesterov, RMSprop  # noqa: F401  (the book's names, here)
from .regularize import BatchNormalization, CounterMasks, Dropout, counter_uniforms  # noqa: F401


def softmax(x):
    """Row-wise softmax of a 1-D or 2-D array, shifted by the row max for stability."""
    x = np.asarray(x)
    shifted = x - np.max(x, axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=-1, keepdims=True)


def log_softmax(x):
    """Row-wise log(softmax(x)) by log-sum-exp, exact even where softmax underflows."""
    x = np.asarray(x)
    shifted = x - np.max(x, axis=-1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def cross_entropy_error(y, t):
    """The book's mean cross-entropy of probabilities ``y`` against labels ``t``.

    ``t`` is integer ``(B,)`` or one-hot ``(B, C)``. Keeps the book's ``1e-7``
    guard against ``log(0)``; ``SoftmaxWithLoss`` uses the exact log-sum-exp form
    instead, so that the loss agrees with the kernels to rounding.
    """
    if y.ndim == 1:
        y = y.reshape(1, -1)
        t = np.reshape(t, (1, -1)) if np.ndim(t) == 1 and np.size(t) == y.shape[1] > 1 else np.reshape(t, (1,))
    if np.ndim(t) == 2:
        t = np.argmax(t, axis=1)
    batch_size = y.shape[0]
    return -np.sum(np.log(y[np.arange(batch_size), t] + 1e-7)) / batch_size


class Relu:
    def __init__(self):
        self.mask = None

    def forward(self, x):
        self.mask = x <= 0
        out = x.copy()
        out[self.mask] = 0
        return out

    def backward(self, dout):
        dx = dout.copy()  # the book zeroes dout in place; we do not touch the caller's array
        dx[self.mask] = 0
        return dx


class Sigmoid:
    def __init__(self):
        self.out = None

    def forward(self, x):
        out = 1 / (1 + np.exp(-x))
        self.out = out
        return out

    def backward(self, dout):
        return dout * (1.0 - self.out) * self.out


class Affine:
    def __init__(self, W, b):
        self.W = W
        self.b = b
        self.x = None
        self.dW = None
        self.db = None

    def forward(self, x):
        """x (N, D), or (N, C, H, W) images taken as rows of C·H·W (chapter 7's Affine)."""
        self.x_shape = x.shape
        self.x = x.reshape(x.shape[0], -1)
        return np.dot(self.x, self.W) + self.b

    def backward(self, dout):
        dx = np.dot(dout, self.W.T)
        self.dW = np.dot(self.x.T, dout)
        self.db = np.sum(dout, axis=0)
        return dx.reshape(self.x_shape)


class SoftmaxWithLoss:
    """Softmax followed by cross-entropy; ``backward`` gives ``(y - onehot(t)) / B``."""

    def __init__(self):
        self.loss = None
        self.y = None
        self.t = None

    def forward(self, x, t):
        self.t = t
        self.y = softmax(x)
        # -log softmax at the target, by log-sum-exp: exact where y underflows to 0
        log_y = log_softmax(x)
        batch_size = x.shape[0]
        if np.ndim(t) == 2:
            self.loss = -np.sum(t * log_y) / batch_size
        else:
            self.loss = -np.sum(log_y[np.arange(batch_size), t]) / batch_size
        return self.loss

    def backward(self, dout=1):
        batch_size = self.y.shape[0]
        if np.ndim(self.t) == 2:  # one-hot
            dx = (self.y - self.t) / batch_size
        else:  # integer labels: subtract 1 at the target entry
            dx = self.y.copy()
            dx[np.arange(batch_size), self.t] -= 1
            dx = dx / batch_size
        return dx * dout


def numerical_gradient(f, x, h=1e-4):
    """The book's central difference: ``(f(x+h) - f(x-h)) / 2h`` entry by entry.

    ``x`` (a float array of any shape: the book's 1-D version indexes ``x[i]`` and so breaks on a
    2-D W) is perturbed in place, and every entry is restored afterwards, even if ``f`` raises.
    """
    if not isinstance(x, np.ndarray) or x.dtype.kind != "f":
        raise TypeError(f"numerical_gradient: x must be a float array to perturb in place, not {type(x).__name__}"
                        f"{' of ' + str(x.dtype) if isinstance(x, np.ndarray) else ''}")  # fmt: skip
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=[["readwrite"]])
    while not it.finished:
        idx = it.multi_index
        saved = x[idx]
        try:
            x[idx] = saved + h
            fxh1 = f(x)
            x[idx] = saved - h
            fxh2 = f(x)
        finally:
            x[idx] = saved
        grad[idx] = (fxh1 - fxh2) / (2 * h)
        it.iternext()
    return grad


class TwoLayerNet:
    """Affine → ReLU → Affine → SoftmaxWithLoss, as in the book.

    ``dtype`` defaults to float64, the book's; pass ``np.float32`` for the
    reference's float32 variant (used as a baseline in the benchmarks).
    """

    def __init__(self, input_size, hidden_size, output_size, weight_init_std=0.01, dtype=np.float64, seed=None):
        rng = np.random.default_rng(seed)
        self.params = {
            "W1": (weight_init_std * rng.standard_normal((input_size, hidden_size))).astype(dtype),
            "b1": np.zeros(hidden_size, dtype=dtype),
            "W2": (weight_init_std * rng.standard_normal((hidden_size, output_size))).astype(dtype),
            "b2": np.zeros(output_size, dtype=dtype),
        }
        self.layers = OrderedDict()
        self.layers["Affine1"] = Affine(self.params["W1"], self.params["b1"])
        self.layers["Relu1"] = Relu()
        self.layers["Affine2"] = Affine(self.params["W2"], self.params["b2"])
        self.last_layer = SoftmaxWithLoss()

    def predict(self, x):
        for layer in self.layers.values():
            x = layer.forward(x)
        return x

    def loss(self, x, t):
        return self.last_layer.forward(self.predict(x), t)

    def accuracy(self, x, t):
        y = np.argmax(self.predict(x), axis=1)
        if np.ndim(t) != 1:
            t = np.argmax(t, axis=1)
        return np.sum(y == t) / float(x.shape[0])

    def numerical_gradient(self, x, t):
        loss_w = lambda w: self.loss(x, t)  # noqa: E731 (the book's idiom)
        return {key: numerical_gradient(loss_w, self.params[key]) for key in ("W1", "b1", "W2", "b2")}

    def gradient(self, x, t):
        self.loss(x, t)
        dout = self.last_layer.backward(1)
        for layer in reversed(list(self.layers.values())):
            dout = layer.backward(dout)
        return {
            "W1": self.layers["Affine1"].dW,
            "b1": self.layers["Affine1"].db,
            "W2": self.layers["Affine2"].dW,
            "b2": self.layers["Affine2"].db,
        }

    def step(self, x, t, lr):
        """One SGD update in place (the book's loop body); returns the loss before it."""
        grads = self.gradient(x, t)
        loss = self.last_layer.loss
        for key in ("W1", "b1", "W2", "b2"):
            self.params[key] -= lr * grads[key]
        return loss


# -- Chapter 6: deeper networks and the optimizers ---------------------------------------


def init_std(weight_init_std, n_in):
    """The book's initial weight scale: 'relu'/'he' √(2/n_in), 'sigmoid'/'xavier' √(1/n_in), or a number."""
    if isinstance(weight_init_std, str):
        if weight_init_std.lower() in ("relu", "he"):
            return np.sqrt(2.0 / n_in)
        if weight_init_std.lower() in ("sigmoid", "xavier"):
            return np.sqrt(1.0 / n_in)
        raise ValueError(f"unknown weight_init_std {weight_init_std!r}")
    return float(weight_init_std)


class MultiLayerNet:
    """The book's MultiLayerNet (and MultiLayerNetExtend): (Affine → [BatchNorm] → activation →
    [Dropout]) × hidden layers → Affine → SoftmaxWithLoss, with weight decay ½·λ·Σ‖W‖² in the
    loss and λ·W in each weight gradient.

    Initial weights are drawn layer by layer, W1 first, from ``np.random.default_rng(seed)``;
    gamma starts at 1, beta at 0. ``dropout_uniforms`` (a ``CounterMasks``) makes the dropout
    draws fastnet's instead of ``np.random.rand``'s.
    """

    def __init__(
        self,
        input_size,
        hidden_size_list,
        output_size,
        activation="relu",
        weight_init_std="relu",
        weight_decay_lambda=0,
        use_dropout=False,
        dropout_ration=0.5,
        use_batchnorm=False,
        dtype=np.float64,
        seed=None,
        dropout_uniforms=None,
    ):
        sizes = [input_size, *hidden_size_list, output_size]
        rng = np.random.default_rng(seed)
        self.weight_decay_lambda = weight_decay_lambda
        self.num_layers = len(sizes) - 1
        self.params = {}
        for i in range(1, len(sizes)):
            std = init_std(weight_init_std, sizes[i - 1])
            self.params[f"W{i}"] = (std * rng.standard_normal((sizes[i - 1], sizes[i]))).astype(dtype)
            self.params[f"b{i}"] = np.zeros(sizes[i], dtype=dtype)
        for i in range(1, self.num_layers) if use_batchnorm else ():
            self.params[f"gamma{i}"] = np.ones(sizes[i], dtype=dtype)
            self.params[f"beta{i}"] = np.zeros(sizes[i], dtype=dtype)
        activation_layer = {"relu": Relu, "sigmoid": Sigmoid}[activation]
        self.layers = OrderedDict()
        for i in range(1, self.num_layers + 1):
            self.layers[f"Affine{i}"] = Affine(self.params[f"W{i}"], self.params[f"b{i}"])
            if i < self.num_layers:
                if use_batchnorm:
                    self.layers[f"BatchNorm{i}"] = BatchNormalization(self.params[f"gamma{i}"], self.params[f"beta{i}"])
                self.layers[f"Activation_function{i}"] = activation_layer()
                if use_dropout:
                    uniforms = dropout_uniforms.layer(i) if dropout_uniforms is not None else None
                    self.layers[f"Dropout{i}"] = Dropout(dropout_ration, uniforms)
        self.last_layer = SoftmaxWithLoss()

    def predict(self, x, train_flg=False):
        for layer in self.layers.values():
            if isinstance(layer, (Dropout, BatchNormalization)):
                x = layer.forward(x, train_flg)
            else:
                x = layer.forward(x)
        return x

    def loss(self, x, t, train_flg=False):
        decay = sum(
            0.5 * self.weight_decay_lambda * np.sum(self.params[f"W{i}"] ** 2) for i in range(1, self.num_layers + 1)
        )
        return self.last_layer.forward(self.predict(x, train_flg), t) + decay

    def accuracy(self, x, t):
        y = np.argmax(self.predict(x), axis=1)
        if np.ndim(t) != 1:
            t = np.argmax(t, axis=1)
        return np.sum(y == t) / float(x.shape[0])

    def numerical_gradient(self, x, t):
        loss_w = lambda w: self.loss(x, t, train_flg=True)  # noqa: E731
        return {key: numerical_gradient(loss_w, self.params[key]) for key in self.params}

    def gradient(self, x, t):
        self.last_loss = self.loss(x, t, train_flg=True)  # kept: the loss before the update, for curves
        dout = self.last_layer.backward(1)
        for layer in reversed(list(self.layers.values())):
            dout = layer.backward(dout)
        grads = {}
        for i in range(1, self.num_layers + 1):
            affine = self.layers[f"Affine{i}"]
            grads[f"W{i}"] = affine.dW + self.weight_decay_lambda * affine.W
            grads[f"b{i}"] = affine.db
        for i in range(1, self.num_layers):
            if f"BatchNorm{i}" in self.layers:
                grads[f"gamma{i}"] = self.layers[f"BatchNorm{i}"].dgamma
                grads[f"beta{i}"] = self.layers[f"BatchNorm{i}"].dbeta
        return grads


from .conv import Convolution, DeepConvNet, Pooling, SimpleConvNet, col2im, conv_output_size, im2col  # noqa: E402, F401
