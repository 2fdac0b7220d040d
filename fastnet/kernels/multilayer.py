"""A network of any depth (``MultiLayerNet``): its forward pass and its training step, one call each.

The layers' sizes are ``sizes`` = (D, n_1, ..., n_{L-1}, C): L affine layers,
an activation (``layers.RELU`` or ``layers.SIGMOID``) after each but the last,
softmax-with-cross-entropy at the end. All parameters live in one flat vector,
W1, b1, W2, b2, ... in that order (``layer_params`` gives the views): the
optimizer's update is then one pass over one vector (``optimizer``), and
weight decay adds λ·W to each weight gradient. With batch normalization the
vector goes on with gamma1, beta1, ..., gamma_{L-1}, beta_{L-1}
(``batchnorm_params``). The activations of layers 1..L of a batch of B rows
live in one flat buffer too (``layer_rows``), and so do their gradients.
Batch norm and dropout (``regularize``) work on a hidden layer's outputs in
place, inside the same parallel regions; ``Regularization`` says which run.

One step::

    X[idx] --gather--> x
    for each layer l: h_l = drop(act(bn(h_{l-1} W_l + b_l)))   (the last: logits, no bn/act/drop)
    logits, t --softmax-CE--> loss, d_L
    for l = L..1: d_l := bn'(d_l) (dgamma_l, dbeta_l on the way)
                  d_{l-1} = (d_l W_lᵀ) ⊙ act'(h_{l-1})   (act' read from h: dropped units give 0)
    for every l, in one region: dW_l = h_{l-1}ᵀ d_l (+ λ W_l), db_l = Σ d_l, each block of them
                  followed by the optimizer's update of the same parameters
    running statistics move toward the batch's
"""

from collections import namedtuple

import numpy as np
from numba import njit, prange

from .codes import _gather_rows
from .forward import ROWS_PER_PASS, _count_correct
from .layers import (
    IDENTITY,
    _affine_block,
    _affine_rows,
    _input_grad_rows,
    _softmax_ce_row,
)
from .layout import batchnorm_params, hidden_offset, layer_offset, layer_params, layer_rows, num_params  # noqa: F401
from .partition import block_bounds, num_blocks, product_block, product_split
from .regularize import (
    NO_ARRAY,
    _activate_drop,
    _batchnorm_backward_columns,
    _batchnorm_train_columns,
    batchnorm_test_transform,
    update_running_statistics,
)
from .weight_gradients import _gradient_tasks, _weight_gradients, add_decay, weight_decay_loss  # noqa: F401

MultiLayerWork = namedtuple(
    "MultiLayerWork",
    [
        "x",  # (B, D) the gathered inputs
        "tb",  # (B,) int64 the gathered labels
        "acts",  # flat: layers 1..L's outputs for B rows (``layer_rows``)
        "deltas",  # flat: their gradients, the same layout
        "row_loss",  # (B,) float64
        "row_check",  # (B,) float64, 0 where the gathered row is finite
        "alpha_beta",  # (2,) BLAS's (1, 0)
        "col_acc",  # float64 scratch for the bias and batch-norm gradients: 2·max(sizes), n_1 + ... + n_L
        "normed",  # batch norm's x̂ of the hidden layers, flat as ``acts`` (empty without batch norm)
        "batch_stats",  # float64 (3, hidden units): the batch's mean, variance and 1/√(var + ε)
        "tasks",  # int64 (3, tasks): the weight-gradient region's layer, part, block (``_gradient_tasks``)
    ],
)

Regularization = namedtuple(
    "Regularization",
    [
        "batchnorm",  # bool: a BatchNorm after each hidden affine layer
        "dropout",  # the dropout ratio in [0, 1), or -1.0 for no dropout
        "seed",  # int64: the dropout masks' seed
        "train",  # bool: batch statistics and random masks (True) or running statistics and scaling
        "running_mean",  # (hidden units,) in the net's dtype, flat over the hidden layers
        "running_var",  # the same
    ],
)


