"""The network's forward pass for ``predict`` and ``accuracy``: both layers, row block by row block.

When layer 1 splits by rows, each row block goes through both layers
ROWS_PER_PASS rows at a time, so layer 2 reads hidden rows still in cache, and
``accuracy`` counts each block's correct rows right after its pass.
"""

import numpy as np
from numba import njit, prange

from ._blas import AS_IS, TRANSPOSED, gemm
from .layers import IDENTITY, RELU, _affine_block
from .partition import block_bounds, num_blocks, product_split

# Rows a forward block takes through every layer at a time (both networks' test-time forward):
# enough rows that OpenBLAS runs the products near its best (it gains up to 512 rows, MKL
# does not mind), few enough that a pass's activations stay in cache for the next layer.
ROWS_PER_PASS = 512


@njit(cache=True)
def _forward_pass(x, params, hid, z, one_zero):
    """z = relu(x W1 + b1) W2 + b2 for a few rows, serially (one_zero[0:2] = (1, 0)).

    hid (rows, H) is scratch: it holds the hidden activations *transposed*,
    (H, rows), because BLAS runs faster with the rows as its long dimension.
    """
    W1, b1, W2, b2 = params
    n, D = x.shape
    H, C = W2.shape
    if n == 0:
        return
    hid_t = hid.reshape(H, n)
    gemm(TRANSPOSED, TRANSPOSED, H, n, D, one_zero, W1, H, x, D, hid_t, n)
    for h in range(H):
        for i in range(n):
            v = hid_t[h, i] + b1[h]
            hid_t[h, i] = v
            if v < 0:  # not "v > 0 else 0": NaN must stay NaN
                hid_t[h, i] = 0
    gemm(TRANSPOSED, AS_IS, n, C, H, one_zero, hid_t, n, W2, C, z, C)
    for i in range(n):
        for c in range(C):
            z[i, c] += b2[c]


@njit(cache=True)
def _forward_rows(x, params, hid, z, one_zero, r0, r1):
    """z[r0:r1] for rows r0:r1 of x, ROWS_PER_PASS rows at a time (``_forward_pass``)."""
    for s in range(r0, r1, ROWS_PER_PASS):
        e = min(s + ROWS_PER_PASS, r1)
        _forward_pass(x[s:e], params, hid[s:e], z[s:e], one_zero)


@njit(parallel=True, cache=True)
def forward_unchecked(x, params, hid, z):
    """Logits of the whole network, z = relu(x W1 + b1) W2 + b2. Unchecked.

    params = (W1, b1, W2, b2) (a tuple or ``step.Params``); x (B,D), hid (B,H)
    scratch, z (B,C).
    """
    W1, b1, W2, b2 = params
    B, D = x.shape
    one_zero = np.zeros(2, x.dtype)
    one_zero[0] = 1
    split = product_split(B, D, W1.shape[1])
    if split[1] > 1:  # layer 1 by columns or tiles, then layer 2 by rows
        for k in prange(split[0] * split[1]):
            _affine_block(x, W1, b1, hid, one_zero, split, k, RELU)
        nr = num_blocks(B, B * W2.shape[0] * W2.shape[1])
        for k in prange(nr):
            _affine_block(hid, W2, b2, z, one_zero, (nr, 1), k, IDENTITY)
    else:  # by rows: each row block through both layers
        nb = split[0]
        for k in prange(nb):
            r0, r1 = block_bounds(B, nb, k)
            _forward_rows(x, params, hid, z, one_zero, r0, r1)
    return z


@njit(cache=True)
def _count_correct(z, t):
    """How many rows' first largest logit is at t (as np.argmax); -1 if a logit is not finite."""
    count = 0
    bad = False
    for i in range(z.shape[0]):
        best = 0
        for j in range(z.shape[1]):
            bad |= z[i, j] - z[i, j] != 0
            if z[i, j] > z[i, best]:
                best = j
        count += best == t[i]
    return -1 if bad else count


@njit(parallel=True, cache=True)
def correct_count_unchecked(x, t, params, hid, z):
    """How many rows of x the network classifies as t; -1 if a logit is not finite. Unchecked.

    The forward pass of ``forward_unchecked`` (same buffers); when layer 1
    splits by rows, each row block counts its rows right after its pass, while
    its logits are in cache.
    """
    W1 = params[0]
    B, D = x.shape
    split = product_split(B, D, W1.shape[1])
    if split[1] > 1:
        return _count_correct(forward_unchecked(x, params, hid, z), t)
    nb = split[0]
    one_zero = np.zeros(2, x.dtype)
    one_zero[0] = 1
    counts = np.empty(nb, np.int64)
    for k in prange(nb):
        r0, r1 = block_bounds(B, nb, k)
        _forward_rows(x, params, hid, z, one_zero, r0, r1)
        counts[k] = _count_correct(z[r0:r1], t[r0:r1])
    return -1 if (counts < 0).any() else counts.sum()
