"""The book's weight files (``params.pkl``, ``deep_convnet_params.pkl``): a pickled dict of
numpy arrays, read without executing arbitrary pickles, and written in the same format.

Read with the project's one restricted unpickler (``fastnet.safe_pickle``): a global that a file
of weights does not need is refused with a message naming it; the loaded object must be a dict of
str to float arrays.
"""

import pickle
import pickletools

import numpy as np

from ._atomic import atomic_write_bytes
from .safe_pickle import RefusedGlobal, load_arrays


class BookFileError(ValueError):
    """A file that is not (or no longer) a dict of arrays pickled as the book writes them."""


def read_book_params(path):
    """{name: array} from a pickled dict of numpy arrays (the book's ``save_params``), safely."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise BookFileError(f"{path}: no such file") from None
    except OSError as e:
        raise BookFileError(f"{path}: cannot read it ({e})") from None
    try:
        params = load_arrays(data)
    except RefusedGlobal as e:
        raise BookFileError(f"{path}: not a file of the book's weights: {e}") from None
    except Exception as e:  # truncated, corrupt, not a pickle at all
        raise BookFileError(f"{path}: not a readable pickle of the book's weights ({type(e).__name__}: {e})") from None
    if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
        raise BookFileError(f"{path}: holds a {type(params).__name__}, not a dict of named arrays")
    for key, value in params.items():
        if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
            raise BookFileError(f"{path}: {key!r} is not an array of floats")
    return params


def write_book_params(path, params):
    """Write {name: array} atomically as the book's ``pickle.dump(params, f)`` does, with numpy's
    names as numpy 1.x wrote them (numpy 2 reads them too), so the book's own code loads it."""
    stream = pickle.dumps({k: np.ascontiguousarray(v) for k, v in params.items()}, protocol=3)
    out, last = bytearray(), 0
    for op, arg, pos in pickletools.genops(stream):  # protocol 3 names globals in text: "c<module>\n<name>\n"
        if op.name == "GLOBAL" and arg.startswith("numpy._core."):
            out += stream[last:pos] + b"c" + arg.replace("numpy._core.", "numpy.core.").replace(" ", "\n").encode()
            out += b"\n"
            last = pos + 1 + len(arg) + 1
    out += stream[last:]
    atomic_write_bytes(path, bytes(out))
