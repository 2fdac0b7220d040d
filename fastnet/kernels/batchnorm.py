"""Batch normalization as a layer kind of the engine, forward beside backward.

Input rows (B, C·S): C channels of S values each (S = H·W after a convolution, S = 1 after an
affine layer, whose C units are then the features). Each channel is normalised over its B·S
values: per feature after an affine layer, as the book's ``BatchNormalization``; per channel
over N·H·W after a convolution, as convnets use it (and PyTorch's ``BatchNorm2d``; the book's
class would flatten the image and normalise each (c, h, w) on its own). Reference twins:
``fastnet.reference.BatchNormalization`` (per feature) and ``SpatialBatchNormalization``
(per channel).

Training: y = γ·x̂ + β with x̂ = (x − mean)/√(var + ε), the batch's mean and biased variance
(÷ B·S), summed in float64 in a fixed order (rows, then a channel's values); x̂ is kept for the
backward pass, the statistics for the running ones (running = m·running + (1 − m)·batch, the
book's m = 0.9, moved by the engine after a training pass). Test time: y = x·scale + shift from
the running statistics. The layer's activation follows y. ε = 10e-7, the book's.

Backward, from d = dL/dy: dγ = Σ d·x̂, dβ = Σ d, dx = γ/(N·std)·(N·d − dβ − x̂·dγ) with N = B·S,
times the derivative of the activation below. Each parallel block owns a range of channels.
"""

import numpy as np
from numba import njit

from .activations import IDENTITY, RELU, activate, activation_backward

BN_EPS = 10e-7  # the book's ε (1e-6) under the square root

# rows of the float64 statistics (STATS, channels) kept per batch-norm layer in the workspace
MEAN, VAR, INV_STD, SCALE, SHIFT, SUM_DG, SUM_DB = range(7)
STATS = 7


@njit(cache=True, error_model="numpy")
def _add_sums(row, sums, S):
    """sums[c] += Σ_p row[c·S + p] for every channel c of row. One value per channel (S = 1, after
    an affine layer): along the row, so the loop vectorises."""
    if S == 1:
        for c in range(sums.shape[0]):
            sums[c] += row[c]
        return
    for c in range(sums.shape[0]):
        s = 0.0
        for p in range(S):
            s += row[c * S + p]
        sums[c] += s


@njit(cache=True, error_model="numpy")
def _add_squares(row, sums, centre, S):
    """sums[c] += Σ_p (row[c·S + p] − centre[c])² for every channel c of row."""
    if S == 1:
        for c in range(sums.shape[0]):
            v = row[c] - centre[c]
            sums[c] += v * v
        return
    for c in range(sums.shape[0]):
        s, m = 0.0, centre[c]
        for p in range(S):
            v = row[c * S + p] - m
            s += v * v
        sums[c] += s


@njit(cache=True, error_model="numpy")
def _normalise_row(row, xhat_row, dst, mean, inv, g, bt, S, act):
    """x̂ = (x − mean)·(1/std) into xhat_row and y = act(γ·x̂ + β) into dst, in one pass, for
    every channel of one row (the loops per activation, so that each vectorises)."""
    if S == 1 and act == RELU:
        for c in range(mean.shape[0]):
            xh = (row[c] - mean[c]) * inv[c]
            xhat_row[c] = xh
            dst[c] = activate(RELU, g[c] * xh + bt[c])
    elif S == 1 and act == IDENTITY:
        for c in range(mean.shape[0]):
            xh = (row[c] - mean[c]) * inv[c]
            xhat_row[c] = xh
            dst[c] = g[c] * xh + bt[c]
    else:
        for c in range(mean.shape[0]):
            m, k, gc, bc = mean[c], inv[c], g[c], bt[c]
            for p in range(S):
                xh = (row[c * S + p] - m) * k
                xhat_row[c * S + p] = xh
                dst[c * S + p] = activate(act, gc * xh + bc)


@njit(cache=True, error_model="numpy")
def _affine_map(src, dst, scale, shift, S, act):
    """dst[c·S + p] = act(src[c·S + p]·scale[c] + shift[c]) for every channel c, in float64 (scale,
    shift float64)."""
    if S == 1:  # one value per channel: along the row, a loop per activation so that each vectorises
        n = scale.shape[0]
        if act == RELU:
            for c in range(n):
                dst[c] = activate(RELU, src[c] * scale[c] + shift[c])
        elif act == IDENTITY:
            for c in range(n):
                dst[c] = src[c] * scale[c] + shift[c]
        else:
            for c in range(n):
                dst[c] = activate(act, src[c] * scale[c] + shift[c])
        return
    for c in range(scale.shape[0]):
        k, b = scale[c], shift[c]
        for p in range(S):
            dst[c * S + p] = activate(act, src[c * S + p] * k + b)


