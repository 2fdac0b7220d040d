"""The fused training step of the two-layer network, and many steps in one call.

One step, as data (B rows, D inputs, H hidden units, C classes)::

    X[idx] --gather--> xb (B,D)            8-bit codes or floats; NaN rows flagged
    xb, W1, b1 --affine+relu--> hid (B,H)
    hid, W2, b2 --affine--> z (B,C)
    z, t --softmax-CE--> row losses, dz    one pass per row
    dz --> dW2 = hidᵀ dz, db2 = Σ dz, dhid = (dz W2ᵀ) ⊙ [hid > 0]
    dhid --> W1 -= lr · xbᵀ dhid (fused into BLAS), db1 = Σ dhid
    W2, b1, b2 -= lr · their gradients

The buffers travel as named tuples: ``Params`` (the weights, updated in
place), ``Grads`` (written when lr == 0) and ``StepWork`` (scratch for one
batch size, from ``new_step_work``). Nothing is allocated per step. Python
callers may pass them as plain tuples in the same order (``tuple(work)``):
Numba dispatches plain tuples faster, and the step names them on entry.
"""

from collections import namedtuple

import numpy as np
from numba import njit, prange

from .. import _cores
from ._blas import AS_IS, TRANSPOSED, gemm, prefetch_row
from .codes import _gather_rows, gather_unchecked
from .layers import IDENTITY, RELU, _affine_block, _input_grad_rows, _sgd_vector, _softmax_ce_row, _weight_grad_block
from .partition import block_bounds, num_blocks, product_split

Params = namedtuple("Params", "W1 b1 W2 b2")
Grads = namedtuple("Grads", "dW1 db1 dW2 db2")
StepWork = namedtuple(
    "StepWork",
    [
        "xb",  # (B, D) the gathered inputs
        "tb",  # (B,) int64, the gathered labels
        "hid",  # (B, H) hidden activations
        "z",  # (B, C) logits
        "dz",  # (B, C) their gradient
        "dhid",  # (B, H) the gradient at the ReLU's input
        "row_loss",  # (B,) float64, each row's loss
        "row_check",  # (B,) float64, 0 where the gathered row is finite
        "alpha_beta",  # (4,) BLAS's alpha, beta: (1, 0) for plain products, then (-lr, 1) for the W1 update
        "parts",  # (blocks, H, C) each row block's share of dW2
        "col_parts",  # (blocks, H + C) float64, each row block's share of db1, db2
    ],
)

# Next-batch bytes a block prefetches at most: a fraction of a core's L2, so that the
# prefetched rows do not evict what the W1 update is using.
PREFETCH_BYTES = 1 << 17


def new_step_work(batch, input_size, hidden_size, output_size, dtype):
    """A ``StepWork`` for batches of ``batch`` rows."""
    B, D, H, C = batch, input_size, hidden_size, output_size
    return StepWork(
        xb=np.empty((B, D), dtype),
        tb=np.empty(B, np.int64),
        hid=np.empty((B, H), dtype),
        z=np.empty((B, C), dtype),
        dz=np.empty((B, C), dtype),
        dhid=np.empty((B, H), dtype),
        row_loss=np.empty(B),
        row_check=np.empty(B),
        alpha_beta=np.zeros(4, dtype),
        parts=np.empty((_cores.BLOCKS, H, C), dtype),
        col_parts=np.empty((_cores.BLOCKS, H + C)),
    )


@njit(cache=True)
def named(params, grads, work):
    """The three buffer tuples as ``Params``, ``Grads``, ``StepWork`` (plain or named tuples in)."""
    return Params(*params), Grads(*grads), StepWork(*work)


