"""The book's convolutional networks (chapters 7 and 8) as ``Sequential`` layer lists:
``SimpleConvNet`` and ``DeepConvNet``, each its constructor's layers and initial weights.
"""

import math

import numpy as np

from .kernels.activations import IDENTITY, RELU
from .sequential import Sequential, positive_int
from .weights import network_class


def _input_dim(func, input_dim):
    if not isinstance(input_dim, (tuple, list)) or len(input_dim) != 3:
        raise ValueError(f"{func}: input_dim must be (channels, height, width), got {input_dim!r}")
    return tuple(positive_int(func, f"input_dim[{i}]", n) for i, n in enumerate(input_dim))


def _decay(func, value):
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.number))
        or not (math.isfinite(value) and value >= 0)
    ):
        raise ValueError(f"{func}: weight_decay_lambda must be a finite number >= 0, got {value!r}")
    return float(value)


DEFAULT_CONV_PARAM = {"filter_num": 30, "filter_size": 5, "pad": 0, "stride": 1}


@network_class
class SimpleConvNet(Sequential):
    """The book's ``SimpleConvNet``: conv → ReLU → 2×2 max pool → affine → ReLU → affine →
    softmax-with-cross-entropy, with its constructor and defaults: ``conv_param`` None is the
    book's {'filter_num': 30, 'filter_size': 5, 'pad': 0, 'stride': 1}, and a dict may give only
    some of these keys (the rest keep the book's values). ``params``: W1 (FN, C, FS, FS),
    b1, W2 (FN·PH·PW, hidden), b2, W3 (hidden, output), b3; the same ``seed`` gives the
    reference's initial weights (``fastnet.reference.SimpleConvNet``). Trains with ``step``,
    ``step_indices``, ``steps`` (a learning rate or any optimizer of ``fastnet.optim``, fused),
    or the book's loop (``gradient`` then ``optimizer.update``): the same weights bit for bit.
    ``weight_decay_lambda`` (fastnet's, not the book's): ½·λ·Σ‖W‖² over every W in the loss, as
    ``MultiLayerNet``'s."""

    def __init__(self, input_dim=(1, 28, 28), conv_param=None, hidden_size=100, output_size=10,
                 weight_init_std=0.01, dtype=np.float32, seed=None, weight_decay_lambda=0):  # fmt: skip
        func = "SimpleConvNet"
        input_dim = _input_dim(func, input_dim)
        if conv_param is None:
            conv_param = DEFAULT_CONV_PARAM
        if not isinstance(conv_param, dict) or set(conv_param) - set(DEFAULT_CONV_PARAM):
            raise ValueError(f"{func}: conv_param must be a dict with keys {sorted(DEFAULT_CONV_PARAM)}, "
                             f"got {conv_param!r}")  # fmt: skip
        conv_param = {**DEFAULT_CONV_PARAM, **conv_param}
        fn = positive_int(func, "conv_param['filter_num']", conv_param["filter_num"])
        fs = positive_int(func, "conv_param['filter_size']", conv_param["filter_size"])
        stride = positive_int(func, "conv_param['stride']", conv_param["stride"])
        pad = conv_param["pad"]
        if isinstance(pad, bool) or not isinstance(pad, (int, np.integer)) or pad < 0:
            raise ValueError(f"{func}: conv_param['pad'] must be an integer >= 0, got {pad!r}")
        hidden_size = positive_int(func, "hidden_size", hidden_size)
        output_size = positive_int(func, "output_size", output_size)
        if isinstance(weight_init_std, bool) or not isinstance(weight_init_std, (int, float, np.number)) \
                or not (math.isfinite(weight_init_std) and weight_init_std >= 0):  # fmt: skip
            raise ValueError(f"{func}: weight_init_std must be a finite number >= 0, got {weight_init_std!r}")
        self.conv_param = {"filter_num": fn, "filter_size": fs, "pad": int(pad), "stride": stride}
        self.hidden_size, self.weight_init_std = hidden_size, float(weight_init_std)
        self.weight_decay_lambda = _decay(func, weight_decay_lambda)
        decay = self.weight_decay_lambda
        layers = [("conv", fn, fs, fs, stride, int(pad), RELU, decay), ("pool", 2, 2, 2, 0),
                  ("affine", hidden_size, RELU, decay), ("affine", output_size, IDENTITY, decay)]  # fmt: skip
        super().__init__(input_dim, layers, dtype)
        rng = np.random.default_rng(seed)  # W1, W2, W3 in turn, as the reference draws them
        for key in ("W1", "W2", "W3"):
            self._views[key][...] = self.weight_init_std * rng.standard_normal(self._views[key].shape)

    def architecture(self):
        """The class and its constructor's arguments (what a weights file records)."""
        return {"network": "SimpleConvNet", "input_dim": list(self.input_dim), "conv_param": self.conv_param,
                "hidden_size": self.hidden_size, "output_size": self.output_size,
                "weight_decay_lambda": self.weight_decay_lambda, "dtype": self.dtype.name}  # fmt: skip

    def describe(self):
        conv = self.conv_param
        return (f"{tuple(self.input_dim)} conv {conv['filter_num']}×{conv['filter_size']}² "
                f"stride {conv['stride']} pad {conv['pad']}, {self.hidden_size}, {self.output_size}")  # fmt: skip

    @classmethod
    def from_architecture(cls, meta):
        conv = {key: int(value) for key, value in dict(meta["conv_param"]).items()}
        return cls(tuple(int(n) for n in meta["input_dim"]), conv, int(meta["hidden_size"]), int(meta["output_size"]),
                   dtype=np.dtype(meta["dtype"]),
                   weight_decay_lambda=float(meta.get("weight_decay_lambda", 0)))  # fmt: skip