def new_multilayer_work(batch, sizes, dtype, batchnorm=False):
    """A ``MultiLayerWork`` for batches of ``batch`` rows of a network of these ``sizes``."""
    hidden_units = int(sum(sizes[1:-1]))
    hidden_rows = batch * int(sum(sizes[1:]))
    alpha_beta = np.zeros(2, dtype)
    alpha_beta[0] = 1
    return MultiLayerWork(
        x=np.empty((batch, sizes[0]), dtype), tb=np.empty(batch, np.int64), acts=np.empty(hidden_rows, dtype),
        deltas=np.empty(hidden_rows, dtype), row_loss=np.empty(batch), row_check=np.empty(batch),
        alpha_beta=alpha_beta, col_acc=np.empty(max(2 * int(max(sizes)), int(sum(sizes[1:])))),
        normed=np.empty(hidden_rows if batchnorm else 0, dtype), batch_stats=np.empty((3, hidden_units)),
        tasks=np.stack(_gradient_tasks(np.asarray(sizes, np.int64), batch, 2 * hidden_units if batchnorm else 0)),
    )  # fmt: skip


@njit(cache=True)
def _batchnorm_test_transforms(flat, sizes, running_mean, running_var, scale, shift):
    """Every hidden layer's batch norm at test time as a per-column scale and shift (float64
    vectors over all hidden units, from ``batchnorm_test_transform``)."""
    for l in range(1, sizes.shape[0] - 1):
        gamma, beta = batchnorm_params(flat, sizes, l)
        o = hidden_offset(sizes, l)
        n = sizes[l]
        batchnorm_test_transform(gamma, beta, running_mean[o : o + n], running_var[o : o + n],
                                 scale[o : o + n], shift[o : o + n])  # fmt: skip


@njit(cache=True)
def _test_rows(x, flat, sizes, activation, acts, alpha_beta, batchnorm, dropout, bn_scale, bn_shift, c0, c1):
    """Rows c0:c1 of x through every layer at test time, serial, into ``acts`` (laid out for
    x.shape[0] rows): batch norm is the scale and shift from ``_batchnorm_test_transforms``,
    dropout a scaling. Returns the logits' view of ``acts``."""
    B = x.shape[0]
    L = sizes.shape[0] - 1
    h = x
    for l in range(1, L + 1):
        W, b = layer_params(flat, sizes, l)
        out = layer_rows(acts, sizes, B, l)
        n = sizes[l]
        if l == L:
            _affine_rows(h, W, b, out, alpha_beta, c0, c1, 0, n, IDENTITY)
        elif batchnorm:
            o = hidden_offset(sizes, l)
            _affine_rows(h, W, b, out, alpha_beta, c0, c1, 0, n, IDENTITY)
            _activate_drop(out, c0, c1, 0, n, activation, dropout, False, 0, 0, l,
                           bn_scale[o : o + n], bn_shift[o : o + n])  # fmt: skip
        else:
            _affine_rows(h, W, b, out, alpha_beta, c0, c1, 0, n, activation)
            if dropout >= 0:
                _activate_drop(out, c0, c1, 0, n, IDENTITY, dropout, False, 0, 0, l, NO_ARRAY, NO_ARRAY)
        h = out
    return h


@njit(parallel=True, cache=True)
def _test_forward(x, flat, sizes, activation, work, reg):
    """Test time: every row is on its own, so one parallel region takes each block of rows through
    every layer, ROWS_PER_PASS rows at a time. Returns the logits' view of ``work.acts``."""
    B = x.shape[0]
    L = sizes.shape[0] - 1
    acts, alpha_beta, stats = work.acts, work.alpha_beta, work.batch_stats
    if reg.batchnorm:
        _batchnorm_test_transforms(flat, sizes, reg.running_mean, reg.running_var, stats[0], stats[1])
    row_work = 0
    for l in range(1, L + 1):
        row_work += sizes[l - 1] * sizes[l]
    nb = num_blocks(B, B * row_work)
    for k in prange(nb):
        r0, r1 = block_bounds(B, nb, k)
        for c0 in range(r0, r1, ROWS_PER_PASS):
            _test_rows(x, flat, sizes, activation, acts, alpha_beta, reg.batchnorm, reg.dropout, stats[0], stats[1],
                       c0, min(c0 + ROWS_PER_PASS, r1))  # fmt: skip
    return layer_rows(acts, sizes, B, L)


