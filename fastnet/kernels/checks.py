"""Value checks in compiled code: every checked entry point runs them before a raw kernel.

Each raises ``ValueError`` with a message that starts with the entry point's
name. (The *kinds* of the arguments, dtype, ndim and layout, are checked before
any compiled code runs, in ``_kinds``.) No fastmath anywhere in fastnet, so the
NaN tests cannot be optimised away; a test enforces it.
"""

import numpy as np
from numba import njit

from .records import IN_SIZE, OUT_SIZE


@njit(cache=True)
def require(condition, func, message):
    """Raise ``ValueError(func + message)`` unless ``condition`` (the text is built only on failure)."""
    if not condition:
        raise ValueError(func + message)


@njit(cache=True)
def span(a):
    """The byte range [start, stop) of a C-contiguous array (empty for an empty array)."""
    if a.size == 0:
        return (0, 0)
    return (a.ctypes.data, a.ctypes.data + a.nbytes)


@njit(cache=True)
def require_disjoint(func, output_spans, input_spans):
    """No output overlaps an input or another output (spans from ``span``)."""
    for i in range(len(output_spans)):
        o0, o1 = output_spans[i]
        for j in range(len(input_spans)):
            a0, a1 = input_spans[j]
            if o0 < a1 and a0 < o1:
                raise ValueError(func + ": an output array overlaps an input array")
        for j in range(i + 1, len(output_spans)):
            a0, a1 = output_spans[j]
            if o0 < a1 and a0 < o1:
                raise ValueError(func + ": two output arrays overlap")


@njit(cache=True)
def require_finite(func, name, a):
    """Raise unless every entry of the C-contiguous float array ``a`` is finite.

    v - v is 0 for a finite v and NaN for NaN or ±inf, and NaN != 0; OR-ing
    the flags (unlike summing floats) vectorises without fastmath.
    """
    flat = a.reshape(a.size)
    bad = False
    for i in range(flat.size):
        bad |= flat[i] - flat[i] != 0
    if bad:
        raise ValueError(func + ": " + name + " contains NaN or infinity")


@njit(cache=True)
def require_labels(func, t, num_classes):
    """Every label lies in [0, num_classes)."""
    for i in range(t.shape[0]):
        if t[i] < 0 or t[i] >= num_classes:
            raise ValueError(func + ": labels must lie in [0, C), C = " + str(num_classes) + " classes: label "
                             + str(t[i]) + " at position " + str(i))  # fmt: skip


@njit(cache=True)
def require_lr(func, lr):
    """The learning rate is finite and not negative (0 computes gradients only, where allowed)."""
    require(np.isfinite(lr) and lr >= 0, func, ": lr must be a finite number >= 0")


@njit(cache=True)
def check_batches(X, T, batches, rec, batch):
    """What an engine network's steps take from the caller, checked before the first one (the
    caller names itself in front of the message): X's width, one label per row, every batch index
    inside X and every label of a batch inside [0, C). ``rec``: the network's layer records."""
    classes = rec[rec.shape[0] - 1, OUT_SIZE]
    if X.shape[1] != rec[0, IN_SIZE]:
        raise ValueError("x has " + str(X.shape[1]) + " values per row, the network takes " + str(rec[0, IN_SIZE]))
    if T.shape[0] != X.shape[0]:
        raise ValueError("t has " + str(T.shape[0]) + " labels for " + str(X.shape[0]) + " rows of x")
    if batches.shape[1] != batch:
        raise ValueError("batches of " + str(batches.shape[1]) + " rows, the workspace holds " + str(batch))
    for s in range(batches.shape[0]):
        for i in range(batches.shape[1]):
            row = batches[s, i]
            if row < 0 or row >= X.shape[0]:
                raise ValueError("a batch index lies outside [0, len(x)) = [0, " + str(X.shape[0])
                                 + "): (position, index) = (" + str(i) + ", " + str(row) + ") in batch "
                                 + str(s))  # fmt: skip
            if T[row] < 0 or T[row] >= classes:
                raise ValueError("labels must lie in [0, C), C = " + str(classes) + " classes: label " + str(T[row])
                                 + " in row " + str(row))  # fmt: skip


@njit(cache=True)
def check_engine_batches(X, T, batches, net, work):
    """``check_batches`` for ``net`` (an ``EngineNetwork``) against the workspace ``work`` (an
    ``EngineWork``), both as plain tuples."""
    check_batches(X, T, batches, net[0], work[1].shape[0])