def _conv_param(func, name, param):
    if not isinstance(param, dict) or set(param) - set(DEFAULT_CONV_PARAM):
        raise ValueError(f"{func}: {name} must be a dict with keys {sorted(DEFAULT_CONV_PARAM)}, got {param!r}")
    param = {**DEFAULT_CONV_PARAM, **param}
    checked = {key: positive_int(func, f"{name}[{key!r}]", param[key]) for key in ("filter_num", "filter_size",
                                                                                    "stride")}  # fmt: skip
    pad = param["pad"]
    if isinstance(pad, bool) or not isinstance(pad, (int, np.integer)) or pad < 0:
        raise ValueError(f"{func}: {name}['pad'] must be an integer >= 0, got {pad!r}")
    return {**checked, "pad": int(pad)}


@network_class
class DeepConvNet(Sequential):
    """The book's ``DeepConvNet`` (chapter 8): (conv → ReLU → conv → ReLU → 2×2 max pool) × 3 →
    affine → ReLU → dropout → affine → dropout → softmax-with-cross-entropy, with its constructor
    and defaults (3×3 filters, 16, 16, 32, 32, 64, 64 of them, the fourth padded by 2) and its He
    initialisation (fan-ins C·3·3 of each conv and 64·4·4, hidden of the affine layers).
    ``params``: W1 ... W6 (FN, C, 3, 3), W7, W8, with b1 ... b8. Dropout as the book's: a fresh
    mask each training pass (seeded: reproducible bit for bit whatever the thread count; masks are
    those of ``fastnet.reference.DeepConvNet`` with ``CounterMasks(net.dropout_seed)``), a
    (1 − ratio) scaling at test time. The same methods as ``SimpleConvNet``."""

    def __init__(self, input_dim=(1, 28, 28), conv_param_1=None, conv_param_2=None, conv_param_3=None,
                 conv_param_4=None, conv_param_5=None, conv_param_6=None, hidden_size=50, output_size=10,
                 dropout_ratio=0.5, dtype=np.float32, seed=None, weight_decay_lambda=0):  # fmt: skip
        from .reference.conv import DEEP_CONV_PARAMS

        func = "DeepConvNet"
        input_dim = _input_dim(func, input_dim)
        given = [conv_param_1, conv_param_2, conv_param_3, conv_param_4, conv_param_5, conv_param_6]
        self.conv_params = [_conv_param(func, f"conv_param_{i + 1}", DEEP_CONV_PARAMS[i] if p is None else p)
                            for i, p in enumerate(given)]  # fmt: skip
        self.hidden_size = positive_int(func, "hidden_size", hidden_size)
        output_size = positive_int(func, "output_size", output_size)
        if isinstance(dropout_ratio, bool) or not isinstance(dropout_ratio, (int, float, np.number)) \
                or not 0 <= dropout_ratio < 1:  # fmt: skip
            raise ValueError(f"{func}: dropout_ratio must lie in [0, 1), got {dropout_ratio!r}")
        self.dropout_ratio = float(dropout_ratio)
        self.weight_decay_lambda = decay = _decay(func, weight_decay_lambda)
        layers = []
        for i, cp in enumerate(self.conv_params):
            fs = cp["filter_size"]
            layers.append(("conv", cp["filter_num"], fs, fs, cp["stride"], cp["pad"], RELU, decay))
            if i % 2 == 1:
                layers.append(("pool", 2, 2, 2, 0))
        drop = ("dropout", self.dropout_ratio)
        layers += [("affine", self.hidden_size, RELU, decay), drop, ("affine", output_size, IDENTITY, decay), drop]
        super().__init__(input_dim, layers, dtype)
        rng = np.random.default_rng(seed)  # W1 ... W8 in turn, as the reference draws them
        for key in (f"W{i}" for i in range(1, 9)):
            W = self._views[key]
            fan_in = W.shape[0] if W.ndim == 2 else int(np.prod(W.shape[1:]))
            W[...] = np.sqrt(2.0 / fan_in) * rng.standard_normal(W.shape)
        self.dropout_seed = int(rng.integers(2**63))  # after the weights: they stay the reference's

    def architecture(self):
        """The class and its constructor's arguments, and where the dropout masks go on."""
        return {"network": "DeepConvNet", "input_dim": list(self.input_dim), "conv_params": self.conv_params,
                "hidden_size": self.hidden_size, "output_size": self.output_size, "dropout_ratio": self.dropout_ratio,
                "weight_decay_lambda": self.weight_decay_lambda, "dropout_seed": self.dropout_seed,
                "dropout_step": self.dropout_step, "dtype": self.dtype.name}  # fmt: skip

    def describe(self):
        convs = ",".join(str(p["filter_num"]) for p in self.conv_params)
        return f"{tuple(self.input_dim)} conv {convs}, {self.hidden_size}, {self.output_size}"

    @classmethod
    def from_architecture(cls, meta):
        convs = [{key: int(value) for key, value in dict(p).items()} for p in meta["conv_params"]]
        net = cls(tuple(int(n) for n in meta["input_dim"]), *convs, hidden_size=int(meta["hidden_size"]),
                  output_size=int(meta["output_size"]), dropout_ratio=float(meta["dropout_ratio"]),
                  dtype=np.dtype(meta["dtype"]),
                  weight_decay_lambda=float(meta.get("weight_decay_lambda", 0)))  # fmt: skip
        net.dropout_seed, net.dropout_step = int(meta["dropout_seed"]), int(meta["dropout_step"])
        return net