@njit(parallel=True, cache=True)
def _forward(x, flat, sizes, activation, work, reg, step):
    """Every layer's output for the rows of x into ``work.acts``; returns the logits' view.
    In training (``reg.train``) batch norm keeps its x̂ and the batch's statistics in ``work``."""
    if not reg.train:
        return _test_forward(x, flat, sizes, activation, work, reg)
    B = x.shape[0]
    L = sizes.shape[0] - 1
    acts, alpha_beta, batch_stats = work.acts, work.alpha_beta, work.batch_stats
    h = x
    for l in range(1, L + 1):
        W, b = layer_params(flat, sizes, l)
        out = layer_rows(acts, sizes, B, l)
        n = sizes[l]
        split = product_split(B, sizes[l - 1], n)
        if l == L:
            for k in prange(split[0] * split[1]):
                _affine_block(h, W, b, out, alpha_beta, split, k, IDENTITY)
        elif not reg.batchnorm:  # the activation in the product's epilogue, dropout on the block after it
            for k in prange(split[0] * split[1]):
                _affine_block(h, W, b, out, alpha_beta, split, k, activation)
                if reg.dropout >= 0:
                    r0, r1, c0, c1 = product_block(B, n, split, k)
                    _activate_drop(out, r0, r1, c0, c1, IDENTITY, reg.dropout, reg.train, reg.seed, step, l,
                                   NO_ARRAY, NO_ARRAY)  # fmt: skip
        else:  # batch statistics need every row: a second region, over blocks of columns
            for k in prange(split[0] * split[1]):
                _affine_block(h, W, b, out, alpha_beta, split, k, IDENTITY)
            gamma, beta = batchnorm_params(flat, sizes, l)
            o = hidden_offset(sizes, l)
            normed = layer_rows(work.normed, sizes, B, l)
            mean, var, inv_std = batch_stats[0, o : o + n], batch_stats[1, o : o + n], batch_stats[2, o : o + n]
            nc = num_blocks(n)
            for k in prange(nc):
                c0, c1 = block_bounds(n, nc, k)
                _batchnorm_train_columns(out, normed, mean, var, inv_std, gamma, beta, c0, c1)
                _activate_drop(out, 0, B, c0, c1, activation, reg.dropout, True, reg.seed, step, l,
                               NO_ARRAY, NO_ARRAY)  # fmt: skip
        h = out
    return h


@njit(parallel=True, cache=True)
def multilayer_forward_unchecked(x, flat, sizes, activation, work, reg, step):
    """Logits (a view of ``work``'s acts, B×C) of the network on x (B×D). ``work`` and ``reg``
    are a ``MultiLayerWork`` for B rows and a ``Regularization`` (or plain tuples in their order);
    ``step`` numbers the dropout masks in training. Unchecked."""
    return _forward(x, flat, sizes, activation, MultiLayerWork(*work), Regularization(*reg), step)


@njit(parallel=True, cache=True)
def multilayer_correct_count_unchecked(x, t, flat, sizes, activation, work, reg):
    """How many rows of x the network (at test time) classifies as t; -1 if a logit is not finite.
    Unchecked."""
    return _count_correct(multilayer_forward_unchecked(x, flat, sizes, activation, work, reg, 0), t)


@njit(parallel=True, cache=True)
def multilayer_step_unchecked(X, T, idx, flat, grad, sizes, activation, decay, work, reg, step, optimizer, update,
                              x_divisor):  # fmt: skip
    """One step on rows ``idx`` of (X, T); returns the loss before it (with weight decay). Unchecked.

    ``flat``/``grad``: the parameters and their gradient, flat; ``reg``: a
    ``Regularization`` (training: ``reg.train`` True); ``step`` numbers the
    dropout masks; ``optimizer`` = (kind, hyper, s1, s2) as
    ``optimizer.update_range`` takes them. With ``update`` False only
    ``grad`` is written (the running statistics stay). A non-finite loss leaves
    the parameters and running statistics as they were. ``work`` is a
    ``MultiLayerWork`` (or a plain tuple in its order) for B = len(idx) rows.
    """
    return _step(X, T, idx, flat, grad, sizes, activation, decay, MultiLayerWork(*work), Regularization(*reg), step,
                 optimizer, update, x_divisor)  # fmt: skip


