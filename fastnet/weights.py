"""Saving and loading a network's weights as ``.npz``: atomic writes, no pickles.

The file holds the parameters (W1, b1, ..., Wn, bn; gamma/beta and batch norm's
running statistics where the net has them) and a small JSON ``meta``
string with the architecture (``TwoLayerNet``, ``MultiLayerNet`` of any depth,
``SimpleConvNet``, ``DeepConvNet``). Loading checks keys, shapes and dtypes before anything
is used and never unpickles.
"""

import json
import os
import zipfile

import numpy as np

from . import _cores
from ._atomic import atomic_path
from .convnet import DeepConvNet, SimpleConvNet
from .multilayer import MultiLayerNet
from .net import TwoLayerNet

FORMAT = "fastnet-weights-1"


class WeightsError(ValueError):
    """A weights file is unreadable, corrupt, or does not fit the network."""


def architecture(net):
    """What rebuilds ``net``: the class and its constructor's arguments (JSON-able)."""
    if isinstance(net, SimpleConvNet):
        return {"network": "SimpleConvNet", "input_dim": list(net.input_dim), "conv_param": net.conv_param,
                "hidden_size": net.hidden_size, "output_size": net.output_size, "dtype": net.dtype.name}  # fmt: skip
    if isinstance(net, DeepConvNet):
        return {"network": "DeepConvNet", "input_dim": list(net.input_dim), "conv_params": net.conv_params,
                "hidden_size": net.hidden_size, "output_size": net.output_size, "dropout_ratio": net.dropout_ratio,
                "dropout_seed": net.dropout_seed, "dropout_step": net.dropout_step,
                "dtype": net.dtype.name}  # fmt: skip
    if isinstance(net, MultiLayerNet):
        return {
            "network": "MultiLayerNet", "input_size": net.input_size, "hidden_size_list": net.hidden_size_list,
            "output_size": net.output_size, "activation": net.activation,
            "weight_decay_lambda": net.weight_decay_lambda, "use_dropout": net.use_dropout,
            "dropout_ratio": net.dropout_ratio, "use_batchnorm": net.use_batchnorm, "dropout_seed": net.dropout_seed,
            "dropout_step": net.dropout_step, "dtype": net.dtype.name,
        }  # fmt: skip
    return {"network": "TwoLayerNet", "input_size": net.input_size, "hidden_size": net.hidden_size,
            "output_size": net.output_size, "dtype": net.dtype.name}  # fmt: skip


def describe(net):
    """'784-100-100-10': the layer sizes (a convnet: its class and constructor's arguments)."""
    if isinstance(net, DeepConvNet):
        convs = ",".join(str(p["filter_num"]) for p in net.conv_params)
        return f"DeepConvNet{tuple(net.input_dim)} conv {convs}, {net.hidden_size}, {net.output_size}"
    if isinstance(net, SimpleConvNet):
        conv = net.conv_param
        return (f"SimpleConvNet{tuple(net.input_dim)} conv {conv['filter_num']}×{conv['filter_size']}² "
                f"stride {conv['stride']} pad {conv['pad']}, {net.hidden_size}, {net.output_size}")  # fmt: skip
    hidden = net.hidden_size_list if isinstance(net, MultiLayerNet) else [net.hidden_size]
    return "-".join(str(n) for n in [net.input_size, *hidden, net.output_size])


def build(meta):
    """A new network with the architecture ``meta`` describes (``architecture``'s dict)."""
    dtype = np.dtype(meta["dtype"])
    if meta.get("network") == "DeepConvNet":
        convs = [{key: int(value) for key, value in dict(p).items()} for p in meta["conv_params"]]
        net = DeepConvNet(tuple(int(n) for n in meta["input_dim"]), *convs, hidden_size=int(meta["hidden_size"]),
                          output_size=int(meta["output_size"]), dropout_ratio=float(meta["dropout_ratio"]),
                          dtype=dtype)  # fmt: skip
        net.dropout_seed, net.dropout_step = int(meta["dropout_seed"]), int(meta["dropout_step"])
        return net
    if meta.get("network") == "SimpleConvNet":
        conv = {key: int(value) for key, value in dict(meta["conv_param"]).items()}
        return SimpleConvNet(tuple(int(n) for n in meta["input_dim"]), conv, int(meta["hidden_size"]),
                             int(meta["output_size"]), dtype=dtype)  # fmt: skip
    if meta.get("network", "TwoLayerNet") == "MultiLayerNet":
        net = MultiLayerNet(int(meta["input_size"]), [int(n) for n in meta["hidden_size_list"]],
                            int(meta["output_size"]), activation=meta["activation"],
                            weight_decay_lambda=float(meta["weight_decay_lambda"]),
                            use_dropout=bool(meta.get("use_dropout", False)),
                            dropout_ratio=float(meta.get("dropout_ratio", 0.5)),
                            use_batchnorm=bool(meta.get("use_batchnorm", False)), dtype=dtype)  # fmt: skip
        net.dropout_seed = int(meta.get("dropout_seed", net.dropout_seed))
        net.dropout_step = int(meta.get("dropout_step", 0))
        return net
    return TwoLayerNet(int(meta["input_size"]), int(meta["hidden_size"]), int(meta["output_size"]), dtype=dtype)