@njit(cache=True)
def _layer2_rows(params, work, inv_batch, nb, k):
    """Row block k of layer 2 and the loss: z = hid W2 + b2, the softmax-CE row losses and dz,
    dhid = (dz W2ᵀ)⊙[hid>0]; and, while these rows are in cache, the block's share of the
    layer-2 weight gradient, parts[k] = hid[r0:r1]ᵀ dz[r0:r1], and of the bias gradients,
    col_parts[k] = column sums of dhid and dz over its rows. work.alpha_beta[0:2] = (1, 0)."""
    W2 = params.W2
    hid, dz, dhid, col_parts = work.hid, work.dz, work.dhid, work.col_parts
    B, H = hid.shape
    C = dz.shape[1]
    r0, r1 = block_bounds(B, nb, k)
    _affine_block(hid, W2, params.b2, work.z, work.alpha_beta, (nb, 1), k, IDENTITY)
    for i in range(r0, r1):
        work.row_loss[i] = _softmax_ce_row(work.z, work.tb, dz, i, inv_batch)
    _input_grad_rows(dz, W2, hid, dhid, r0, r1, work.alpha_beta, RELU)
    if r1 > r0:
        gemm(TRANSPOSED, AS_IS, H, C, r1 - r0, work.alpha_beta, hid[r0:], H, dz[r0:], C, work.parts[k], C)
    else:
        work.parts[k][:, :] = 0
    for j in range(H + C):
        col_parts[k, j] = 0.0
    for i in range(r0, r1):
        for j in range(H):
            col_parts[k, j] += dhid[i, j]
        for j in range(C):
            col_parts[k, H + j] += dz[i, j]


@njit(cache=True)
def _sum_parts(work, nparts, grads):
    """dW2, db1, db2 from the row blocks' shares, summed in block order (float64)."""
    parts, col_parts = work.parts, work.col_parts
    dW2, db1, db2 = grads.dW2, grads.db1, grads.db2
    H, C = dW2.shape
    for h in range(H):
        for c in range(C):
            s = 0.0
            for k in range(nparts):
                s += parts[k, h, c]
            dW2[h, c] = s
    for j in range(H + C):
        s = 0.0
        for k in range(nparts):
            s += col_parts[k, j]
        if j < H:
            db1[j] = s
        else:
            db2[j - H] = s


@njit(cache=True)
def _prefetch_block(X, rows, nb, k):
    """Prefetch the rows of X that block k of nb will gather from ``rows``, if they fit PREFETCH_BYTES."""
    r0, r1 = block_bounds(rows.shape[0], nb, k)
    if (r1 - r0) * X.shape[1] * X.itemsize <= PREFETCH_BYTES:
        for i in range(r0, r1):
            prefetch_row(X, rows[i])


@njit(parallel=True, cache=True)
def train_step_unchecked(X, T, idx, params, grads, work, lr, x_divisor=1.0, next_idx=None):
    """One minibatch step on rows ``idx`` of (X, T); returns the loss before the update. Unchecked.

    X is float (the net's dtype), or uint8 pixel codes that the step reads as
    code / x_divisor in the net's dtype (``codes.input_value``); x_divisor is
    ignored for a float X.

    ``params`` (a ``Params``) is updated in place by ``-= lr * grad`` unless
    lr == 0 (gradients only: then ``grads``, a ``Grads``, receives all of them)
    or the loss is not finite (then nothing is updated, so the weights stay
    the last finite ones). When updating, dW1 is never stored: the update is
    fused into the BLAS call (W1 := W1 - lr * xbᵀ dhid). ``work`` is a
    ``StepWork`` for B = len(idx) rows.

    Two parallel regions when layer 1 splits by rows only: gather, both
    layers, softmax-CE and the hidden gradient, row block by row block; then
    W1, by blocks. Four when it splits by columns too: gather; layer 1; the
    per-row rest; W1. The layer-2 weight gradient and both bias gradients are summed
    per row block inside the per-row region and then over the blocks, in block
    order.

    next_idx, if given, are the rows the next step will gather: the W1 region
    asks the cache for them (``prefetch_row``) while BLAS updates W1. A hint
    only: results do not depend on it.
    """
    params, grads, work = named(params, grads, work)
    return _train_step(X, T, idx, params, grads, work, lr, x_divisor, next_idx)


