"""Chapter 7's numpy code: im2col/col2im, Convolution, Pooling, SimpleConvNet (the kernels' twins).

Shapes are the book's: images (N, C, H, W), filters (FN, C, FH, FW), outputs (N, FN, OH, OW)
with OH = (H + 2·pad − FH) / stride + 1. Unlike the book, a geometry whose output size is not a
whole number, or a filter larger than the padded image, is a ValueError (the book floors it
silently and computes something else).
"""

from collections import OrderedDict

import numpy as np

from . import Affine, Relu, SoftmaxWithLoss, numerical_gradient


def conv_output_size(size, filter_size, stride=1, pad=0, what="input"):
    """(size + 2·pad − filter_size) / stride + 1, checked to be a whole number ≥ 1."""
    span = size + 2 * pad - filter_size
    if stride < 1 or pad < 0 or filter_size < 1:
        raise ValueError(f"stride must be >= 1, pad >= 0 and the filter >= 1 (stride {stride}, pad {pad}, "
                         f"filter {filter_size})")  # fmt: skip
    if span < 0:
        raise ValueError(f"the filter ({filter_size}) is larger than the padded {what} ({size} + 2·{pad})")
    if span % stride:
        raise ValueError(f"({what} {size} + 2·pad {pad} − filter {filter_size}) is not a multiple of stride "
                         f"{stride}: the output size would not be a whole number")  # fmt: skip
    return span // stride + 1


def im2col(input_data, filter_h, filter_w, stride=1, pad=0):
    """Every filter window of every image as one row: (N·OH·OW, C·FH·FW), rows in (n, oh, ow)
    order, columns in (c, fh, fw) order (the filters' own layout, flattened)."""
    N, C, H, W = input_data.shape
    out_h = conv_output_size(H, filter_h, stride, pad, "height")
    out_w = conv_output_size(W, filter_w, stride, pad, "width")
    img = np.pad(input_data, [(0, 0), (0, 0), (pad, pad), (pad, pad)])
    col = np.zeros((N, C, filter_h, filter_w, out_h, out_w), input_data.dtype)
    for y in range(filter_h):
        for x in range(filter_w):
            col[:, :, y, x] = img[:, :, y : y + stride * out_h : stride, x : x + stride * out_w : stride]
    return col.transpose(0, 4, 5, 1, 2, 3).reshape(N * out_h * out_w, -1)


def col2im(col, input_shape, filter_h, filter_w, stride=1, pad=0):
    """The adjoint of im2col: each row's entries *added* back at the pixels its window covers
    (so where windows overlap, col2im(im2col(x)) counts a pixel once per window)."""
    N, C, H, W = input_shape
    out_h = conv_output_size(H, filter_h, stride, pad, "height")
    out_w = conv_output_size(W, filter_w, stride, pad, "width")
    col = col.reshape(N, out_h, out_w, C, filter_h, filter_w).transpose(0, 3, 4, 5, 1, 2)
    img = np.zeros((N, C, H + 2 * pad, W + 2 * pad), col.dtype)
    for y in range(filter_h):
        for x in range(filter_w):
            img[:, :, y : y + stride * out_h : stride, x : x + stride * out_w : stride] += col[:, :, y, x]
    return img[:, :, pad : H + pad, pad : W + pad]


class Convolution:
    """out = Σ over each window of x·W + b, by im2col and one product (the book's)."""

    def __init__(self, W, b, stride=1, pad=0):
        self.W, self.b, self.stride, self.pad = W, b, stride, pad
        self.x = self.col = self.col_W = self.dW = self.db = None

    def forward(self, x):
        FN, C, FH, FW = self.W.shape
        N, xC, H, W = x.shape
        if xC != C:
            raise ValueError(f"Convolution: the input has {xC} channels, the filters {C}")
        out_h = conv_output_size(H, FH, self.stride, self.pad, "height")
        out_w = conv_output_size(W, FW, self.stride, self.pad, "width")
        self.x, self.col = x, im2col(x, FH, FW, self.stride, self.pad)
        self.col_W = self.W.reshape(FN, -1).T
        out = self.col @ self.col_W + self.b
        return out.reshape(N, out_h, out_w, FN).transpose(0, 3, 1, 2)

    def backward(self, dout):
        FN, C, FH, FW = self.W.shape
        dout = dout.transpose(0, 2, 3, 1).reshape(-1, FN)
        self.db = np.sum(dout, axis=0)
        self.dW = (self.col.T @ dout).transpose(1, 0).reshape(FN, C, FH, FW)
        return col2im(dout @ self.col_W.T, self.x.shape, FH, FW, self.stride, self.pad)


