"""The layer engine: a network as a sequence of layer records, one compiled forward and one
compiled training step that run any such sequence.

A network is an ``EngineNetwork``: ``rec``, an int64 array with one row per layer (the columns
below): its kind (``AFFINE``, ``CONV``, ``POOL``, ``DROPOUT``, ``BATCHNORM``), the activation
fused into its output (``activations.IDENTITY``, ``RELU``, ``SIGMOID``), its input and output
geometry per image, its filter, stride and padding, where its parameters start in the one flat
parameter vector (W and b; γ and β for batch norm), where its output starts in the workspace and
where its winners, x̂ or statistics live; ``coef``, a float64 row per layer (dropout's ratio,
weight decay's λ, batch norm's momentum); ``running_mean`` and ``running_var``, batch norm's
running statistics (one entry per channel of every batch-norm layer). Every layer's outputs for
a batch of B rows live in one flat buffer ``acts`` (layer l's are a (B, OUT_SIZE) block at
B·ACT_OFF), their gradients in ``deltas`` with the same layout, so an image is a row of C·H·W
values in NCHW order and an affine layer after a pool reads the book's flattening as it is. The
net's last layer with parameters is affine (only dropout may follow it) and feeds softmax-with-
cross-entropy.

One step (``engine_step_unchecked``)::

    X[idx] --gather--> x;  for each layer: acts_l = layer_l(acts_{l-1})      (``engine_forward``)
    logits, t --softmax-CE--> loss (+ ½·Σ λ_l‖W_l‖²), deltas_L
    for l = L..1: deltas_{l-1} = backward_l(deltas_l) ⊙ act'(acts_{l-1})   (not for the first layer),
                  conv and batch-norm layers' parameter gradients on the way   (``_backward``)
                  (dropout draws its mask again from the counters: nothing is stored)
    every affine layer's dW (+ λ·W) and db in one balanced region, each block's parameters
                  updated by the optimizer as soon as written    (``schedule.affine_gradients``)
    the other parameters updated; batch norm's running statistics moved toward the batch's

A network of affine and dropout layers only runs everything up to deltas_1 in one region per
block of rows, and its test-time forward likewise (``schedule``). A convolution with a 2×2 pool
above it runs the pool in its own pass, forward and backward (``schedule.pools_in_training``): its
own output and gradient are then never written.

Each layer kind is a module with its forward beside its backward (``affine`` in ``layers``,
``conv``, ``pool``, ``batchnorm``, ``dropout``); every backward ends with the one
activation-derivative rule of ``activations``. Dispatch is an integer test per layer inside one
compiled function: it caches like any other (no function objects as arguments). A new layer
kind is its module, its row in ``layer_records`` and one branch in each of the two loops here
(``engine_forward``, ``_backward``). The records are built in ``records``.
"""

import numpy as np
from numba import njit, prange

from .activations import IDENTITY
from .batchnorm import (
    STATS,
    batchnorm_backward_channels,
    batchnorm_train_channels,
    move_running_statistics,
)
from .checks import check_batches
from .codes import _gather_rows
from .conv import conv_backward_rows, conv_forward_rows, conv_scratch_size, no_pool, no_winners, taps_size
from .decay import add_decay, sum_of_squares
from .dropout import dropout_backward_rows, dropout_rows
from .forward import _count_correct
from .layers import _affine_block, _input_grad_block, _softmax_ce_row
from .optimizer import next_rate
from .partition import block_bounds, num_blocks, product_block, product_split
from .pool import pool_backward_rows, pool_forward_rows
from .records import (
    ACT,
    AFFINE,
    B_OFF,
    BATCHNORM,
    CONV,
    DECAY,
    FH,
    FW,
    IN_SIZE,
    KEY,
    KIND,
    MOMENTUM,
    OC,
    OUT_SIZE,
    PAD,
    POOL,
    RATIO,
    RUN_OFF,
    STRIDE,
    W_OFF,
    C,
    EngineNetwork,
    EngineWork,
    H,
    W,
    affine_params,
    conv_geometry,
    layer_aux,
    layer_rows,
    layer_weights,
    norm_params,
    norm_stats,
    pool_geometry,
)  # fmt: skip
from .schedule import (
    affine_gradients,
    forward_backward_by_rows,
    plan_gradient_tasks,
    pools_in_training,
    row_local,
    test_forward_by_rows,
    update_other_params,
)


