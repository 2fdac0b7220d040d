"""K networks of one architecture trained together on one minibatch (``NetStack``): one call.

A small network's step is many small products with a synchronisation between
each; K of them fed the same batch need none between them. So the stacked
step gathers the batch once (a parallel region over its rows) and then runs
the K members' whole steps in one parallel loop over the members, each
member's step serial and alone on its core: the serial twin of
``multilayer._step`` (same pieces, one block each). A member whose loss stops
being finite is frozen (``active[k]`` cleared) and the others go on.

Member k's parameters, gradient and optimizer state are row k of (K, P)
arrays, in ``multilayer``'s flat layout; its per-member buffers are row k of
(K, ...) arrays (``StackWork``).
"""

from collections import namedtuple

import numpy as np
from numba import njit, prange

from .codes import _gather_rows
from .forward import _count_correct
from .layers import IDENTITY, _affine_block, _column_sums, _input_grad_rows, _softmax_ce_row, _weight_grad_block
from .multilayer import (
    _batchnorm_test_transforms,
    _test_rows,
    add_decay,
    batchnorm_params,
    hidden_offset,
    layer_params,
    layer_rows,
    weight_decay_loss,
)
from .optimizer import next_rate, update_range
from .partition import block_bounds, num_blocks
from .regularize import (
    NO_ARRAY,
    _activate_drop,
    _batchnorm_backward_columns,
    _batchnorm_train_columns,
    update_running_statistics,
)

StackWork = namedtuple(
    "StackWork",
    [
        "x",  # (B, D) the gathered inputs, shared
        "tb",  # (B,) int64 the gathered labels, shared
        "row_check",  # (B,) float64, 0 where the gathered row is finite
        "acts",  # (K, B·(n_1 + ... + n_L)): each member's layer outputs, as ``multilayer``'s acts
        "deltas",  # (K, same): their gradients
        "normed",  # (K, same) batch norm's x̂ ((K, 0) without batch norm)
        "batch_stats",  # (K, 3, hidden units) float64
        "col_acc",  # (K, 2·max(sizes)) float64 scratch
        "alpha_beta",  # (2,) BLAS's (1, 0)
    ],
)


def new_stack_work(members, batch, sizes, dtype, batchnorm=False):
    """A ``StackWork`` for ``members`` networks of these ``sizes`` and batches of ``batch`` rows."""
    rows = batch * int(sum(sizes[1:]))
    alpha_beta = np.zeros(2, dtype)
    alpha_beta[0] = 1
    return StackWork(
        x=np.empty((batch, sizes[0]), dtype), tb=np.empty(batch, np.int64), row_check=np.empty(batch),
        acts=np.empty((members, rows), dtype), deltas=np.empty((members, rows), dtype),
        normed=np.empty((members, rows if batchnorm else 0), dtype),
        batch_stats=np.empty((members, 3, int(sum(sizes[1:-1])))), col_acc=np.empty((members, 2 * int(max(sizes)))),
        alpha_beta=alpha_beta,
    )  # fmt: skip


@njit(cache=True)
def _member_step(x, tb, flat, grad, sizes, activation, decay, acts, deltas, normed, batch_stats, col_acc, alpha_beta,
                 batchnorm, dropout, seed, step, running_mean, running_var, kind, hyper, s1, s2):  # fmt: skip
    """One member's whole step on the gathered batch, serial; returns its loss (nothing changes
    if the loss is not finite)."""
    B = x.shape[0]
    L = sizes.shape[0] - 1
    one_block = (1, 1)
    inv_batch = 1.0 / B
    h = x
    for l in range(1, L + 1):
        W, b = layer_params(flat, sizes, l)
        out = layer_rows(acts, sizes, B, l)
        n = sizes[l]
        if l == L:
            _affine_block(h, W, b, out, alpha_beta, one_block, 0, IDENTITY)
        elif not batchnorm:
            _affine_block(h, W, b, out, alpha_beta, one_block, 0, activation)
            if dropout >= 0:
                _activate_drop(out, 0, B, 0, n, IDENTITY, dropout, True, seed, step, l, NO_ARRAY, NO_ARRAY)
        else:
            _affine_block(h, W, b, out, alpha_beta, one_block, 0, IDENTITY)
            gamma, beta = batchnorm_params(flat, sizes, l)
            o = hidden_offset(sizes, l)
            mean, var, inv_std = batch_stats[0, o : o + n], batch_stats[1, o : o + n], batch_stats[2, o : o + n]
            _batchnorm_train_columns(out, layer_rows(normed, sizes, B, l), mean, var, inv_std, gamma, beta, 0, n)
            _activate_drop(out, 0, B, 0, n, activation, dropout, True, seed, step, l, NO_ARRAY, NO_ARRAY)
        h = out
    dz = layer_rows(deltas, sizes, B, L)
    loss = 0.0
    for i in range(B):
        loss += _softmax_ce_row(h, tb, dz, i, inv_batch)
    loss *= inv_batch
    if decay != 0:
        loss += weight_decay_loss(flat, sizes, decay)
    if not np.isfinite(loss):
        return loss
    for l in range(L, 0, -1):
        d = layer_rows(deltas, sizes, B, l)
        n = sizes[l]
        if l < L and batchnorm:
            gamma, _ = batchnorm_params(flat, sizes, l)
            dgamma, dbeta = batchnorm_params(grad, sizes, l)
            o = hidden_offset(sizes, l)
            _batchnorm_backward_columns(d, layer_rows(normed, sizes, B, l), batch_stats[2, o : o + n], gamma,
                                        dgamma, dbeta, col_acc, 0, n)  # fmt: skip
        h = x if l == 1 else layer_rows(acts, sizes, B, l - 1)
        W, _ = layer_params(flat, sizes, l)
        dW, db = layer_params(grad, sizes, l)
        _weight_grad_block(h, d, alpha_beta, dW, one_block, 0)
        if decay != 0:
            add_decay(dW, W, decay)
        _column_sums(d, db, col_acc)
        if l > 1:
            _input_grad_rows(d, W, h, layer_rows(deltas, sizes, B, l - 1), 0, B, alpha_beta, activation)
    if batchnorm:
        update_running_statistics(running_mean, running_var, batch_stats[0], batch_stats[1])
    update_range(kind, flat, grad, s1, s2, hyper, next_rate(kind, hyper), 0, flat.shape[0])
    return loss