def _arrays(net):
    """The arrays a weights file holds: the parameters, and batch norm's running statistics."""
    return {**net.params, **getattr(net, "running", {})}


def save_weights(path, net, **meta):
    """Write ``net``'s parameters and architecture to ``path`` atomically (old file or new one)."""
    info = {"format": FORMAT, **architecture(net), "blas": _cores.BACKEND, "blocks": _cores.BLOCKS, **meta}
    arrays = _arrays(net)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, meta=np.array(json.dumps(info)), **arrays)


def read_weights(path):
    """(meta dict, {name: array}) from a weights file, checked for structure."""
    try:
        if not os.path.exists(path):
            raise FileNotFoundError(path)
        if not zipfile.is_zipfile(path):  # np.load would take it for a pickle, and advise loading it "unsafely"
            with open(path, "rb") as f:
                if f.read(4) == b"PK\x03\x04":
                    raise WeightsError(f"{path}: not a readable fastnet weights file (a truncated or damaged .npz)")
            hint = " (the book's .pkl weights: load_params)" if str(path).endswith(".pkl") else ""
            raise WeightsError(f"{path}: not a fastnet weights file (an .npz archive){hint}")
        with np.load(path, allow_pickle=False) as data:
            if "meta" not in data.files:
                raise WeightsError(f"{path}: expected arrays with a 'meta' entry, found {sorted(data.files)}")
            meta = json.loads(str(data["meta"]))
            arrays = {name: data[name] for name in data.files if name != "meta"}
    except WeightsError:
        raise
    except FileNotFoundError:
        raise WeightsError(f"{path}: no such file") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError, json.JSONDecodeError) as e:
        raise WeightsError(f"{path}: not a readable fastnet weights file ({type(e).__name__}: {e})") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise WeightsError(
            f"{path}: not a fastnet weights file (format {meta.get('format') if isinstance(meta, dict) else meta!r})"
        )
    return meta, arrays


def load_weights(path, net=None):
    """Load a weights file into ``net`` (checked against its architecture), or into a new net of the
    file's architecture (TwoLayerNet or MultiLayerNet of any depth)."""
    meta, arrays = read_weights(path)
    try:
        saved = build(meta)
    except (KeyError, TypeError, ValueError) as e:
        raise WeightsError(f"{path}: bad meta data: {e}") from e
    if net is None:
        net = saved
    elif describe(saved) != describe(net) or type(saved) is not type(net):
        kinds = f" ({type(saved).__name__} vs {type(net).__name__})" if type(saved) is not type(net) else ""
        raise WeightsError(
            f"{path}: architecture {describe(saved)} does not match the network's {describe(net)}{kinds}"
        )
    targets = _arrays(net)
    if set(arrays) != set(targets):
        raise WeightsError(f"{path}: expected arrays {sorted(set(targets) | {'meta'})}, found {sorted(arrays)}")
    for name, target in targets.items():
        a = arrays[name]
        if a.shape != target.shape:
            raise WeightsError(f"{path}: {name} has shape {a.shape}, expected {target.shape}")
        if a.dtype.kind != "f":
            raise WeightsError(f"{path}: {name} has dtype {a.dtype}, expected floats")
        if not np.all(np.isfinite(a)):
            raise WeightsError(f"{path}: {name} contains NaN or infinite values")
    for name, target in targets.items():
        target[...] = arrays[name]
    if isinstance(net, (MultiLayerNet, DeepConvNet)):  # where the masks go on: a resumed run continues bit for bit
        net.dropout_seed, net.dropout_step = saved.dropout_seed, saved.dropout_step
    return net
