"""The layers' raw kernels, each forward next to its backward, and the row-range pieces they share.

Affine (with the ReLU fused into the product's epilogue), its backward (the
ReLU mask fused into the input gradient), softmax-with-cross-entropy (loss and
gradient in one pass), and the SGD update. The ``*_unchecked`` kernels trust
their arguments; ``api`` has the checked versions. The ``_*`` pieces are serial
and work on one block of rows or columns: the fused step (``step``) and the
forward passes (``forward``) run them inside their own parallel regions.

Every function that calls a parallel kernel is itself ``parallel=True``, even
without a ``prange``: Numba can crash loading from its cache a non-parallel
cached function that calls a parallel one (numba#8578, #10184, #4807).
"""

import numpy as np
from numba import njit, prange

from ._blas import AS_IS, TRANSPOSED, gemm
from .activations import IDENTITY, RELU, SIGMOID, activation_backward
from .partition import block_bounds, num_blocks, product_block, product_split

# -- Affine (+ activation) ------------------------------------------------------


@njit(cache=True)
def _affine_block(x, W, b, out, alpha_beta, split, k, activation):
    """Block k of out = activation(x @ W + b); ``split`` = (row blocks, column blocks).

    alpha_beta[0:2] must hold (1, 0).
    """
    r0, r1, h0, h1 = product_block(x.shape[0], W.shape[1], split, k)
    _affine_rows(x, W, b, out, alpha_beta, r0, r1, h0, h1, activation)


# The element loops below run over views indexed from 0 (an index known not to be negative needs
# no wrap-around select, so the loops vectorise), and with error_model="numpy" (no zero check
# per division: the sigmoid's 1 + e^-v is at least 1).
@njit(cache=True, error_model="numpy")
def _affine_rows(x, W, b, out, alpha_beta, r0, r1, h0, h1, activation):
    """out[r0:r1, h0:h1] = activation(x[r0:r1] @ W[:, h0:h1] + b[h0:h1]); alpha_beta[0:2] = (1, 0)."""
    if r1 <= r0 or h1 <= h0:
        return
    D = x.shape[1]
    H = W.shape[1]
    gemm(AS_IS, AS_IS, r1 - r0, h1 - h0, D, alpha_beta, x[r0:], D, W[:, h0:], H, out[r0:, h0:], H)
    bias = b[h0:h1]
    for i in range(r0, r1):
        row = out[i, h0:h1]
        if activation == RELU:
            for j in range(row.shape[0]):
                v = row[j] + bias[j]
                row[j] = v
                if v < 0:  # not "v > 0 else 0": NaN must stay NaN
                    row[j] = 0  # a store, so the literal cannot widen v's type
        elif activation == SIGMOID:
            for j in range(row.shape[0]):
                row[j] = 1 / (1 + np.exp(-(row[j] + bias[j])))
        else:
            for j in range(row.shape[0]):
                row[j] += bias[j]


@njit(parallel=True, cache=True)
def _affine_forward(x, W, b, out, activation):
    B, D = x.shape
    split = product_split(B, D, W.shape[1])
    one_zero = np.zeros(2, x.dtype)
    one_zero[0] = 1
    for k in prange(split[0] * split[1]):
        _affine_block(x, W, b, out, one_zero, split, k, activation)
    return out


@njit(parallel=True, cache=True)
def affine_relu_forward_unchecked(x, W, b, out):
    """out = max(x @ W + b, 0). x (B,D), W (D,H), b (H,), out (B,H). Unchecked."""
    return _affine_forward(x, W, b, out, RELU)


@njit(parallel=True, cache=True)
def affine_forward_unchecked(x, W, b, out):
    """out = x @ W + b. x (B,D), W (D,H), b (H,), out (B,H). Unchecked."""
    return _affine_forward(x, W, b, out, IDENTITY)


@njit(cache=True)
def _weight_grad_block(x, dout, alpha_beta, out, split, k):
    """Block k of out := alpha * x.T @ dout + beta * out (alpha, beta = alpha_beta[0:2]), out split
    as ``split`` = (row blocks, column blocks).

    With alpha = -lr and beta = 1 on out = W this is the SGD update itself.
    """
    B, D = x.shape
    H = dout.shape[1]
    d0, d1, h0, h1 = product_block(D, H, split, k)
    if d1 > d0 and h1 > h0:
        gemm(TRANSPOSED, AS_IS, d1 - d0, h1 - h0, B, alpha_beta, x[:, d0:], D, dout[:, h0:], H, out[d0:, h0:], H)


@njit(cache=True)
def _input_grad_rows(dout, W, h, dh, r0, r1, alpha_beta, activation):
    """dh[r0:r1] = (dout[r0:r1] @ W.T) * activation'(.): affine backward with the derivative of
    the activation below fused, read from its output h: [h > 0] for RELU, h (1 - h) for SIGMOID.

    alpha_beta[0:2] must hold (1, 0).
    """
    _input_grad_block(dout, W, h, dh, r0, r1, 0, W.shape[0], alpha_beta, activation)


