"""Dropout, a layer kind of the engine: its forward beside its backward (reference twin: the
book's ``Dropout``, ``fastnet.reference``).

**Masks** come from a counter-based generator: unit j of batch row i in the layer numbered
``layer`` (a dropout record's KEY) at training step s is kept when a uniform draw, a hash of
(seed, s, layer, i, j), exceeds the ratio. No draw depends on which thread makes it, so training
is bitwise the same with any number of threads, and the backward pass needs no stored mask: it
draws the same mask again. At test time every value is scaled by (1 − ratio), as the book's.
"""

import numpy as np
from numba import njit

from .activations import activation_backward
from .layers import RELU, SIGMOID

# -- the dropout masks' generator: splitmix64's finaliser over a key built from the counters -----

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_TO_UNIT = 1.0 / 9007199254740992.0  # 2**-53: the top 53 bits of a hash as a float in [0, 1)


@njit(cache=True)
def _mix(z):
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@njit(cache=True)
def dropout_row_key(seed, step, layer, row):
    """The key of one batch row's draws in hidden layer ``layer`` at training step ``step``."""
    k = _mix(np.uint64(seed) + _GOLDEN)
    k = _mix(k + np.uint64(step))
    k = _mix(k + np.uint64(layer))
    return _mix(k + np.uint64(row))


@njit(cache=True)
def dropout_uniform(row_key, unit):
    """Unit ``unit``'s uniform draw in [0, 1) under ``row_key``."""
    return float(_mix(row_key + np.uint64(unit + 1) * _GOLDEN) >> np.uint64(11)) * _TO_UNIT


@njit(cache=True)
def dropout_mask_unchecked(seed, step, layer, ratio, mask):
    """mask[i, j] = 1 where unit j of batch row i is kept, else 0: the mask the training step draws."""
    for i in range(mask.shape[0]):
        key = dropout_row_key(seed, step, layer, i)
        for j in range(mask.shape[1]):
            mask[i, j] = 1 if dropout_uniform(key, j) > ratio else 0
    return mask


# -- dropout as a layer kind of the engine (its masks drawn again in the backward pass) ------


@njit(cache=True)
def dropout_rows(h, out, ratio, seed, step, layer, train, r0, r1):
    """Rows r0:r1 of out = h ⊙ mask in training (unit j of row i kept where its counter-based draw
    for (seed, step, layer, i, j) exceeds the ratio: ``regularize``'s masks), h·(1 − ratio) at test time.
    Reference twin: ``fastnet.reference.Dropout`` with ``CounterMasks``."""
    for i in range(r0, r1):
        src, dst = h[i], out[i]
        if train:
            key = dropout_row_key(seed, step, layer, i)
            for j in range(src.shape[0]):
                dst[j] = src[j] if dropout_uniform(key, j) > ratio else 0
        else:
            scale = 1.0 - ratio
            for j in range(src.shape[0]):
                dst[j] = src[j] * scale


@njit(cache=True)
def dropout_scale_in_place(h, ratio, r0, r1):
    """Rows r0:r1 of h = h·(1 − ratio) in place: dropout at test time."""
    scale = 1.0 - ratio
    for i in range(r0, r1):
        row = h[i]
        for j in range(row.shape[0]):
            row[j] = row[j] * scale


@njit(cache=True)
def dropout_backward_rows(d, dh, h, out, below, ratio, seed, step, layer, r0, r1):
    """Rows r0:r1 of dh = d ⊙ mask ⊙ act'(below) read from h (the layer's input; ``out`` its
    output). Below a ReLU or a sigmoid the mask needs no drawing: where a unit was dropped its
    output is 0, and where the output is 0 but the unit was kept, act' is 0 there too ([h > 0],
    h·(1 − h)); below the identity the forward's mask is drawn again from its counters."""
    for i in range(r0, r1):
        src, dst, kept = d[i], dh[i], out[i]
        if below == RELU:
            for j in range(src.shape[0]):
                dst[j] = src[j] if kept[j] > 0 else 0
            continue
        if below == SIGMOID:
            for j in range(src.shape[0]):
                dst[j] = src[j] if kept[j] != 0 else 0
        else:
            key = dropout_row_key(seed, step, layer, i)
            for j in range(src.shape[0]):
                dst[j] = src[j] if dropout_uniform(key, j) > ratio else 0
        activation_backward(below, dst, h[i])
