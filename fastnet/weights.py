"""Saving and loading a TwoLayerNet's weights as ``.npz``: atomic writes, no pickles.

The file holds W1, b1, W2, b2 and a small JSON ``meta`` string. Loading checks
keys, shapes and dtypes before anything is used and never unpickles.
"""

import json
import zipfile

import numpy as np

from . import _cores
from ._atomic import atomic_path
from .net import TwoLayerNet

PARAM_NAMES = TwoLayerNet.PARAM_NAMES

FORMAT = "fastnet-weights-1"


class WeightsError(ValueError):
    """A weights file is unreadable, corrupt, or does not fit the network."""


def save_weights(path, net, **meta):
    """Write ``net``'s parameters to ``path`` atomically (old file or new one, never a broken one)."""
    info = {
        "format": FORMAT,
        "input_size": net.input_size,
        "hidden_size": net.hidden_size,
        "output_size": net.output_size,
        "dtype": net.dtype.name,
        "blas": _cores.BACKEND,  # with the block count, what the trained bits depend on
        "blocks": _cores.BLOCKS,
        **meta,
    }
    arrays = {name: net.params[name] for name in PARAM_NAMES}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, meta=np.array(json.dumps(info)), **arrays)


def read_weights(path):
    """(meta dict, {name: array}) from a weights file, checked for structure."""
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = set(data.files)
            expected = set(PARAM_NAMES) | {"meta"}
            if keys != expected:
                raise WeightsError(f"{path}: expected arrays {sorted(expected)}, found {sorted(keys)}")
            meta = json.loads(str(data["meta"]))
            arrays = {name: data[name] for name in PARAM_NAMES}
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
    """Load a weights file into ``net`` (checked against its architecture), or into a new net."""
    meta, arrays = read_weights(path)
    try:
        sizes = (int(meta["input_size"]), int(meta["hidden_size"]), int(meta["output_size"]))
        dtype = np.dtype(meta["dtype"])
    except (KeyError, TypeError, ValueError) as e:
        raise WeightsError(f"{path}: bad meta data: {e}") from e
    if net is None:
        net = TwoLayerNet(*sizes, dtype=dtype)
    elif sizes != (net.input_size, net.hidden_size, net.output_size):
        raise WeightsError(
            f"{path}: architecture {sizes[0]}-{sizes[1]}-{sizes[2]} does not match the "
            f"network's {net.input_size}-{net.hidden_size}-{net.output_size}"
        )
    for name in PARAM_NAMES:
        target = net.params[name]
        a = arrays[name]
        if a.shape != target.shape:
            raise WeightsError(f"{path}: {name} has shape {a.shape}, expected {target.shape}")
        if a.dtype.kind != "f":
            raise WeightsError(f"{path}: {name} has dtype {a.dtype}, expected floats")
        if not np.all(np.isfinite(a)):
            raise WeightsError(f"{path}: {name} contains NaN or infinite values")
    for name in PARAM_NAMES:
        net.params[name][...] = arrays[name]
    return net