class Pooling:
    """Max pooling over pool_h × pool_w windows; backward sends each gradient to its window's
    maximum (the first one, in (row, column) order, on a tie). Padding adds zeros, as the book's."""

    def __init__(self, pool_h, pool_w, stride=2, pad=0):
        self.pool_h, self.pool_w, self.stride, self.pad = pool_h, pool_w, stride, pad
        self.x = self.arg_max = None

    def forward(self, x):
        N, C, H, W = x.shape
        out_h = conv_output_size(H, self.pool_h, self.stride, self.pad, "height")
        out_w = conv_output_size(W, self.pool_w, self.stride, self.pad, "width")
        col = im2col(x, self.pool_h, self.pool_w, self.stride, self.pad).reshape(-1, self.pool_h * self.pool_w)
        self.x, self.arg_max = x, np.argmax(col, axis=1)  # argmax: the first maximum
        return np.max(col, axis=1).reshape(N, out_h, out_w, C).transpose(0, 3, 1, 2)

    def backward(self, dout):
        dout = dout.transpose(0, 2, 3, 1)
        pool_size = self.pool_h * self.pool_w
        dmax = np.zeros((dout.size, pool_size), dout.dtype)
        dmax[np.arange(self.arg_max.size), self.arg_max] = dout.ravel()
        dcol = dmax.reshape(dout.shape[0] * dout.shape[1] * dout.shape[2], -1)
        return col2im(dcol, self.x.shape, self.pool_h, self.pool_w, self.stride, self.pad)


class SimpleConvNet:
    """conv → ReLU → 2×2 max pool (stride 2) → affine → ReLU → affine → softmax-with-loss, the
    book's. Weights are drawn W1, W2, W3 in turn from ``np.random.default_rng(seed)``."""

    def __init__(self, input_dim=(1, 28, 28), conv_param=None, hidden_size=100, output_size=10,
                 weight_init_std=0.01, dtype=np.float64, seed=None):  # fmt: skip
        conv_param = {"filter_num": 30, "filter_size": 5, "pad": 0, "stride": 1, **(conv_param or {})}
        FN, FS = conv_param["filter_num"], conv_param["filter_size"]
        pad, stride = conv_param["pad"], conv_param["stride"]
        C, H, W = input_dim
        out_h = conv_output_size(H, FS, stride, pad, "height")
        out_w = conv_output_size(W, FS, stride, pad, "width")
        pool_h, pool_w = conv_output_size(out_h, 2, 2), conv_output_size(out_w, 2, 2)
        rng = np.random.default_rng(seed)
        std = weight_init_std
        self.params = {
            "W1": (std * rng.standard_normal((FN, C, FS, FS))).astype(dtype), "b1": np.zeros(FN, dtype),
            "W2": (std * rng.standard_normal((FN * pool_h * pool_w, hidden_size))).astype(dtype),
            "b2": np.zeros(hidden_size, dtype),
            "W3": (std * rng.standard_normal((hidden_size, output_size))).astype(dtype),
            "b3": np.zeros(output_size, dtype),
        }  # fmt: skip
        self.layers = OrderedDict()
        self.layers["Conv1"] = Convolution(self.params["W1"], self.params["b1"], stride, pad)
        self.layers["Relu1"] = Relu()
        self.layers["Pool1"] = Pooling(2, 2, stride=2)
        self.layers["Affine1"] = Affine(self.params["W2"], self.params["b2"])
        self.layers["Relu2"] = Relu()
        self.layers["Affine2"] = Affine(self.params["W3"], self.params["b3"])
        self.last_layer = SoftmaxWithLoss()

    def predict(self, x):
        for layer in self.layers.values():
            x = layer.forward(x)
        return x

    def loss(self, x, t):
        return self.last_layer.forward(self.predict(x), t)

    def accuracy(self, x, t, batch_size=100):
        if np.ndim(t) != 1:
            t = np.argmax(t, axis=1)
        correct = 0
        for i in range(0, x.shape[0], batch_size):
            correct += int(np.sum(np.argmax(self.predict(x[i : i + batch_size]), axis=1) == t[i : i + batch_size]))
        return correct / x.shape[0]

    def numerical_gradient(self, x, t):
        loss_w = lambda w: self.loss(x, t)  # noqa: E731
        return {key: numerical_gradient(loss_w, value) for key, value in self.params.items()}

    def gradient(self, x, t):
        self.loss(x, t)
        dout = self.last_layer.backward(1)
        for layer in reversed(list(self.layers.values())):
            dout = layer.backward(dout)
        conv, a1, a2 = self.layers["Conv1"], self.layers["Affine1"], self.layers["Affine2"]
        return {"W1": conv.dW, "b1": conv.db, "W2": a1.dW, "b2": a1.db, "W3": a2.dW, "b3": a2.db}


