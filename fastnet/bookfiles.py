"""The book's weight files (``params.pkl``, ``deep_convnet_params.pkl``): a pickled dict of
numpy arrays, read without executing arbitrary pickles, and written in the same format.

A pickle can call any importable function while it loads. The reader here is an unpickler that
resolves only what such a file holds: numpy's array reconstruction (``numpy.core.multiarray``
as numpy 1.x, which wrote the book's files, names it; ``numpy._core.multiarray`` as numpy 2
does), ``numpy.ndarray``, ``numpy.dtype`` and the bytes codec protocol 2 uses. Anything else is
refused with a message naming it; the loaded object must be a dict of str to float arrays.
"""

import io
import pickle
import pickletools

import numpy as np

from ._atomic import atomic_write_bytes

ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class BookFileError(ValueError):
    """A file that is not (or no longer) a dict of arrays pickled as the book writes them."""


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in ALLOWED:
            raise BookFileError(f"it asks to load {module}.{name}, which a file of weights does not need "
                                "(refused: unpickling it could run code)")  # fmt: skip
        module = module.replace("numpy.core.", "numpy._core.") if np.__version__ >= "2" else module
        return super().find_class(module, name)


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
        params = _ArraysOnly(io.BytesIO(data)).load()
    except BookFileError as e:
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
