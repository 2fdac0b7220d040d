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

FORMAT = "fastnet-weights-1"


class WeightsError(ValueError):
    """A weights file is unreadable, corrupt, or does not fit the network."""


NETWORKS = {}  # class name -> class: what a weights file's "network" entry names


def network_class(cls):
    """Register a network class under its name, so that weights files can name it (a class decorator).
    The class gives ``architecture()`` (a JSON-able dict with "network": its name, and what its
    constructor takes), ``describe()`` (a line for people) and ``from_architecture(meta)``."""
    NETWORKS[cls.__name__] = cls
    return cls


def architecture(net):
    """What rebuilds ``net``: the class and its constructor's arguments (JSON-able)."""
    return net.architecture()


def describe(net):
    """'784-100-100-10': the layer sizes (a convnet: its class and constructor's arguments)."""
    return net.describe()


def build(meta):
    """A new network with the architecture ``meta`` describes (``architecture``'s dict)."""
    name = meta.get("network", "TwoLayerNet")
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r} (known: {', '.join(sorted(NETWORKS))})")
    return NETWORKS[name].from_architecture(meta)


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
    if hasattr(saved, "dropout_step"):  # where the masks go on: a resumed run continues bit for bit
        net.dropout_seed, net.dropout_step = saved.dropout_seed, saved.dropout_step
    return net