def new_engine_work(batch, net, dtype, blocks, training=True):
    """An ``EngineWork`` for batches of ``batch`` rows of the network ``net`` (an
    ``EngineNetwork``); ``blocks``: the most blocks a parallel loop uses (``_cores.BLOCKS``).
    ``training=False``: for forward passes only (no gathered inputs, no gradients)."""
    rec = net.rec
    conv = rec[rec[:, KIND] == CONV]
    pool = rec[rec[:, KIND] == POOL]
    norm = rec[rec[:, KIND] == BATCHNORM]
    kp = max([int(conv_scratch_size(*r[[C, H, W, OC, FH, FW, STRIDE, PAD]])) for r in conv] + [1])
    wsize = int(max((conv[:, OC] * (conv[:, C] * conv[:, FH] * conv[:, FW] + 1)).max(initial=0), 1))
    tsize = max([wsize] + [int(taps_size(*r[[C, OC, FH, FW]])) for r in conv])
    outs = int(rec[:, OUT_SIZE].sum())
    one_zero, one_one = np.zeros(2, dtype), np.ones(2, dtype)
    one_zero[0] = 1
    return EngineWork(
        x=np.empty((batch if training else 0, int(rec[0, IN_SIZE])), dtype), tb=np.empty(batch, np.int64),
        acts=np.empty(batch * outs, dtype), deltas=np.empty(batch * outs if training else 0, dtype),
        winners=np.empty(batch * int(pool[:, OUT_SIZE].sum()), np.int64),
        normed=np.empty(batch * int(norm[:, OUT_SIZE].sum()), dtype),
        stats=np.zeros(STATS * net.running_mean.shape[0]),
        col=np.empty((blocks, kp), dtype), dcol=np.empty((blocks, kp), dtype), taps=np.empty(tsize, dtype),
        parts=np.empty((blocks, wsize), dtype),
        acc=np.empty(max(wsize, outs)), tasks=np.stack(plan_gradient_tasks(rec, batch)), row_loss=np.empty(batch),
        row_check=np.empty(batch),
        one_zero=one_zero, one_one=one_one,
    )  # fmt: skip


@njit(cache=True)
def _norm_state(rec, l, work, B):
    """Batch-norm layer l's (channels, values per channel per row, its statistics (STATS, channels),
    its x̂ (B, OUT_SIZE))."""
    return rec[l, C], rec[l, H] * rec[l, W], norm_stats(work.stats, rec, l), layer_aux(work.normed, rec, l, B)


@njit(parallel=True, cache=True)
def engine_forward(x, flat, net, work, masks):
    """Every layer's output for the rows of x (B, IN_SIZE of the first layer) into ``work.acts``;
    returns the logits' view (B, classes); ``_forward``'s, with ``net`` and ``work`` as plain tuples
    (or their named tuples). Unchecked."""
    return _forward(x, flat, EngineNetwork(*net), EngineWork(*work), masks)


@njit(parallel=True, cache=True)
def _forward(x, flat, net, work, masks):
    """Every layer's output for the rows of x (B, IN_SIZE of the first layer) into ``work.acts``;
    returns the logits' view (B, classes). ``masks`` = (seed, step, train): in training, dropout
    draws the masks of training step ``step`` and batch norm uses the batch's statistics (its x̂
    and statistics kept in ``work``), layer by layer; at test time (``test_forward_by_rows``)
    dropout scales and batch norm uses the running statistics, a few rows at a time through every
    layer (the logits in their layer's buffer; batch norm and dropout above the first layer then
    work in place on the layer below's). ``net`` an ``EngineNetwork`` (or a plain tuple in its
    order). Unchecked."""
    rec = net.rec
    B = x.shape[0]
    if not masks[2]:  # test time: a few images at a time through the whole network
        return test_forward_by_rows(x, flat, net, work)
    h = x
    l = 0
    while l < rec.shape[0]:
        out = layer_rows(work.acts, rec, l, B)
        kind, act = rec[l, KIND], rec[l, ACT]
        if kind == CONV and pools_in_training(rec, l):  # the pool above in the same pass: its output, winners
            l += 1
            b0, out = rec[l - 1, B_OFF], layer_rows(work.acts, rec, l, B)
            conv_forward_rows(h, layer_weights(flat, rec, l - 1), flat[b0 : b0 + rec[l - 1, OC]], out,
                              layer_aux(work.winners, rec, l, B), work.col, work.taps, conv_geometry(rec, l - 1), act,
                              (work.one_zero, work.one_one))  # fmt: skip
        elif kind == CONV:
            b0 = rec[l, B_OFF]
            conv_forward_rows(h, layer_weights(flat, rec, l), flat[b0 : b0 + rec[l, OC]], out,
                              no_winners(work.winners), work.col, work.taps, conv_geometry(rec, l), act,
                              (work.one_zero, work.one_one))  # fmt: skip
        elif kind == POOL:
            pool_forward_rows(h, out, layer_aux(work.winners, rec, l, B), rec[l, C], rec[l, H], rec[l, W],
                              rec[l, FH], rec[l, FW], rec[l, STRIDE], rec[l, PAD])  # fmt: skip
        else:
            split = layer_split(rec, l, B, False)
            for k in prange(split[0] * split[1]):
                forward_block(h, out, flat, net, work, l, masks, split, k)
        h = out
        l += 1
    return h


