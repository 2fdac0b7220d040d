"""Argument checks shared by the checked kernels, from Python and from ``@njit`` code.

The *kind* of each argument (dtype, ndim, contiguity, writability) is checked
before any compiled code runs: in Python for Python callers, at typing time for
``@njit`` callers (the overload then compiles to a ``raise``). Values (shapes,
label ranges, overlap) are checked in compiled code (``checks``).

Each argument is described by a role:

* ``IN``: float input, read only;
* ``OUT``: float output, must be C-contiguous and writable;
* ``LABELS``: integer class indices.
"""

import math

import numpy as np
from numba import types
from numba.np.numpy_support import as_dtype

IN, OUT, LABELS = "input", "output", "labels"
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _kind_problem(func, name, role, ndim, want_ndim, dtype, float_dtype, c_contiguous, writable):
    """The message for one argument's kind, or None. ``float_dtype`` is the call's float dtype."""
    where = f"{func}: argument {name!r}"
    if role == LABELS:
        if dtype.kind not in "iu":
            return TypeError, f"{where} holds class labels and must have an integer dtype, not {dtype}"
    elif dtype not in FLOAT_DTYPES:
        return TypeError, f"{where} must be float32 or float64, not {dtype}"
    elif dtype != float_dtype:
        return TypeError, (
            f"{where} is {dtype} but the other float arguments are {float_dtype}; "
            "all float arrays of one call must share a dtype"
        )
    if want_ndim is not None and ndim != want_ndim:
        return ValueError, f"{where} must be {want_ndim}-D, got a {ndim}-D array"
    if want_ndim is None and ndim not in (1, 2):
        return ValueError, f"{where} must be 1-D or 2-D, got a {ndim}-D array"
    if role == OUT and not c_contiguous:
        return ValueError, f"{where} is an output and must be C-contiguous"
    if role == OUT and not writable:
        return ValueError, f"{where} is an output and must be writable"
    return None


def _first_float_dtype(dtypes, roles):
    for dtype, role in zip(dtypes, roles):
        if role != LABELS and dtype in FLOAT_DTYPES:
            return dtype
    return np.dtype(np.float64)


def python_args(func, spec, args):
    """Check Python arguments against ``spec`` [(name, ndim, role), ...]; return them ready to pass on.

    Non-contiguous inputs are copied to C order (the right answer for a strided
    view); labels of any integer dtype become int64.
    """
    arrays = []
    for (name, _, _), a in zip(spec, args):
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{func}: argument {name!r} must be a numpy array, not {type(a).__name__}")
        arrays.append(a)
    float_dtype = _first_float_dtype([a.dtype for a in arrays], [r for _, _, r in spec])
    ready = []
    for (name, ndim, role), a in zip(spec, arrays):
        problem = _kind_problem(
            func, name, role, a.ndim, ndim, a.dtype, float_dtype, a.flags.c_contiguous, a.flags.writeable
        )
        if problem:
            error, message = problem
            raise error(message)
        if role == LABELS:
            a = np.ascontiguousarray(a, dtype=np.int64)
        elif role == IN:
            a = np.ascontiguousarray(a)
        ready.append(a)
    return ready


def typing_problem(func, spec, arg_types):
    """At typing time (inside an overload): the error for these Numba types, or None."""
    dtypes = []
    for (name, _, _), ty in zip(spec, arg_types):
        if not isinstance(ty, types.Array):
            return f"{func}: argument {name!r} must be an array, not {ty}"
        dtypes.append(as_dtype(ty.dtype))
    float_dtype = _first_float_dtype(dtypes, [r for _, _, r in spec])
    for (name, ndim, role), ty, dtype in zip(spec, arg_types, dtypes):
        problem = _kind_problem(func, name, role, ty.ndim, ndim, dtype, float_dtype, ty.layout == "C", ty.mutable)
        if problem:
            return problem[1]
        if role != OUT and ty.layout != "C":
            return f"{func}: argument {name!r} must be C-contiguous in compiled code (np.ascontiguousarray)"
    return None


def learning_rate(func, lr, positive=False):
    """``lr`` as a float, for every entry point that takes one: a real number, finite, >= 0
    (> 0 where ``positive``: an optimizer's rate; a step's lr of 0 computes gradients only)."""
    if isinstance(lr, bool) or not isinstance(lr, (int, float, np.integer, np.floating)):
        raise TypeError(f"{func}: lr must be a real number, not {type(lr).__name__} {lr!r}")
    if not (math.isfinite(lr) and (lr > 0 if positive else lr >= 0)):  # math, not numpy: this runs on every step
        raise ValueError(f"{func}: lr must be a finite number {'>' if positive else '>='} 0, got {lr!r}")
    return float(lr)
