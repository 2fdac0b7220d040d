"""The project's one restricted unpickler: pickles of numpy arrays (MNIST's ``mnist.pkl.gz``, the
book's ``params.pkl``) read without executing anything else.

A pickle can call any importable function while it loads. ``ArraysOnly`` resolves only what such
a file holds: numpy's array reconstruction (``numpy.core.multiarray`` as numpy 1.x, which wrote
the book's files and the MNIST pickle, names it; ``numpy._core.multiarray`` as numpy 2 does),
numpy scalars, ``numpy.ndarray``, ``numpy.dtype`` and the bytes codec protocol 2 uses. Any other
global is refused with a ``RefusedGlobal`` naming it.
"""

import io
import pickle

import numpy as np

ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle asks for a global that a file of arrays does not need."""


class ArraysOnly(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in ALLOWED:
            raise RefusedGlobal(f"refusing: it asks to load {module}.{name}, which a file of numpy arrays does "
                                "not need (unpickling it could run code)")  # fmt: skip
        module = module.replace("numpy.core.", "numpy._core.") if np.__version__ >= "2" else module
        return super().find_class(module, name)


def load_arrays(data, encoding="ASCII"):
    """The object pickled in ``data`` (bytes), whose globals may only be numpy arrays' (``ALLOWED``)."""
    return ArraysOnly(io.BytesIO(data), encoding=encoding).load()