@njit(parallel=True, cache=True)
def stack_steps_unchecked(X, T, batches, flats, grads, sizes, activation, decays, work, batchnorm, dropout, seeds,
                          first_steps, running_means, running_vars, kinds, hypers, s1, s2, active, losses,
                          x_divisor):  # fmt: skip
    """For each row of ``batches``: gather it once, then one step of every active member.
    losses[s, k] = member k's loss at step s (NaN once frozen); a member whose loss is not finite
    is left as it was and frozen (active[k] = False). Member k's dropout masks at step s are
    numbered first_steps[k] + s; its optimizer is kinds[k] with hypers[k] and state s1[k], s2[k].
    Unchecked: ``work`` is a ``StackWork`` (or a plain tuple in its order) for K = len(flats)
    members and B = batches.shape[1] rows."""
    return _stack_steps(X, T, batches, flats, grads, sizes, activation, decays, StackWork(*work), batchnorm, dropout,
                        seeds, first_steps, running_means, running_vars, kinds, hypers, s1, s2, active, losses,
                        x_divisor)  # fmt: skip


@njit(parallel=True, cache=True)
def _stack_steps(X, T, batches, flats, grads, sizes, activation, decays, work, batchnorm, dropout, seeds, first_steps,
                 running_means, running_vars, kinds, hypers, s1, s2, active, losses, x_divisor):  # fmt: skip
    K = flats.shape[0]
    B = batches.shape[1]
    x, tb, row_check = work.x, work.tb, work.row_check
    acts, deltas, normed, stats, col_acc = work.acts, work.deltas, work.normed, work.batch_stats, work.col_acc
    for s in range(batches.shape[0]):
        idx = batches[s]
        nb = num_blocks(B)
        for k in prange(nb):
            r0, r1 = block_bounds(B, nb, k)
            _gather_rows(X, T, idx, x, tb, row_check, r0, r1, x_divisor)
        for i in range(B):
            if row_check[i] != 0.0:
                raise ValueError("NetStack: x has NaN or infinity in row", idx[i])
        for m in prange(K):
            if not active[m]:
                losses[s, m] = np.nan
            else:
                losses[s, m] = _member_step(
                    x, tb, flats[m], grads[m], sizes, activation, decays[m], acts[m], deltas[m], normed[m], stats[m],
                    col_acc[m], work.alpha_beta, batchnorm, dropout, seeds[m], first_steps[m] + s, running_means[m],
                    running_vars[m], kinds[m], hypers[m], s1[m], s2[m],
                )  # fmt: skip
                if not np.isfinite(losses[s, m]):
                    active[m] = False
    return losses


@njit(cache=True)
def _member_forward(x, flat, sizes, activation, acts, alpha_beta, batchnorm, dropout, running_mean, running_var,
                    bn_scale, bn_shift):  # fmt: skip
    """One member's test-time logits for the rows of x, serial: a view of ``acts``. bn_scale and
    bn_shift are float64 scratch over the hidden units (batch norm as a scale and shift)."""
    if batchnorm:
        _batchnorm_test_transforms(flat, sizes, running_mean, running_var, bn_scale, bn_shift)
    return _test_rows(x, flat, sizes, activation, acts, alpha_beta, batchnorm, dropout, bn_scale, bn_shift, 0,
                      x.shape[0])  # fmt: skip


@njit(parallel=True, cache=True)
def stack_correct_counts_unchecked(x, t, flats, sizes, activation, acts, alpha_beta, batchnorm, dropout,
                                   running_means, running_vars, bn_scratch, counts):  # fmt: skip
    """counts[k] = how many rows of x member k classifies (at test time) as t; -1 if one of its
    logits is not finite. One parallel loop over the members, each serial over chunks of rows:
    acts (K, rows·(n_1 + ... + n_L)) gives the chunk; bn_scratch is float64 (K, 2, hidden units).
    Unchecked."""
    K = flats.shape[0]
    N = x.shape[0]
    per_row = 0
    for l in range(1, sizes.shape[0]):
        per_row += sizes[l]
    chunk = acts.shape[1] // per_row
    for m in prange(K):
        count = 0
        for r0 in range(0, N, chunk):
            r1 = min(N, r0 + chunk)
            z = _member_forward(x[r0:r1], flats[m], sizes, activation, acts[m], alpha_beta, batchnorm, dropout,
                                running_means[m], running_vars[m], bn_scratch[m, 0], bn_scratch[m, 1])  # fmt: skip
            c = _count_correct(z, t[r0:r1])
            if c < 0 or count < 0:
                count = -1
            else:
                count += c
        counts[m] = count
    return counts
