"""MultiLayerNet: the book's network of any depth (ch. 6) as a ``Sequential`` layer list.

(Affine → [BatchNorm] → activation → [Dropout]) × hidden layers → Affine →
softmax-with-cross-entropy, with the book's weight initialisations and weight
decay, trained by any optimizer of ``fastnet.optim`` on the layer engine.
"""

import math

import numpy as np

from .kernels.activations import IDENTITY, RELU, SIGMOID
from .sequential import Sequential
from .weights import network_class

ACTIVATIONS = {"relu": RELU, "sigmoid": SIGMOID}
INIT_NAMES = {"relu": "he", "he": "he", "sigmoid": "xavier", "xavier": "xavier"}


def init_std(weight_init_std, n_in):
    """The initial weights' standard deviation for a layer with n_in inputs: 'relu'/'he'
    √(2/n_in), 'sigmoid'/'xavier' √(1/n_in), or the number given."""
    if isinstance(weight_init_std, str):
        return math.sqrt((2.0 if INIT_NAMES[weight_init_std.lower()] == "he" else 1.0) / n_in)
    return float(weight_init_std)


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


@network_class
class MultiLayerNet(Sequential):
    """The book's ``MultiLayerNet`` (ch. 6; with ``use_dropout``/``use_batchnorm`` its
    ``MultiLayerNetExtend``): (Affine → [BatchNorm] → activation → [Dropout]) × hidden layers →
    Affine → softmax-with-cross-entropy, as a ``Sequential`` layer list with the book's
    constructor, weight initialisations and weight decay.

    ``params`` holds W1, b1, ..., Wn, bn (and gamma1, beta1, ... with batch norm): live arrays
    (views into one flat vector; assigning a new array copies its values in). ``running`` holds
    batch norm's running statistics. ``predict``, ``loss`` (both with ``train_flg``),
    ``accuracy``, ``gradient``, ``numerical_gradient`` as the book; ``step``, ``step_indices``
    and ``steps`` train with an optimizer of ``fastnet.optim`` or a learning rate (plain SGD).
    Dropout masks are drawn from ``seed`` and the count of training steps taken
    (``dropout_step``), so training is reproducible. Every training-mode pass (``step``,
    ``steps``, ``gradient``, ``predict``/``loss`` with ``train_flg=True``) moves the running
    statistics and the mask counter as the book's layers do. Thread-safe as ``TwoLayerNet``.
    """

    ARCHITECTURE = ("input_size", "hidden_size_list", "output_size", "activation", "use_batchnorm", "use_dropout")

    def __init__(self, input_size, hidden_size_list, output_size, activation="relu", weight_init_std="relu",
                 weight_decay_lambda=0, use_dropout=False, dropout_ration=0.5, use_batchnorm=False,
                 dtype=np.float32, seed=None, dropout_ratio=None):  # fmt: skip
        _check_arguments(input_size, hidden_size_list, output_size, activation, weight_init_std, weight_decay_lambda)
        self.dropout_ratio = _dropout_ratio(dropout_ration, dropout_ratio)
        dtype = np.dtype(dtype)
        if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(f"MultiLayerNet: dtype must be float32 or float64, not {dtype}")
        self.hidden_size_list = [int(n) for n in hidden_size_list]
        self.activation = activation
        self.weight_init_std = weight_init_std
        self.weight_decay_lambda = float(weight_decay_lambda)
        self.sizes = np.array([int(input_size), *self.hidden_size_list, int(output_size)], np.int64)
        self.num_layers = len(self.sizes) - 1
        act, decay = ACTIVATIONS[activation], self.weight_decay_lambda
        layers = []
        for n in self.hidden_size_list:
            layers.append(("affine", n, IDENTITY if use_batchnorm else act, decay))
            layers += [("batchnorm", act)] if use_batchnorm else []
            layers += [("dropout", self.dropout_ratio)] if use_dropout else []
        layers.append(("affine", int(output_size), IDENTITY, decay))
        keys = list(range(1, self.num_layers)) if use_dropout else None  # the masks of hidden layer l, as always
        super().__init__((int(input_size), 1, 1), layers, dtype, dropout_keys=keys)
        rng = np.random.default_rng(seed)  # W1 first, as the reference draws them
        for l in range(1, self.num_layers + 1):
            W = self._views[f"W{l}"]
            W[...] = init_std(weight_init_std, W.shape[0]) * rng.standard_normal(W.shape)
        self.dropout_seed = int(rng.integers(2**63))  # drawn after the weights: they stay the reference's

    def architecture(self):
        """The class and its constructor's arguments, and where the dropout masks go on."""
        return {
            "network": "MultiLayerNet", "input_size": self.input_size, "hidden_size_list": self.hidden_size_list,
            "output_size": self.output_size, "activation": self.activation,
            "weight_decay_lambda": self.weight_decay_lambda, "use_dropout": self.use_dropout,
            "dropout_ratio": self.dropout_ratio, "use_batchnorm": self.use_batchnorm, "dropout_seed": self.dropout_seed,
            "dropout_step": self.dropout_step, "dtype": self.dtype.name,
        }  # fmt: skip

    def describe(self):
        return "-".join(str(n) for n in [self.input_size, *self.hidden_size_list, self.output_size])

    @classmethod
    def from_architecture(cls, meta):
        net = cls(int(meta["input_size"]), [int(n) for n in meta["hidden_size_list"]], int(meta["output_size"]),
                  activation=meta["activation"], weight_decay_lambda=float(meta["weight_decay_lambda"]),
                  use_dropout=bool(meta.get("use_dropout", False)), dropout_ratio=float(meta.get("dropout_ratio", 0.5)),
                  use_batchnorm=bool(meta.get("use_batchnorm", False)), dtype=np.dtype(meta["dtype"]))  # fmt: skip
        net.dropout_seed = int(meta.get("dropout_seed", net.dropout_seed))
        net.dropout_step = int(meta.get("dropout_step", 0))
        return net

    @property
    def _running_mean(self):
        return self.net.running_mean

    @property
    def _running_var(self):
        return self.net.running_var