@njit(cache=True, error_model="numpy")  # divisions by N ≥ 1 and by √(var + ε) > 0: no checks
def batchnorm_train_channels(h, out, normed, gamma, beta, stats, S, c0, c1, act):
    """Channels c0:c1 of out = act(γ·x̂ + β) for rows h (B, C·S), with the batch's statistics;
    writes x̂ into ``normed`` (B, C·S) and mean, variance and 1/std into ``stats`` (STATS, C)."""
    B = h.shape[0]
    mean, var, inv = stats[MEAN, c0:c1], stats[VAR, c0:c1], stats[INV_STD, c0:c1]
    n, a0, a1 = c1 - c0, c0 * S, c1 * S
    for c in range(n):
        mean[c], var[c] = 0.0, 0.0
    for i in range(B):
        _add_sums(h[i, a0:a1], mean, S)
    for c in range(n):
        mean[c] /= B * S
    for i in range(B):  # two passes, as the book: the variance of the centred values
        _add_squares(h[i, a0:a1], var, mean, S)
    for c in range(n):
        var[c] /= B * S
        inv[c] = 1.0 / np.sqrt(var[c] + BN_EPS)
    g, bt = gamma[c0:c1], beta[c0:c1]
    for i in range(B):
        _normalise_row(h[i, a0:a1], normed[i, a0:a1], out[i, a0:a1], mean, inv, g, bt, S, act)


@njit(cache=True)
def batchnorm_test_transform(gamma, beta, running_mean, running_var, stats):
    """Batch norm at test time as y = x·scale + shift, per channel into ``stats`` (float64):
    scale = γ/√(running var + ε), shift = β − running mean·scale."""
    for c in range(gamma.shape[0]):
        stats[SCALE, c] = gamma[c] / np.sqrt(running_var[c] + BN_EPS)
        stats[SHIFT, c] = beta[c] - running_mean[c] * stats[SCALE, c]


@njit(cache=True, error_model="numpy")
def batchnorm_test_rows(h, out, stats, S, r0, r1, c0, c1, act):
    """Rows r0:r1, channels c0:c1 of out = act(x·scale + shift) (``batchnorm_test_transform``)."""
    scale, shift, a0, a1 = stats[SCALE, c0:c1], stats[SHIFT, c0:c1], c0 * S, c1 * S
    for i in range(r0, r1):
        _affine_map(h[i, a0:a1], out[i, a0:a1], scale, shift, S, act)


@njit(cache=True, error_model="numpy")
def batchnorm_test_in_place(h, stats, S, r0, r1, act):
    """Rows r0:r1 of h = act(h·scale + shift), in place (one array: no aliasing to rule out, so the
    loops vectorise), every channel."""
    scale, shift = stats[SCALE], stats[SHIFT]
    for i in range(r0, r1):
        row = h[i]
        if S == 1 and act == RELU:
            for c in range(scale.shape[0]):
                row[c] = activate(RELU, row[c] * scale[c] + shift[c])
        elif S == 1 and act == IDENTITY:
            for c in range(scale.shape[0]):
                row[c] = row[c] * scale[c] + shift[c]
        else:
            for c in range(scale.shape[0]):
                k, b = scale[c], shift[c]
                for p in range(S):
                    row[c * S + p] = activate(act, row[c * S + p] * k + b)


@njit(cache=True, error_model="numpy")  # the division by N ≥ 1: no check per element
def batchnorm_backward_channels(d, normed, gamma, stats, dgamma, dbeta, dh, h, below, S, c0, c1):
    """Channels c0:c1: dγ, dβ from d = dL/dy (B, C·S) and x̂; if dh has rows, dh = dL/dx ⊙
    act'(below) read from h (the layer's input)."""
    B = d.shape[0]
    s_dg, s_db, inv = stats[SUM_DG, c0:c1], stats[SUM_DB, c0:c1], stats[INV_STD, c0:c1]
    n, a0, a1 = c1 - c0, c0 * S, c1 * S
    for c in range(n):
        s_dg[c] = 0.0
        s_db[c] = 0.0
    for i in range(B):
        row, xhat = d[i, a0:a1], normed[i, a0:a1]
        if S == 1:  # along the row: the loop vectorises
            for c in range(n):
                s_dg[c] += row[c] * xhat[c]
                s_db[c] += row[c]
            continue
        for c in range(n):
            sg = sb = 0.0
            for p in range(S):
                sg += row[c * S + p] * xhat[c * S + p]
                sb += row[c * S + p]
            s_dg[c] += sg
            s_db[c] += sb
    for c in range(n):
        dgamma[c0 + c] = s_dg[c]
        dbeta[c0 + c] = s_db[c]
    if dh.shape[0] == 0:
        return
    N = B * S
    k = stats[SCALE, c0:c1]  # scratch: γ/(N·std) per channel (the mean and variance stay: the running ones need them)
    for c in range(n):
        k[c] = gamma[c0 + c] * inv[c] / N
    for i in range(B):
        row, xhat, dst = d[i, a0:a1], normed[i, a0:a1], dh[i, a0:a1]
        if S == 1:
            for c in range(n):
                dst[c] = k[c] * (N * row[c] - s_db[c] - xhat[c] * s_dg[c])
        else:
            for c in range(n):
                kc, sg, sb = k[c], s_dg[c], s_db[c]
                for p in range(S):
                    dst[c * S + p] = kc * (N * row[c * S + p] - sb - xhat[c * S + p] * sg)
        activation_backward(below, dst, h[i, a0:a1])


@njit(cache=True)
def move_running_statistics(running_mean, running_var, stats, momentum):
    """running = momentum·running + (1 − momentum)·batch, for the mean and the variance."""
    for c in range(running_mean.shape[0]):
        running_mean[c] = momentum * running_mean[c] + (1 - momentum) * stats[MEAN, c]
        running_var[c] = momentum * running_var[c] + (1 - momentum) * stats[VAR, c]
