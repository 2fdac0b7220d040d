"""Batch normalization and dropout on a hidden layer's outputs, each forward next to its backward.

A hidden block of ``MultiLayerNet`` is Affine → BatchNorm → activation →
Dropout, as in the book. These serial pieces work on a block of rows or
columns; ``multilayer`` runs them inside the parallel regions of its step, on
the layer's output buffer in place.

**Dropout masks** come from a counter-based generator: unit j of batch row i
in hidden layer l at training step s is kept when a uniform draw, a hash of
(seed, s, l, i, j), exceeds the ratio. No draw depends on which thread makes
it, so training is bitwise the same with any number of threads, and the
backward pass needs no stored mask: a dropped unit's output is 0, and the
activation's derivative read from that output (``layers._input_grad_rows``)
is 0 there too, for ReLU ([h > 0]) and sigmoid (h (1 - h)) alike.

**Batch normalization** uses the batch's mean and variance (1/B) in training
and the running ones at test time; ε = 10e-7 under the square root, running
statistics ``0.9·running + 0.1·batch`` (the book's constants).
"""

import numpy as np
from numba import njit

from .activations import activation_backward
from .layers import RELU, SIGMOID

BN_EPS = 10e-7  # the book's ε (1e-6) under the square root
BN_MOMENTUM = 0.9  # running = momentum·running + (1 - momentum)·batch

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


# -- activation and dropout on a block of a layer's outputs --------------------------------------


NO_ARRAY = np.zeros(0)  # for _activate_drop's bn_scale and bn_shift: no batch norm here


@njit(cache=True, error_model="numpy")  # the sigmoid's division: no zero check per element
def _activate_drop(out, r0, r1, c0, c1, activation, dropout, train, seed, step, layer, bn_scale, bn_shift):
    """out[r0:r1, c0:c1] = dropout(activation(bn(out))) in place. ``bn_scale``/``bn_shift`` (per
    column, from ``batchnorm_test_transform``; empty: none) are batch norm at test time.
    ``dropout`` is the ratio, or a negative number for none; in training a unit is kept where its
    draw exceeds the ratio (and zeroed otherwise), at test time every output is scaled by (1 - ratio)."""
    scale = 1.0 - dropout
    bn = bn_scale.size > 0
    if bn:
        bn_scale, bn_shift = bn_scale[c0:c1], bn_shift[c0:c1]
    for i in range(r0, r1):
        key = dropout_row_key(seed, step, layer, i) if train and dropout >= 0 else np.uint64(0)
        row = out[i, c0:c1]  # indexed from 0: no wrap-around select per element
        for j in range(row.shape[0]):
            v = float(row[j])
            if bn:
                v = v * bn_scale[j] + bn_shift[j]
            if activation == RELU and v < 0:  # not "v > 0 else 0": NaN must stay NaN
                v = 0.0
            elif activation == SIGMOID:
                v = 1 / (1 + np.exp(-v))
            if dropout >= 0:
                if not train:
                    v *= scale
                elif not dropout_uniform(key, c0 + j) > dropout:
                    v = 0.0
            row[j] = v


# -- batch normalization ------------------------------------------------------------------------


@njit(cache=True, error_model="numpy")  # divisions by B ≥ 2 and by √(var + ε) > 0: no checks
def _batchnorm_train_columns(a, normed, batch_mean, batch_var, inv_std, gamma, beta, c0, c1):
    """Columns c0:c1 of a hidden layer's affine output a (B, n), normalised with the batch's
    statistics: normed = x̂ = (a - mean)/√(var + ε), a := γ x̂ + β (the activation's input).
    Keeps the mean, the variance and 1/√(var + ε) (float64) for the backward pass and the running
    statistics. Sums run over the rows in order, in float64."""
    B = a.shape[0]
    # Views of the columns, indexed from 0: no wrap-around select per element, the loops vectorise.
    mean, var, inv, g, bt = batch_mean[c0:c1], batch_var[c0:c1], inv_std[c0:c1], gamma[c0:c1], beta[c0:c1]
    n = mean.shape[0]
    for j in range(n):
        mean[j] = 0.0
        var[j] = 0.0
    for i in range(B):
        row = a[i, c0:c1]
        for j in range(n):
            mean[j] += row[j]
    for j in range(n):
        mean[j] /= B
    for i in range(B):  # two passes, as the book: the variance of the centred values
        row = a[i, c0:c1]
        for j in range(n):
            d = row[j] - mean[j]
            var[j] += d * d
    for j in range(n):
        var[j] /= B
        inv[j] = 1.0 / np.sqrt(var[j] + BN_EPS)
    for i in range(B):
        row, xhat_row = a[i, c0:c1], normed[i, c0:c1]
        for j in range(n):
            xhat = (row[j] - mean[j]) * inv[j]
            xhat_row[j] = xhat
            row[j] = g[j] * xhat + bt[j]


@njit(cache=True)
def update_running_statistics(running_mean, running_var, batch_mean, batch_var):
    """running = 0.9·running + 0.1·batch, for the mean and the variance."""
    for j in range(running_mean.shape[0]):
        running_mean[j] = BN_MOMENTUM * running_mean[j] + (1 - BN_MOMENTUM) * batch_mean[j]
        running_var[j] = BN_MOMENTUM * running_var[j] + (1 - BN_MOMENTUM) * batch_var[j]


@njit(cache=True)
def batchnorm_test_transform(gamma, beta, running_mean, running_var, scale, shift):
    """Batch norm at test time as y = x·scale + shift: scale = γ/√(running var + ε),
    shift = β - running mean·scale (float64, per column)."""
    for j in range(gamma.shape[0]):
        scale[j] = gamma[j] / np.sqrt(running_var[j] + BN_EPS)
        shift[j] = beta[j] - running_mean[j] * scale[j]


@njit(cache=True, error_model="numpy")  # the division by B ≥ 2: no check per element
def _batchnorm_backward_columns(d, normed, inv_std, gamma, dgamma, dbeta, sums, c0, c1):
    """Columns c0:c1: d holds dL/dy for y = γ x̂ + β. Writes dγ = Σ_i d x̂ and dβ = Σ_i d, and turns
    d into dL/da = γ/(B·std) · (B·d - dβ - x̂·dγ), the gradient at the affine output.
    ``sums`` is float64 scratch with 2·n entries (n = d.shape[1])."""
    B, n = d.shape
    # Views of the columns, indexed from 0: no wrap-around select per element, the loops vectorise.
    s_dg, s_db = sums[c0:c1], sums[n + c0 : n + c1]
    inv, g, dg, db = inv_std[c0:c1], gamma[c0:c1], dgamma[c0:c1], dbeta[c0:c1]
    m = s_dg.shape[0]
    for j in range(m):
        s_dg[j] = 0.0
        s_db[j] = 0.0
    for i in range(B):
        row, xhat = d[i, c0:c1], normed[i, c0:c1]
        for j in range(m):
            s_dg[j] += row[j] * xhat[j]
            s_db[j] += row[j]
    for j in range(m):
        dg[j] = s_dg[j]
        db[j] = s_db[j]
    for i in range(B):
        row, xhat = d[i, c0:c1], normed[i, c0:c1]
        for j in range(m):
            row[j] = g[j] * inv[j] / B * (B * row[j] - s_db[j] - xhat[j] * s_dg[j])


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