@njit(cache=True)
def layer_split(rec, l, B, backward):
    """How the engine splits the work of layer l (affine, batch norm, dropout) on B rows into
    blocks, (blocks, 1) or an affine product's (row blocks, column blocks): batch norm by
    channels, dropout by rows, an affine layer's forward and input gradient by rows and columns
    of the product (``product_split``: a wide input's gradient, SimpleConvNet's 4,320, by
    columns, so that no two blocks pack the same weights). The blocks are numbered by the shapes
    only: the same bits whatever the number of threads."""
    kind = rec[l, KIND]
    if kind == AFFINE:
        if backward:
            return product_split(B, rec[l, OUT_SIZE], rec[l, IN_SIZE])
        return product_split(B, rec[l, IN_SIZE], rec[l, OUT_SIZE])
    if kind == BATCHNORM:
        return (num_blocks(rec[l, C]), 1)
    return (num_blocks(B), 1)


@njit(cache=True)
def forward_block(h, out, flat, net, work, l, masks, split, k):
    """Block k of ``split`` (``layer_split``; (1, 1): all of it) of layer l's forward from its
    input h into out, for an affine, batch-norm or dropout layer, in training; ``masks`` as
    ``_forward``'s."""
    rec, coef = net.rec, net.coef
    B = h.shape[0]
    seed, step, train = masks
    kind, act = rec[l, KIND], rec[l, ACT]
    if kind == AFFINE:
        weights, bias = affine_params(flat, rec, l)
        _affine_block(h, weights, bias, out, work.one_zero, split, k, act)
    elif kind == BATCHNORM:
        gamma, beta = norm_params(flat, rec, l)
        channels, S, stats, normed = _norm_state(rec, l, work, B)
        c0, c1 = block_bounds(channels, split[0], k)
        batchnorm_train_channels(h, out, normed, gamma, beta, stats, S, c0, c1, act)
    else:
        r0, r1 = block_bounds(B, split[0], k)
        dropout_rows(h, out, coef[l, RATIO], seed, step, rec[l, KEY], train, r0, r1)


@njit(parallel=True, cache=True)
def engine_correct_count_unchecked(x, t, flat, net, work):
    """How many rows of x the network (at test time) classifies as t; -1 if a logit is not finite.
    Unchecked."""
    return _count_correct(_forward(x, flat, EngineNetwork(*net), EngineWork(*work), (0, 0, False)), t)


@njit(cache=True)
def engine_decay_loss(flat, rec, coef):
    """½·Σ_l λ_l·‖W_l‖² over the layers with weight decay, in layer order (float64)."""
    total = 0.0
    for l in range(rec.shape[0]):
        if coef[l, DECAY] != 0:
            total += 0.5 * coef[l, DECAY] * sum_of_squares(layer_weights(flat, rec, l))
    return total


@njit(cache=True)
def engine_move_running(net, work):
    """``move_running`` with ``net`` and ``work`` as plain tuples (or their named tuples)."""
    move_running(EngineNetwork(*net), EngineWork(*work))