DEEP_CONV_PARAMS = [
    {"filter_num": 16, "filter_size": 3, "pad": 1, "stride": 1},
    {"filter_num": 16, "filter_size": 3, "pad": 1, "stride": 1},
    {"filter_num": 32, "filter_size": 3, "pad": 1, "stride": 1},
    {"filter_num": 32, "filter_size": 3, "pad": 2, "stride": 1},
    {"filter_num": 64, "filter_size": 3, "pad": 1, "stride": 1},
    {"filter_num": 64, "filter_size": 3, "pad": 1, "stride": 1},
]
DEEP_DROPOUT_LAYERS = (11, 13)  # the two dropouts' numbers in fastnet's layer sequence (their masks' counter)


class DeepConvNet:
    """Chapter 8's network: (conv → ReLU → conv → ReLU → 2×2 pool) × 3 → affine → ReLU → dropout
    → affine → dropout → softmax-with-loss, He initialisation as the book computes it (fan-ins
    C·3·3 per conv, 64·4·4 and hidden for the affine layers). Weights W1 ... W8 drawn in turn from
    ``np.random.default_rng(seed)``; ``dropout_uniforms`` (a ``CounterMasks``) makes the dropout
    draws fastnet's (layer numbers ``DEEP_DROPOUT_LAYERS``)."""

    def __init__(self, input_dim=(1, 28, 28), conv_params=None, hidden_size=50, output_size=10, dropout_ratio=0.5,
                 dtype=np.float64, seed=None, dropout_uniforms=None):  # fmt: skip
        from . import Dropout

        conv_params = conv_params or DEEP_CONV_PARAMS
        rng = np.random.default_rng(seed)
        self.params, self.layers = {}, []
        c, h, w = input_dim
        for i, cp in enumerate(conv_params):
            fn, fs = cp["filter_num"], cp["filter_size"]
            W = (np.sqrt(2.0 / (c * fs * fs)) * rng.standard_normal((fn, c, fs, fs))).astype(dtype)
            self.params[f"W{i + 1}"], self.params[f"b{i + 1}"] = W, np.zeros(fn, dtype)
            self.layers += [Convolution(W, self.params[f"b{i + 1}"], cp["stride"], cp["pad"]), Relu()]
            c = fn
            h = conv_output_size(h, fs, cp["stride"], cp["pad"], "height")
            w = conv_output_size(w, fs, cp["stride"], cp["pad"], "width")
            if i % 2 == 1:
                self.layers.append(Pooling(2, 2, stride=2))
                h, w = conv_output_size(h, 2, 2), conv_output_size(w, 2, 2)
        n = len(conv_params)
        uniforms = [dropout_uniforms.layer(k) if dropout_uniforms else None for k in DEEP_DROPOUT_LAYERS]
        for k, (n_in, n_out) in enumerate([(c * h * w, hidden_size), (hidden_size, output_size)]):
            key = n + k + 1
            W = (np.sqrt(2.0 / n_in) * rng.standard_normal((n_in, n_out))).astype(dtype)
            self.params[f"W{key}"], self.params[f"b{key}"] = W, np.zeros(n_out, dtype)
            self.layers.append(Affine(W, self.params[f"b{key}"]))
            if k == 0:
                self.layers.append(Relu())
            self.layers.append(Dropout(dropout_ratio, uniforms[k]))
        self.last_layer = SoftmaxWithLoss()

    def predict(self, x, train_flg=False):
        from . import Dropout

        for layer in self.layers:
            x = layer.forward(x, train_flg) if isinstance(layer, Dropout) else layer.forward(x)
        return x

    def loss(self, x, t, train_flg=False):
        return self.last_layer.forward(self.predict(x, train_flg), t)

    def accuracy(self, x, t, batch_size=100):
        return SimpleConvNet.accuracy(self, x, t, batch_size)

    def numerical_gradient(self, x, t):
        loss_w = lambda w: self.loss(x, t, train_flg=True)  # noqa: E731
        return {key: numerical_gradient(loss_w, value) for key, value in self.params.items()}

    def gradient(self, x, t):
        self.last_loss = self.loss(x, t, train_flg=True)
        dout = self.last_layer.backward(1)
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        grads, i = {}, 1
        for layer in self.layers:
            if isinstance(layer, (Convolution, Affine)):
                grads[f"W{i}"], grads[f"b{i}"] = layer.dW, layer.db
                i += 1
        return grads