@njit(parallel=True, cache=True)
def _step(X, T, idx, flat, grad, sizes, activation, decay, work, reg, step, optimizer, update, x_divisor):
    B = idx.shape[0]
    inv_batch = 1.0 / B
    if reg.batchnorm:
        _forward_backward_by_layer(X, T, idx, flat, grad, sizes, activation, work, reg, step, inv_batch, x_divisor)
    else:
        _forward_backward_by_rows(X, T, idx, flat, sizes, activation, work, reg, step, inv_batch, x_divisor)
    row_check = work.row_check
    for i in range(B):
        if row_check[i] != 0.0:
            raise ValueError("MultiLayerNet: x has NaN or infinity in row", idx[i])
    row_loss = work.row_loss
    loss = 0.0
    for i in range(B):  # fixed order: the loss does not depend on the thread count
        loss += row_loss[i]
    loss *= inv_batch
    if decay != 0:
        loss += weight_decay_loss(flat, sizes, decay)
    if update and not np.isfinite(loss):
        return loss  # diverged: the parameters stay the last finite ones

    _weight_gradients(flat, grad, sizes, decay, work, optimizer, update)
    if update and reg.batchnorm:
        stats = work.batch_stats
        update_running_statistics(reg.running_mean, reg.running_var, stats[0], stats[1])
    return loss


@njit(parallel=True, cache=True)
def _forward_backward_by_rows(X, T, idx, flat, sizes, activation, work, reg, step, inv_batch, x_divisor):
    """Without batch norm every row is on its own until the weight gradients: one parallel
    region, each block of rows gathered, through every layer, the loss and back to layer 1."""
    B = idx.shape[0]
    L = sizes.shape[0] - 1
    x, acts, deltas, alpha_beta, row_loss = work.x, work.acts, work.deltas, work.alpha_beta, work.row_loss
    row_work = 0
    for l in range(1, L + 1):
        row_work += sizes[l - 1] * sizes[l]
    nb = num_blocks(B, B * row_work)
    split = (nb, 1)  # rows only: block k of every layer is rows block_bounds(B, nb, k)
    for k in prange(nb):
        r0, r1 = block_bounds(B, nb, k)
        _gather_rows(X, T, idx, x, work.tb, work.row_check, r0, r1, x_divisor)
        h = x
        for l in range(1, L + 1):
            W, b = layer_params(flat, sizes, l)
            out = layer_rows(acts, sizes, B, l)
            _affine_block(h, W, b, out, alpha_beta, split, k, activation if l < L else IDENTITY)
            if l < L and reg.dropout >= 0:
                _activate_drop(out, r0, r1, 0, sizes[l], IDENTITY, reg.dropout, reg.train, reg.seed, step, l,
                               NO_ARRAY, NO_ARRAY)  # fmt: skip
            h = out
        dz = layer_rows(deltas, sizes, B, L)
        for i in range(r0, r1):
            row_loss[i] = _softmax_ce_row(h, work.tb, dz, i, inv_batch)
        for l in range(L, 1, -1):
            W, _ = layer_params(flat, sizes, l)
            _input_grad_rows(layer_rows(deltas, sizes, B, l), W, layer_rows(acts, sizes, B, l - 1),
                             layer_rows(deltas, sizes, B, l - 1), r0, r1, alpha_beta, activation)  # fmt: skip