@njit(cache=True)
def move_running(net, work):
    """Every batch-norm layer's running statistics moved toward the last training pass's (its
    statistics in ``work``), with the layer's momentum: what a training pass leaves behind."""
    rec, coef, running_mean, running_var = net
    for l in range(rec.shape[0]):
        if rec[l, KIND] == BATCHNORM:
            o, n = rec[l, RUN_OFF], rec[l, C]
            move_running_statistics(running_mean[o : o + n], running_var[o : o + n], norm_stats(work.stats, rec, l),
                                    coef[l, MOMENTUM])  # fmt: skip


@njit(parallel=True, cache=True)
def _backward(flat, grad, net, work, B, seed, step):
    """Every layer's input gradient (``work.deltas``), from the last layer down, and the parameter
    gradients of every layer but the affine ones (``schedule.affine_gradients`` writes those, all
    in one region, after it). ``seed``, ``step``: the training step's dropout masks."""
    rec, coef = net.rec, net.coef
    for l in range(rec.shape[0] - 1, -1, -1):
        kind = rec[l, KIND]
        if kind == CONV:
            d = layer_rows(work.deltas, rec, l, B)
            pool = no_pool(work.winners, flat)
            if pools_in_training(rec, l):  # the pool's gradient, sent to its winners by the convolution's backward
                d = layer_rows(work.deltas, rec, l + 1, B)
                pool = (layer_aux(work.winners, rec, l + 1, B), layer_rows(work.acts, rec, l + 1, B), rec[l, ACT])
            h = work.x if l == 0 else layer_rows(work.acts, rec, l - 1, B)
            below = IDENTITY if l == 0 else rec[l - 1, ACT]
            dh = layer_rows(work.deltas, rec, l - 1, B) if l > 0 else work.x[:0]
            b0, fn = rec[l, B_OFF], rec[l, OC]
            conv_backward_rows(h, layer_weights(flat, rec, l), d, layer_weights(grad, rec, l), grad[b0 : b0 + fn], dh,
                               (work.col, work.dcol, work.taps, work.parts, work.acc), conv_geometry(rec, l), below,
                               (work.one_zero, work.one_one), pool)  # fmt: skip
            if coef[l, DECAY] != 0:  # the book's λ·W, added to the layer's weight gradient
                n = rec[l, B_OFF] - rec[l, W_OFF]
                add_decay(layer_weights(grad, rec, l).reshape((1, n)), layer_weights(flat, rec, l).reshape((1, n)),
                          coef[l, DECAY])  # fmt: skip
        elif kind == POOL:
            if l > 0 and not pools_in_training(rec, l - 1):
                pool_backward_rows(layer_rows(work.deltas, rec, l, B), layer_aux(work.winners, rec, l, B),
                                   layer_rows(work.deltas, rec, l - 1, B), layer_rows(work.acts, rec, l - 1, B),
                                   rec[l - 1, ACT], pool_geometry(rec, l))  # fmt: skip
        elif l > 0 or kind == BATCHNORM:
            split = layer_split(rec, l, B, True)
            for k in prange(split[0] * split[1]):
                backward_block(flat, grad, net, work, l, seed, step, split, k)


@njit(cache=True)
def backward_block(flat, grad, net, work, l, seed, step, split, k):
    """Block k of ``split`` (``layer_split``; (1, 1): all of it) of layer l's backward, for an
    affine, batch-norm or dropout layer: its input gradient (not for the first layer) and batch
    norm's γ and β gradients (affine layers' come after, ``schedule.affine_gradients``).
    ``seed``, ``step``: the training step's dropout masks."""
    rec, coef = net.rec, net.coef
    B = work.tb.shape[0]
    d = layer_rows(work.deltas, rec, l, B)
    h = work.x if l == 0 else layer_rows(work.acts, rec, l - 1, B)
    below = IDENTITY if l == 0 else rec[l - 1, ACT]
    dh = layer_rows(work.deltas, rec, l - 1, B) if l > 0 else work.x[:0]
    kind = rec[l, KIND]
    if kind == BATCHNORM:
        gamma, _ = norm_params(flat, rec, l)
        dgamma, dbeta = norm_params(grad, rec, l)
        channels, S, stats, normed = _norm_state(rec, l, work, B)
        c0, c1 = block_bounds(channels, split[0], k)
        batchnorm_backward_channels(d, normed, gamma, stats, dgamma, dbeta, dh, h, below, S, c0, c1)
        return
    if kind == AFFINE:
        weights, _ = affine_params(flat, rec, l)
        r0, r1, c0, c1 = product_block(B, rec[l, IN_SIZE], split, k)
        _input_grad_block(d, weights, h, dh, r0, r1, c0, c1, work.one_zero, below)
        return
    r0, r1 = block_bounds(B, split[0], k)
    dropout_backward_rows(d, dh, h, layer_rows(work.acts, rec, l, B), below, coef[l, RATIO], seed, step, rec[l, KEY],
                          r0, r1)  # fmt: skip


