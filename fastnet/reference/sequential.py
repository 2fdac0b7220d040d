"""A network as a list of the book's layers, in plain numpy: the engine's reference twin.

``Sequential(input_shape, layers, params)`` takes the engine's layer tuples
(``fastnet.kernels.records.LAYER_FORMS``) and a dict of parameters named as fastnet names them
(W1, b1, ... over the conv and affine layers, gamma1, beta1, ... over the batch-norm layers), and
runs the book's layer objects on them: ``Convolution``, ``Pooling``, ``Affine``, ``Relu``,
``Sigmoid``, ``BatchNormalization`` (per feature), ``SpatialBatchNormalization`` (per channel
over N·H·W, for batch norm after a convolution), ``Dropout`` (with the engine's counter-based
masks from ``CounterMasks``), then ``SoftmaxWithLoss``, with the book's weight decay. Plain,
never optimised.
"""

import numpy as np

from . import Affine, Relu, Sigmoid, SoftmaxWithLoss, numerical_gradient
from .conv import Convolution, Pooling
from .regularize import BatchNormalization, Dropout


class SpatialBatchNormalization:
    """Batch norm per channel over N·H·W values (what convnets use): the book's
    ``BatchNormalization`` applied to the (N·H·W, C) matrix of an (N, C, H, W) input. The book's
    class itself, given an image, flattens it and normalises each (c, h, w) on its own."""

    def __init__(self, gamma, beta, momentum=0.9):
        self.norm = BatchNormalization(gamma, beta, momentum)

    @property
    def dgamma(self):
        return self.norm.dgamma

    @property
    def dbeta(self):
        return self.norm.dbeta

    def forward(self, x, train_flg=True):
        N, C, H, W = x.shape
        y = self.norm.forward(x.transpose(0, 2, 3, 1).reshape(-1, C), train_flg)
        return y.reshape(N, H, W, C).transpose(0, 3, 1, 2)

    def backward(self, dout):
        N, C, H, W = dout.shape
        dx = self.norm.backward(dout.transpose(0, 2, 3, 1).reshape(-1, C))
        return dx.reshape(N, H, W, C).transpose(0, 3, 1, 2)


ACTIVATION_LAYERS = {0: None, 1: Relu, 2: Sigmoid, "identity": None, "relu": Relu, "sigmoid": Sigmoid}


class Sequential:
    """The layers of ``layers`` on inputs of ``input_shape`` (C, H, W), with ``params`` (used in
    place: the optimizers of ``reference.optim`` update them) and ``masks`` (a ``CounterMasks``:
    the dropout layer at position l, counted from 1, draws ``masks.layer(l)``). Convolution,
    pooling and per-channel batch norm see (N, C, H, W) arrays; the others rows (N, C·H·W)."""

    def __init__(self, input_shape, layers, params, masks=None):
        self.params = params
        self.layers = []  # Step records: what each layer is and the shapes around it
        self.norms = []
        shape = tuple(input_shape)
        weighted = 0
        for l, spec in enumerate(layers):
            kind, args = spec[0], spec[1:]
            c, h, w = shape
            act, decay, names, images = 0, 0.0, (), False
            if kind == "conv":
                weighted += 1
                names = (f"W{weighted}", f"b{weighted}")
                fn, fh, fw, stride, pad = args[:5]
                layer, images = Convolution(params[names[0]], params[names[1]], stride, pad), True
                out = (fn, (h + 2 * pad - fh) // stride + 1, (w + 2 * pad - fw) // stride + 1)
                act, decay = args[5], args[6] if len(args) > 6 else 0.0
            elif kind == "affine":
                weighted += 1
                names = (f"W{weighted}", f"b{weighted}")
                layer, out = Affine(params[names[0]], params[names[1]]), (args[0], 1, 1)
                act, decay = args[1], args[2] if len(args) > 2 else 0.0
            elif kind == "pool":
                ph, pw, stride, pad = args
                layer, images = Pooling(ph, pw, stride, pad), True
                out = (c, (h + 2 * pad - ph) // stride + 1, (w + 2 * pad - pw) // stride + 1)
            elif kind == "batchnorm":
                names = (f"gamma{len(self.norms) + 1}", f"beta{len(self.norms) + 1}")
                momentum = args[1] if len(args) > 1 else 0.9
                images = h * w > 1
                make = SpatialBatchNormalization if images else BatchNormalization
                layer, out, act = make(params[names[0]], params[names[1]], momentum), shape, args[0]
                self.norms.append(layer)
            else:
                layer, out = Dropout(args[0], masks.layer(l + 1) if masks is not None else None), shape
            self.layers.append((kind, layer, shape, out, images, decay, names))
            if ACTIVATION_LAYERS[act] is not None:
                self.layers.append(("activation", ACTIVATION_LAYERS[act](), out, out, False, 0.0, ()))
            shape = out
        self.last = SoftmaxWithLoss()
        self.last_loss = None

    def predict(self, x, train_flg=False):
        x = np.asarray(x, np.float64)
        for kind, layer, shape, _, images, _, _ in self.layers:
            x = x.reshape((x.shape[0], *shape)) if images else x.reshape(x.shape[0], -1)
            x = layer.forward(x, train_flg) if kind in ("batchnorm", "dropout") else layer.forward(x)
        return x.reshape(x.shape[0], -1)

    def decay_loss(self):
        return sum(0.5 * decay * np.sum(self.params[names[0]] ** 2) for *_, decay, names in self.layers if decay)

    def loss(self, x, t, train_flg=False):
        self.last_loss = self.last.forward(self.predict(x, train_flg), t) + self.decay_loss()
        return self.last_loss

    def gradient(self, x, t):
        """Gradients of the training-mode loss (weight decay's λ·W included), keyed like ``params``."""
        self.loss(x, t, train_flg=True)
        dout = self.last.backward(1)
        grads = {}
        for kind, layer, _, out, images, decay, names in reversed(self.layers):
            dout = dout.reshape((dout.shape[0], *out)) if images else dout.reshape(dout.shape[0], -1)
            dout = layer.backward(dout)
            if kind in ("conv", "affine"):
                grads[names[0]] = layer.dW + decay * self.params[names[0]]
                grads[names[1]] = layer.db
            elif kind == "batchnorm":
                grads[names[0]], grads[names[1]] = layer.dgamma, layer.dbeta
        return {key: grads[key] for key in self.params}

    def numerical_gradient(self, x, t):
        """Central differences of the training-mode loss (the masks fixed: set ``masks.step`` first)."""
        return {key: numerical_gradient(lambda _: self.loss(x, t, train_flg=True), p) for key, p in self.params.items()}

    def running_statistics(self):
        """{'running_mean1': ..., 'running_var1': ..., ...} of the batch-norm layers (None before a
        training pass)."""
        out = {}
        for j, layer in enumerate(self.norms, start=1):
            norm = layer.norm if isinstance(layer, SpatialBatchNormalization) else layer
            out[f"running_mean{j}"], out[f"running_var{j}"] = norm.running_mean, norm.running_var
        return out