@njit(parallel=True, cache=True)
def _forward_backward_by_layer(X, T, idx, flat, grad, sizes, activation, work, reg, step, inv_batch, x_divisor):
    """With batch norm each hidden layer needs all rows' statistics: a region per layer and pass.
    Writes the batch-norm gradients (dgamma, dbeta) into ``grad`` on the way back."""
    B = idx.shape[0]
    L = sizes.shape[0] - 1
    x, tb, row_check = work.x, work.tb, work.row_check
    nb = num_blocks(B)
    for k in prange(nb):
        r0, r1 = block_bounds(B, nb, k)
        _gather_rows(X, T, idx, x, tb, row_check, r0, r1, x_divisor)
    z = _forward(work.x, flat, sizes, activation, work, reg, step)
    dz = layer_rows(work.deltas, sizes, B, L)
    row_loss = work.row_loss  # a local: a prange body writing through a tuple's field lost the writes
    for i in prange(B):
        row_loss[i] = _softmax_ce_row(z, tb, dz, i, inv_batch)
    for l in range(L, 0, -1):
        d = layer_rows(work.deltas, sizes, B, l)
        if l < L:  # d: from the gradient at batch norm's output to the one at the affine output
            gamma, _ = batchnorm_params(flat, sizes, l)
            dgamma, dbeta = batchnorm_params(grad, sizes, l)
            normed = layer_rows(work.normed, sizes, B, l)
            o = hidden_offset(sizes, l)
            inv_std = work.batch_stats[2, o : o + sizes[l]]
            col_acc = work.col_acc
            nc = num_blocks(sizes[l])
            for k in prange(nc):
                c0, c1 = block_bounds(sizes[l], nc, k)
                _batchnorm_backward_columns(d, normed, inv_std, gamma, dgamma, dbeta, col_acc, c0, c1)
        if l > 1:
            W, _ = layer_params(flat, sizes, l)
            h = layer_rows(work.acts, sizes, B, l - 1)
            dh = layer_rows(work.deltas, sizes, B, l - 1)
            nr = num_blocks(B, B * sizes[l - 1] * sizes[l])
            for k in prange(nr):
                r0, r1 = block_bounds(B, nr, k)
                _input_grad_rows(d, W, h, dh, r0, r1, work.alpha_beta, activation)


@njit(parallel=True, cache=True)
def multilayer_steps_unchecked(X, T, batches, flat, grad, sizes, activation, decay, work, reg, first_step, optimizer,
                               losses, x_divisor):  # fmt: skip
    """``multilayer_step_unchecked`` on each row of ``batches`` in turn (updating), step s numbered
    ``first_step + s``; losses[s] = step s's. Stops after a step whose loss is not finite.
    Returns the number of steps taken. Unchecked."""
    named, regularization = MultiLayerWork(*work), Regularization(*reg)
    for s in range(batches.shape[0]):
        losses[s] = _step(X, T, batches[s], flat, grad, sizes, activation, decay, named, regularization,
                          first_step + s, optimizer, True, x_divisor)  # fmt: skip
        if not np.isfinite(losses[s]):
            return s + 1
    return batches.shape[0]


@njit(parallel=True, cache=True)
def multilayer_steps(X, T, batches, flat, grad, sizes, activation, decay, work, reg, first_step, optimizer, losses,
                     x_divisor):  # fmt: skip
    """``multilayer_steps_unchecked`` behind ``check_multilayer_batches`` of every batch, done first:
    what comes from the caller (X, T, batches) is checked; the buffers are ``MultiLayerNet``'s own.
    One call from Python for both."""
    if losses.shape[0] < batches.shape[0]:
        raise ValueError("MultiLayerNet: losses needs one entry per batch")
    check_multilayer_batches("MultiLayerNet", X, T, batches, sizes, MultiLayerWork(*work).tb.shape[0])
    return multilayer_steps_unchecked(X, T, batches, flat, grad, sizes, activation, decay, work, reg, first_step,
                                      optimizer, losses, x_divisor)  # fmt: skip


@njit(cache=True)
def check_multilayer_batches(func, X, T, batches, sizes, batch):
    """What the steps take from the caller, checked before the first one: the data's width,
    one label per row, every batch index inside X and every label of a batch inside [0, C)."""
    C = sizes[sizes.shape[0] - 1]
    if X.shape[1] != sizes[0]:
        raise ValueError(func + ": x must have input_size columns")
    if T.shape[0] != X.shape[0]:
        raise ValueError(func + ": t must have one label per row of x")
    if batches.shape[1] != batch:
        raise ValueError(func + ": the batch does not match the workspace")
    for s in range(batches.shape[0]):
        for i in range(batches.shape[1]):
            row = batches[s, i]
            if row < 0 or row >= X.shape[0]:
                raise ValueError(func + ": a batch index lies outside [0, len(x)); (position, index) =", i, row)
            if T[row] < 0 or T[row] >= C:
                raise ValueError(func + ": labels must lie in [0, C), C = number of classes; (row, label, C) =",
                                 row, T[row], C)  # fmt: skip
