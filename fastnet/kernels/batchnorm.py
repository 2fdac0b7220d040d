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

from .activations import activation_backward, activation_forward

BN_EPS = 10e-7  # the book's ε (1e-6) under the square root

# rows of the float64 statistics (STATS, channels) kept per batch-norm layer in the workspace
MEAN, VAR, INV_STD, SCALE, SHIFT, SUM_DG, SUM_DB = range(7)
STATS = 7


@njit(cache=True, error_model="numpy")  # divisions by N ≥ 1 and by √(var + ε) > 0: no checks
def batchnorm_train_channels(h, out, normed, gamma, beta, stats, S, c0, c1, act):
    """Channels c0:c1 of out = act(γ·x̂ + β) for rows h (B, C·S), with the batch's statistics;
    writes x̂ into ``normed`` (B, C·S) and mean, variance and 1/std into ``stats`` (STATS, C)."""
    B = h.shape[0]
    mean, var, inv = stats[MEAN, c0:c1], stats[VAR, c0:c1], stats[INV_STD, c0:c1]
    g, bt = gamma[c0:c1], beta[c0:c1]
    n, a0, a1 = c1 - c0, c0 * S, c1 * S
    for c in range(n):
        mean[c] = 0.0
        var[c] = 0.0
    for i in range(B):
        row = h[i, a0:a1]
        if S == 1:  # per feature: along the row, the loop vectorises
            for c in range(n):
                mean[c] += row[c]
        else:
            for c in range(n):
                s = 0.0
                for p in range(S):
                    s += row[c * S + p]
                mean[c] += s
    for c in range(n):
        mean[c] /= B * S
    for i in range(B):  # two passes, as the book: the variance of the centred values
        row = h[i, a0:a1]
        for c in range(n):
            s, m = 0.0, mean[c]
            for p in range(S):
                d = row[c * S + p] - m
                s += d * d
            var[c] += s
    for c in range(n):
        var[c] /= B * S
        inv[c] = 1.0 / np.sqrt(var[c] + BN_EPS)
    for i in range(B):
        row, xhat_row, dst = h[i, a0:a1], normed[i, a0:a1], out[i, a0:a1]
        for c in range(n):
            m, k, gc, bc = mean[c], inv[c], g[c], bt[c]
            for p in range(S):
                xhat = (row[c * S + p] - m) * k
                xhat_row[c * S + p] = xhat
                dst[c * S + p] = gc * xhat + bc
        activation_forward(act, dst)


@njit(cache=True, error_model="numpy")
def batchnorm_test_channels(h, out, gamma, beta, running, stats, S, c0, c1, act):
    """Channels c0:c1 of out = act(x·scale + shift), scale = γ/√(running var + ε), shift = β −
    running mean·scale (float64, kept in ``stats``); ``running`` (2, C): mean and variance."""
    scale, shift = stats[SCALE, c0:c1], stats[SHIFT, c0:c1]
    n, a0, a1 = c1 - c0, c0 * S, c1 * S
    for c in range(n):
        scale[c] = gamma[c0 + c] / np.sqrt(running[1, c0 + c] + BN_EPS)
        shift[c] = beta[c0 + c] - running[0, c0 + c] * scale[c]
    for i in range(h.shape[0]):
        row, dst = h[i, a0:a1], out[i, a0:a1]
        for c in range(n):
            k, s = scale[c], shift[c]
            for p in range(S):
                dst[c * S + p] = row[c * S + p] * k + s
        activation_forward(act, dst)


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
    for i in range(B):
        row, xhat, dst = d[i, a0:a1], normed[i, a0:a1], dh[i, a0:a1]
        for c in range(n):
            k = gamma[c0 + c] * inv[c] / N
            sg, sb = s_dg[c], s_db[c]
            for p in range(S):
                dst[c * S + p] = k * (N * row[c * S + p] - sb - xhat[c * S + p] * sg)
        activation_backward(below, dst, h[i, a0:a1])


@njit(cache=True)
def move_running_statistics(running, stats, momentum):
    """running (2, C) = momentum·running + (1 − momentum)·(the batch's mean, variance)."""
    for c in range(running.shape[1]):
        running[0, c] = momentum * running[0, c] + (1 - momentum) * stats[MEAN, c]
        running[1, c] = momentum * running[1, c] + (1 - momentum) * stats[VAR, c]