@njit(parallel=True, cache=True)
def _train_step(X, T, idx, params, grads, work, lr, x_divisor, next_idx):
    """``train_step_unchecked`` on named buffers. (Numba's parallel regions need a named
    tuple they use to be an argument of the function, not a value made inside it.)"""
    W1 = params.W1
    xb, dhid, alpha_beta = work.xb, work.dhid, work.alpha_beta
    B = idx.shape[0]
    D = X.shape[1]
    inv_batch = 1.0 / B

    alpha_beta[0] = 1  # (1, 0): plain products
    alpha_beta[1] = 0
    split = product_split(B, D, W1.shape[1])
    if split[1] == 1:
        # Layer 1 splits by rows: then everything up to the weight gradients is
        # row-local, and one region does it, each block on its own rows.
        nb = split[0]
        for k in prange(nb):
            r0, r1 = block_bounds(B, nb, k)
            _gather_rows(X, T, idx, xb, work.tb, work.row_check, r0, r1, x_divisor)
            _affine_block(xb, W1, params.b1, work.hid, alpha_beta, split, k, RELU)
            _layer2_rows(params, work, inv_batch, nb, k)
        nparts = nb
    else:
        gather_unchecked(X, T, idx, xb, work.tb, work.row_check, x_divisor)
        for k in prange(split[0] * split[1]):
            _affine_block(xb, W1, params.b1, work.hid, alpha_beta, split, k, RELU)
        nr = num_blocks(B)
        for k in prange(nr):
            _layer2_rows(params, work, inv_batch, nr, k)
        nparts = nr
    for i in range(B):
        if work.row_check[i] != 0.0:
            raise ValueError("train_step: x has NaN or infinity in row " + str(idx[i]))

    loss = 0.0
    for i in range(B):  # fixed order: the loss does not depend on the thread count
        loss += work.row_loss[i]
    loss *= inv_batch
    if lr != 0 and not np.isfinite(loss):
        return loss  # diverged: leave the weights as they were, the last finite ones

    if lr != 0:  # W1 := W1 - lr * xbᵀ dhid, in the BLAS call
        alpha_beta[2] = -lr
        alpha_beta[3] = 1
        target = W1
    else:  # dW1 := xbᵀ dhid
        alpha_beta[2] = 1
        alpha_beta[3] = 0
        target = grads.dW1
    split = product_split(D, B, W1.shape[1])
    nd = split[0] * split[1]
    for k in prange(nd):
        if next_idx is not None:
            _prefetch_block(X, next_idx, nd, k)
        _weight_grad_block(xb, dhid, alpha_beta[2:], target, split, k)

    _sum_parts(work, nparts, grads)
    if lr != 0:
        _sgd_vector(params.W2.reshape(params.W2.size), grads.dW2.reshape(grads.dW2.size), lr)
        _sgd_vector(params.b2, grads.db2, lr)
        _sgd_vector(params.b1, grads.db1, lr)
    return loss


@njit(parallel=True, cache=True)
def train_steps_unchecked(X, T, batches, params, grads, work, lr, losses, x_divisor=1.0):
    """``train_step_unchecked`` on batches[0], batches[1], ... in turn; losses[s] = step s's loss.

    One call for many steps: the training loop's path, with no return to
    Python between steps. Each step prefetches the next batch's rows. Stops
    after a step whose loss is not finite (that step leaves the weights
    untouched). Returns the number of steps taken.
    """
    params, grads, work = named(params, grads, work)
    n = batches.shape[0]
    for s in range(n):
        next_idx = batches[s + 1] if s + 1 < n else batches[s][:0]
        losses[s] = _train_step(X, T, batches[s], params, grads, work, lr, x_divisor, next_idx)
        if not np.isfinite(losses[s]):
            return s + 1
    return n