@njit(parallel=True, cache=True)
def engine_step_unchecked(X, T, idx, flat, grad, net, work, seed, step, optimizer, update, x_divisor):
    """One step on rows ``idx`` of (X, T): forward (dropout masks of training step ``step``
    under ``seed``, batch norm on the batch's statistics), softmax-CE plus weight decay, backward
    into ``grad`` and, with ``update``, the running statistics moved and the optimizer's update of
    ``flat`` (``optimizer`` = (kind, hyper, s1, s2) as ``optimizer.update_range`` takes them).
    Returns the loss before it; a non-finite loss changes nothing. ``net`` an ``EngineNetwork``,
    ``work`` an ``EngineWork`` for B = len(idx) rows (or plain tuples in their order). Unchecked."""
    return _step(X, T, idx, flat, grad, EngineNetwork(*net), EngineWork(*work), seed, step, optimizer, update,
                 x_divisor)  # fmt: skip


@njit(parallel=True, cache=True)
def _step(X, T, idx, flat, grad, net, work, seed, step, optimizer, update, x_divisor):
    B = idx.shape[0]
    inv_batch = 1.0 / B
    x, tb, row_check = work.x, work.tb, work.row_check
    row_loss = work.row_loss  # a local: a prange body writing through a tuple's field lost the writes
    by_rows = row_local(net.rec)
    if by_rows:
        forward_backward_by_rows(X, T, idx, flat, net, work, seed, step, inv_batch, x_divisor)
    else:
        nb = num_blocks(B)
        for k in prange(nb):
            r0, r1 = block_bounds(B, nb, k)
            _gather_rows(X, T, idx, x, tb, row_check, r0, r1, x_divisor)
    for i in range(B):
        if row_check[i] != 0.0:
            raise ValueError("x has NaN or infinity in row " + str(idx[i]))
    if not by_rows:
        z = _forward(x, flat, net, work, (seed, step, True))
        dz = layer_rows(work.deltas, net.rec, net.rec.shape[0] - 1, B)
        for i in prange(B):
            row_loss[i] = _softmax_ce_row(z, tb, dz, i, inv_batch)
    loss = 0.0
    for i in range(B):  # fixed order: the loss does not depend on the thread count
        loss += row_loss[i]
    loss = loss * inv_batch + engine_decay_loss(flat, net.rec, net.coef)
    if update and not np.isfinite(loss):
        return loss  # diverged: the parameters stay the last finite ones
    if not by_rows:
        _backward(flat, grad, net, work, B, seed, step)
    lr_t = next_rate(optimizer[0], optimizer[1]) if update else 0.0
    affine_gradients(flat, grad, net, work, optimizer, update, lr_t)
    if update:
        update_other_params(flat, grad, net, optimizer, lr_t)
        move_running(net, work)
    return loss


@njit(parallel=True, cache=True)
def engine_steps(X, T, batches, flat, grad, net, work, seed, first_step, optimizer, losses, x_divisor):
    """``engine_step_unchecked`` on each row of ``batches`` in turn (updating; step s's masks are
    those of ``first_step + s``), behind one ``checks.check_batches`` of every batch first. losses[s] =
    step s's; stops after a step whose loss is not finite. Returns the steps taken."""
    named, network = EngineWork(*work), EngineNetwork(*net)
    if losses.shape[0] < batches.shape[0]:
        raise ValueError("losses needs one entry per batch")
    check_batches(X, T, batches, network.rec, named.tb.shape[0])
    for s in range(batches.shape[0]):
        losses[s] = _step(X, T, batches[s], flat, grad, network, named, seed, first_step + s, optimizer, True,
                          x_divisor)  # fmt: skip
        if not np.isfinite(losses[s]):
            return s + 1
    return batches.shape[0]