@njit(cache=True)
def _input_grad_block(dout, W, h, dh, r0, r1, c0, c1, alpha_beta, activation):
    """``_input_grad_rows`` for the block dh[r0:r1, c0:c1] (the product's columns: W's rows c0:c1)."""
    if r1 <= r0 or c1 <= c0:
        return
    H, C = W.shape
    gemm(AS_IS, TRANSPOSED, r1 - r0, c1 - c0, C, alpha_beta, dout[r0:], C, W[c0:], C, dh[r0:, c0:], H)
    for i in range(r0, r1):
        activation_backward(activation, dh[i, c0:c1], h[i, c0:c1])


@njit(cache=True)
def _column_sums(a, out, acc):
    """out[j] = sum_i a[i, j], each column summed in row order in float64.

    acc is float64 scratch with at least a.shape[1] entries. Walking the rows
    (not the columns) reads the array in memory order, so the loop vectorises.
    """
    n = a.shape[1]
    for j in range(n):
        acc[j] = 0.0
    for i in range(a.shape[0]):
        for j in range(n):
            acc[j] += a[i, j]
    for j in range(n):
        out[j] = acc[j]


@njit(parallel=True, cache=True)
def affine_relu_backward_unchecked(dout, h, W, dW, db, dh):
    """Backward through ``out = h @ W + b`` where h = relu(.) came from the layer below. Unchecked.

    dout (B,C) upstream gradient, h (B,H) the layer's input (a ReLU output),
    W (H,C). Writes dW = h.T @ dout (H,C), db = sum_rows(dout) (C,) and
    dh = (dout @ W.T) * [h > 0] (B,H): the gradient at the ReLU's *input*.
    """
    B, C = dout.shape
    H = W.shape[0]
    one_zero = np.zeros(2, dout.dtype)
    one_zero[0] = 1
    nb = num_blocks(B)
    for k in prange(nb):
        r0, r1 = block_bounds(B, nb, k)
        _input_grad_rows(dout, W, h, dh, r0, r1, one_zero, RELU)
    gemm(TRANSPOSED, AS_IS, H, C, B, one_zero, h, H, dout, C, dW, C)
    _column_sums(dout, db, np.empty(db.shape[0]))
    return dW, db, dh


@njit(parallel=True, cache=True)
def affine_backward_params_unchecked(x, dout, dW, db):
    """Parameter gradients of ``out = x @ W + b`` with no input gradient (the first layer). Unchecked.

    x (B,D) the layer input, dout (B,H) the upstream gradient. Writes
    dW = x.T @ dout (D,H) and db = sum_rows(dout) (H,). Each block of dW is
    one BLAS call reading x and dout in place.
    """
    B, D = x.shape
    split = product_split(D, B, dout.shape[1])
    one_zero = np.zeros(2, x.dtype)
    one_zero[0] = 1
    for k in prange(split[0] * split[1]):
        _weight_grad_block(x, dout, one_zero, dW, split, k)
    _column_sums(dout, db, np.empty(db.shape[0]))
    return dW, db


# -- Softmax with cross-entropy -------------------------------------------------


@njit(cache=True)
def _row_max(z, i):
    """max_j z[i, j]: the shift that keeps exp from overflowing."""
    m = z[i, 0]
    for j in range(1, z.shape[1]):
        if z[i, j] > m:
            m = z[i, j]
    return m


@njit(cache=True)
def _softmax_ce_row(z, t, dz, i, inv_batch):
    """Row ``i``: dz[i] = (softmax(z[i]) - onehot(t[i])) / B; returns -log softmax(z[i])[t[i]] (float64)."""
    C = z.shape[1]
    m = _row_max(z, i)
    total = 0.0
    for j in range(C):
        e = np.exp(z[i, j] - m)
        dz[i, j] = e
        total += e
    scale = inv_batch / total
    for j in range(C):
        dz[i, j] = dz[i, j] * scale
    dz[i, t[i]] -= inv_batch
    return np.log(total) + m - z[i, t[i]]


@njit(parallel=True, cache=True)
def softmax_cross_entropy_unchecked(z, t, dz):
    """Mean cross-entropy of logits z (B,C) against labels t (B,); writes dz. Unchecked.

    loss = -(1/B) sum_i log softmax(z_i)[t_i], by log-sum-exp with the row max
    subtracted; dz = (softmax(z) - onehot(t)) / B. Returns the loss as float64.
    """
    B = z.shape[0]
    inv_batch = 1.0 / B
    row_loss = np.empty(B)
    for i in prange(B):
        row_loss[i] = _softmax_ce_row(z, t, dz, i, inv_batch)
    loss = 0.0
    for i in range(B):  # fixed order, so the loss does not depend on the thread count
        loss += row_loss[i]
    return loss * inv_batch


# -- SGD --------------------------------------------------------------------------


@njit(cache=True)
def _sgd_vector(param, grad, lr):
    """param -= lr * grad for 1-D arrays (flatten 2-D ones with reshape: a view)."""
    for j in range(param.shape[0]):
        param[j] -= lr * grad[j]


@njit(parallel=True, cache=True)
def sgd_update_unchecked(param, grad, lr):
    """param -= lr * grad, in place, for 1-D or 2-D arrays of one shape. Unchecked."""
    flat_p = param.reshape(param.size)
    flat_g = grad.reshape(grad.size)
    n = flat_p.size
    nb = num_blocks(n)
    for k in prange(nb):
        r0, r1 = block_bounds(n, nb, k)
        _sgd_vector(flat_p[r0:r1], flat_g[r0:r1], lr)
    return param
