"""The layers a ``fastnet.Sequential`` network is made of: the book's layers, one small class each.

    from fastnet import Sequential, layers as L
    net = Sequential((1, 28, 28), [
        L.Conv(32, 3, pad=1), L.BatchNorm(), L.ReLU(), L.MaxPool(2),
        L.Affine(128), L.ReLU(), L.Dropout(0.3), L.Affine(10),
    ], seed=0)

A layer object only describes its layer; the network turns the list into the engine's records
(``kernels.records``), an activation folded into the layer before it (a convolution, an affine
layer or batch norm: the engine applies it in the same pass). ``parse_layers`` reads the same list
from a line of text (``fastnet train --layers``)::

    conv32x3p1,bn,relu,pool2,affine128,relu,dropout0.3,affine10
"""

import math
import re

WEIGHT_INITS = ("he", "xavier")  # or a number: the standard deviation


def _count(layer, name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{layer}: {name} must be a positive integer, got {value!r}")
    return value


def _fraction(layer, name, value, low, high):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value < high:
        raise ValueError(f"{layer}: {name} must lie in [{low:g}, {high:g}), got {value!r}")
    return float(value)


def _init(layer, value):
    if value in WEIGHT_INITS:
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{layer}: weight_init must be 'he', 'xavier' or a standard deviation > 0, got {value!r}")
    return float(value)


def _decay(layer, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{layer}: weight_decay must be a finite number >= 0, got {value!r}")
    return float(value)


class Layer:
    """What every layer shares: its arguments (``args``, in the constructor's order, and the
    defaults it omits when it prints), equality, and a dict that rebuilds it (``from_dict``)."""

    DEFAULTS = {}

    def __init__(self, **args):
        self.args = args

    def to_dict(self):
        return {"layer": type(self).__name__, **self.args}

    def __eq__(self, other):
        return type(self) is type(other) and self.args == other.args

    def __hash__(self):
        return hash((type(self).__name__, tuple(self.args.items())))

    def __repr__(self):
        shown, keyword = [], False
        if len(self.args) == 1:  # Dropout(0.3), BatchNorm(0.8)
            return f"{type(self).__name__}({next(iter(self.args.values()))!r})" if self.args != self.DEFAULTS \
                else f"{type(self).__name__}()"  # fmt: skip
        for name, value in self.args.items():
            if name in self.DEFAULTS and value == self.DEFAULTS[name]:
                keyword = True  # once one is left out, the rest need their names
                continue
            shown.append(f"{name}={value!r}" if keyword or name in self.DEFAULTS else repr(value))
        return f"{type(self).__name__}({', '.join(shown)})"


class Affine(Layer):
    """A fully connected layer of ``units`` outputs (the book's ``Affine``); after an image it reads
    the image flattened in (C, H, W) order. ``weight_init``: "he" (√(2/fan-in)), "xavier"
    (√(1/fan-in)) or a standard deviation; ``weight_decay``: λ of ½λ‖W‖² in the loss."""

    DEFAULTS = {"weight_init": "he", "weight_decay": 0.0}

    def __init__(self, units, weight_init="he", weight_decay=0.0):
        super().__init__(units=_count("Affine", "units", units), weight_init=_init("Affine", weight_init),
                         weight_decay=_decay("Affine", weight_decay))  # fmt: skip


class Conv(Layer):
    """A convolution of ``filters`` filters of ``size`` (an int or (FH, FW)), the book's
    ``Convolution``; ``weight_init`` and ``weight_decay`` as ``Affine``'s (fan-in C·FH·FW)."""

    DEFAULTS = {"stride": 1, "pad": 0, "weight_init": "he", "weight_decay": 0.0}

    def __init__(self, filters, size, stride=1, pad=0, weight_init="he", weight_decay=0.0):
        if isinstance(size, (tuple, list)):
            if len(size) != 2:
                raise ValueError(f"Conv: size must be an int or (FH, FW), got {size!r}")
            size = (_count("Conv", "size", size[0]), _count("Conv", "size", size[1]))
        else:
            size = _count("Conv", "size", size)
        pad = 0 if pad == 0 else _count("Conv", "pad", pad)
        super().__init__(filters=_count("Conv", "filters", filters), size=size,
                         stride=_count("Conv", "stride", stride), pad=pad, weight_init=_init("Conv", weight_init),
                         weight_decay=_decay("Conv", weight_decay))  # fmt: skip

    @property
    def window(self):
        size = self.args["size"]
        return tuple(size) if isinstance(size, tuple) else (size, size)


class MaxPool(Layer):
    """Max pooling over ``size``×``size`` windows (the book's ``Pooling``), ``stride`` = ``size``
    unless given."""

    DEFAULTS = {"size": 2, "stride": None, "pad": 0}

    def __init__(self, size=2, stride=None, pad=0):
        size = _count("MaxPool", "size", size)
        stride = None if stride is None else _count("MaxPool", "stride", stride)
        super().__init__(size=size, stride=stride, pad=0 if pad == 0 else _count("MaxPool", "pad", pad))


class ReLU(Layer):
    """max(0, x) (the book's ``Relu``)."""


class Sigmoid(Layer):
    """1 / (1 + e^-x) (the book's ``Sigmoid``)."""


class BatchNorm(Layer):
    """Batch normalization (the book's ``BatchNormalization``, ε = 1e-6 under the root): per feature
    after an affine layer, per channel over N·H·W after a convolution; running statistics moved
    with ``momentum`` in training passes."""

    DEFAULTS = {"momentum": 0.9}

    def __init__(self, momentum=0.9):
        super().__init__(momentum=_fraction("BatchNorm", "momentum", momentum, 0, 1))


class Dropout(Layer):
    """Dropout (the book's ``Dropout``): in training each value kept with probability 1 − ratio,
    at test time every value scaled by (1 − ratio)."""

    DEFAULTS = {"ratio": 0.5}

    def __init__(self, ratio=0.5):
        super().__init__(ratio=_fraction("Dropout", "ratio", ratio, 0, 1))


KINDS = {cls.__name__: cls for cls in (Affine, Conv, MaxPool, ReLU, Sigmoid, BatchNorm, Dropout)}
ACTIVATIONS = {ReLU: "relu", Sigmoid: "sigmoid"}


def from_dict(entry):
    """The layer a ``Layer.to_dict`` entry describes (what a weights file holds), checked."""
    if not isinstance(entry, dict) or entry.get("layer") not in KINDS:
        raise ValueError(f"not a layer: {entry!r} (known: {', '.join(KINDS)})")
    args = {key: value for key, value in entry.items() if key != "layer"}
    if "size" in args and isinstance(args["size"], list):
        args["size"] = tuple(args["size"])
    return KINDS[entry["layer"]](**args)


_WORDS = [  # (pattern, what it builds) for parse_layers
    (r"conv(\d+)x(\d+)(?:x(\d+))?(?:s(\d+))?(?:p(\d+))?",
     lambda m: Conv(int(m[1]), int(m[2]) if m[3] is None else (int(m[2]), int(m[3])), int(m[4] or 1), int(m[5] or 0))),
    (r"pool(\d+)?(?:s(\d+))?(?:p(\d+))?",
     lambda m: MaxPool(int(m[1] or 2), None if m[2] is None else int(m[2]), int(m[3] or 0))),
    (r"affine(\d+)", lambda m: Affine(int(m[1]))),
    (r"relu", lambda m: ReLU()),
    (r"sigmoid", lambda m: Sigmoid()),
    (r"bn(\d*\.?\d+)?", lambda m: BatchNorm(0.9 if m[1] is None else float(m[1]))),
    (r"dropout(\d*\.?\d+)?", lambda m: Dropout(0.5 if m[1] is None else float(m[1]))),
]  # fmt: skip
LAYERS_HELP = ("comma-separated layers: convFxK[xK2][sS][pP] (F filters of K×K or K×K2, stride S, padding P), "
               "pool[K][sS][pP], affineN, relu, sigmoid, bn[MOMENTUM] (batch norm), dropout[R]; the last affineN "
               "has the classes, e.g. conv32x3p1,bn,relu,pool2,affine128,relu,dropout0.3,affine10")  # fmt: skip


def layer_word(layer):
    """A layer as ``parse_layers`` reads it (its weight_init and weight_decay are not in the text)."""
    a = layer.args
    if isinstance(layer, Conv):
        fh, fw = layer.window
        size = f"{fh}" if fh == fw and not isinstance(a["size"], tuple) else f"{fh}x{fw}"
        return (f"conv{a['filters']}x{size}" + (f"s{a['stride']}" if a["stride"] != 1 else "")
                + (f"p{a['pad']}" if a["pad"] else ""))  # fmt: skip
    if isinstance(layer, MaxPool):
        stride = "" if a["stride"] is None else f"s{a['stride']}"
        return f"pool{a['size']}{stride}" + (f"p{a['pad']}" if a["pad"] else "")
    if isinstance(layer, Affine):
        return f"affine{a['units']}"
    if isinstance(layer, BatchNorm):
        return "bn" if a["momentum"] == 0.9 else f"bn{a['momentum']:g}"
    if isinstance(layer, Dropout):
        return f"dropout{a['ratio']:g}"
    return ACTIVATIONS[type(layer)]


def parse_layers(text):
    """'conv32x3p1,bn,relu,pool2,affine10' -> [Conv(32, 3, pad=1), BatchNorm(), ReLU(), MaxPool(), Affine(10)]."""
    layers = []
    for word in str(text).replace(" ", "").lower().split(","):
        for pattern, build in _WORDS:
            match = re.fullmatch(pattern, word)
            if match:
                layers.append(build(match))
                break
        else:
            raise ValueError(f"--layers: {word!r} is not a layer; {LAYERS_HELP}")
    return layers


def engine_layers(layers):
    """The engine's layer tuples (``kernels.records.LAYER_FORMS``) for a list of layer objects,
    each activation folded into the layer before it."""
    specs = []
    kept = [layer for layer in layers if not isinstance(layer, Dropout)]
    if kept and isinstance(kept[-1], Layer) and not isinstance(kept[-1], Affine):
        raise ValueError(f"the last layer must be affine, not {kept[-1]!r}: its outputs are the logits "
                         "(softmax-with-cross-entropy follows it; only Dropout may follow it)")  # fmt: skip
    for i, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            raise TypeError(f"layer {i + 1}: {layer!r} is not a layer of fastnet.layers")
        if type(layer) in ACTIVATIONS:
            before = layers[i - 1] if i else None
            if not isinstance(before, (Conv, Affine, BatchNorm)):
                where = f"after {before!r}" if before is not None else "first"
                hint = " (max pooling commutes with it: put it before the pool)" if isinstance(before, MaxPool) else ""
                raise ValueError(f"layer {i + 1}: {layer!r} {where}: an activation follows a Conv, an Affine or a "
                                 f"BatchNorm{hint}")  # fmt: skip
            spec, at = specs[-1], _ACT_AT[specs[-1][0]]
            specs[-1] = (*spec[:at], ACTIVATIONS[type(layer)], *spec[at + 1 :])
            continue
        a = layer.args
        if isinstance(layer, Affine):
            specs.append(("affine", a["units"], "identity", a["weight_decay"]))
        elif isinstance(layer, Conv):
            fh, fw = layer.window
            specs.append(("conv", a["filters"], fh, fw, a["stride"], a["pad"], "identity", a["weight_decay"]))
        elif isinstance(layer, MaxPool):
            size = a["size"]
            specs.append(("pool", size, size, size if a["stride"] is None else a["stride"], a["pad"]))
        elif isinstance(layer, BatchNorm):
            specs.append(("batchnorm", "identity", a["momentum"]))
        else:
            specs.append(("dropout", a["ratio"]))
    return specs


_ACT_AT = {"affine": 2, "conv": 6, "batchnorm": 1}  # where a layer tuple holds its activation
