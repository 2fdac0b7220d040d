"""The layer engine: a network as a sequence of layer records, one compiled forward and one
compiled training step that run any such sequence.

A network is an ``EngineNetwork``: ``rec``, an int64 array with one row per layer (the columns
below): its kind (``AFFINE``, ``CONV``, ``POOL``, ``DROPOUT``, ``BATCHNORM``), the activation
fused into its output (``activations.IDENTITY``, ``RELU``, ``SIGMOID``), its input and output
geometry per image, its filter, stride and padding, where its parameters start in the one flat
parameter vector (W and b; γ and β for batch norm), where its output starts in the workspace and
where its winners, x̂ or statistics live; ``coef``, a float64 row per layer (dropout's ratio,
weight decay's λ, batch norm's momentum); ``running``, batch norm's running mean and variance
(2, channels of every batch-norm layer). Every layer's outputs for a batch of B rows live in one
flat buffer ``acts`` (layer l's are a (B, OUT_SIZE) block at B·ACT_OFF), their gradients in
``deltas`` with the same layout, so an image is a row of C·H·W values in NCHW order and an
affine layer after a pool reads the book's flattening as it is. The net's last layer with
parameters is affine (only dropout may follow it) and feeds softmax-with-cross-entropy.

One step (``engine_step_unchecked``)::

    X[idx] --gather--> x;  for each layer: acts_l = layer_l(acts_{l-1})      (``engine_forward``)
    logits, t --softmax-CE--> loss (+ ½·Σ λ_l‖W_l‖²), deltas_L
    for l = L..1: the layer's parameter gradients (+ λ_l·W_l);
                  deltas_{l-1} = backward_l(deltas_l) ⊙ act'(acts_{l-1})   (not for the first layer)
                  (dropout draws its mask again from the counters: nothing is stored)
    batch norm's running statistics move toward the batch's
    the optimizer's update of the whole flat vector, one parallel pass

Each layer kind is a module with its forward beside its backward (``affine`` in ``layers``,
``conv``, ``pool``, ``batchnorm``, dropout in ``regularize``); every backward ends with the one
activation-derivative rule of ``activations``. Dispatch is an integer test per layer inside one
compiled function: it caches like any other (no function objects as arguments). A new layer
kind is its module, its row in ``layer_records`` and one branch in each of the two loops here
(``engine_forward``, ``_backward``). The records are built in ``records``.
"""

import numpy as np
from numba import njit, prange

from .activations import IDENTITY, activation_backward
from .batchnorm import (
    batchnorm_backward_channels,
    batchnorm_test_channels,
    batchnorm_train_channels,
    move_running_statistics,
)
from .codes import _gather_rows
from .conv import conv_backward_rows, conv_forward_rows
from .decay import add_decay, sum_of_squares
from .forward import _count_correct
from .layers import _affine_block, _column_sums, _input_grad_rows, _softmax_ce_row, _weight_grad_block
from .optimizer import next_rate, update_range
from .partition import block_bounds, num_blocks, product_split
from .pool import pool_backward_rows, pool_forward_rows
from .records import (  # noqa: F401  the records' names, for the engine's users
    ACT,
    ACT_OFF,
    AFFINE,
    AUX_OFF,
    B_OFF,
    BATCHNORM,
    CONV,
    DECAY,
    DROPOUT,
    FH,
    FIELDS,
    FW,
    IN_SIZE,
    KIND,
    MOMENTUM,
    OC,
    OH,
    OUT_SIZE,
    OW,
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
    layer_records,
    new_engine_network,
    new_engine_work,
)
from .regularize import dropout_row_key, dropout_uniform


@njit(cache=True)
def layer_rows(buf, rec, l, B):
    """Layer l's outputs (or their gradients) for B rows: a (B, OUT_SIZE) view of the flat buffer."""
    o, n = rec[l, ACT_OFF] * B, rec[l, OUT_SIZE]
    return buf[o : o + B * n].reshape((B, n))


@njit(cache=True)
def layer_aux(buf, rec, l, B):
    """Layer l's winners (pool) or x̂ (batch norm) for B rows: a (B, OUT_SIZE) view."""
    o, n = rec[l, AUX_OFF] * B, rec[l, OUT_SIZE]
    return buf[o : o + B * n].reshape((B, n))


@njit(cache=True)
def affine_params(flat, rec, l):
    """W (IN_SIZE, OUT_SIZE) and b (OUT_SIZE,) of affine layer l, views of the flat vector."""
    d, n, w0, b0 = rec[l, IN_SIZE], rec[l, OUT_SIZE], rec[l, W_OFF], rec[l, B_OFF]
    return flat[w0 : w0 + d * n].reshape((d, n)), flat[b0 : b0 + n]


@njit(cache=True)
def _weights(flat, rec, l):
    """Layer l's weights, flat (conv: FN·C·FH·FW, affine: IN_SIZE·OUT_SIZE)."""
    return flat[rec[l, W_OFF] : rec[l, B_OFF]]


@njit(cache=True)
def _channels(flat, rec, l):
    """Batch-norm layer l's (γ, β), views of the flat vector."""
    c, w0, b0 = rec[l, C], rec[l, W_OFF], rec[l, B_OFF]
    return flat[w0 : w0 + c], flat[b0 : b0 + c]


@njit(cache=True)
def _norm_state(rec, l, work, B):
    """Batch-norm layer l's (channels, values per channel per row, its statistics (STATS, channels),
    its x̂ (B, OUT_SIZE), the blocks its parallel loops use)."""
    channels, o = rec[l, C], rec[l, RUN_OFF]
    nb = num_blocks(channels)
    return channels, rec[l, H] * rec[l, W], work.stats[:, o : o + channels], layer_aux(work.normed, rec, l, B), nb


@njit(cache=True)
def _dropout_rows(h, out, ratio, seed, step, layer, train, r0, r1):
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
def _dropout_backward_rows(d, dh, h, below, ratio, seed, step, layer, r0, r1):
    """Rows r0:r1 of dh = d ⊙ mask (the forward's, drawn again) ⊙ act'(below) read from h."""
    for i in range(r0, r1):
        key = dropout_row_key(seed, step, layer, i)
        src, dst = d[i], dh[i]
        for j in range(src.shape[0]):
            dst[j] = src[j] if dropout_uniform(key, j) > ratio else 0
        activation_backward(below, dst, h[i])


@njit(parallel=True, cache=True)
def engine_forward(x, flat, net, work, masks):
    """Every layer's output for the rows of x (B, IN_SIZE of the first layer) into ``work.acts``;
    returns the logits' view (B, classes). ``masks`` = (seed, step, train): in training, dropout
    draws the masks of training step ``step`` and batch norm uses the batch's statistics (its x̂
    and statistics kept in ``work``); else dropout scales and batch norm uses the running
    statistics. ``net`` an ``EngineNetwork`` (or a plain tuple in its order). Unchecked."""
    rec, coef, running = net
    B = x.shape[0]
    seed, step, train = masks
    h = x
    for l in range(rec.shape[0]):
        out = layer_rows(work.acts, rec, l, B)
        kind, act = rec[l, KIND], rec[l, ACT]
        if kind == AFFINE:
            weights, bias = affine_params(flat, rec, l)
            split = product_split(B, weights.shape[0], weights.shape[1])
            one_zero = work.one_zero
            for k in prange(split[0] * split[1]):
                _affine_block(h, weights, bias, out, one_zero, split, k, act)
        elif kind == CONV:
            b0 = rec[l, B_OFF]
            conv_forward_rows(h, _weights(flat, rec, l), flat[b0 : b0 + rec[l, OC]], out, work.col, work.taps,
                              rec[l, C], rec[l, H], rec[l, W], rec[l, FH], rec[l, FW], rec[l, STRIDE], rec[l, PAD],
                              act, work.one_zero, work.one_one)  # fmt: skip
        elif kind == POOL:
            pool_forward_rows(h, out, layer_aux(work.winners, rec, l, B), rec[l, C], rec[l, H], rec[l, W],
                              rec[l, FH], rec[l, FW], rec[l, STRIDE], rec[l, PAD])  # fmt: skip
        elif kind == BATCHNORM:
            gamma, beta = _channels(flat, rec, l)
            channels, S, stats, normed, nb = _norm_state(rec, l, work, B)
            o = rec[l, RUN_OFF]
            for k in prange(nb):
                c0, c1 = block_bounds(channels, nb, k)
                if train:
                    batchnorm_train_channels(h, out, normed, gamma, beta, stats, S, c0, c1, act)
                else:
                    batchnorm_test_channels(h, out, gamma, beta, running[:, o : o + channels], stats, S, c0, c1, act)
        else:
            nb = num_blocks(B)
            ratio = coef[l, RATIO]
            for k in prange(nb):
                r0, r1 = block_bounds(B, nb, k)
                _dropout_rows(h, out, ratio, seed, step, l + 1, train, r0, r1)
        h = out
    return h


@njit(parallel=True, cache=True)
def engine_correct_count_unchecked(x, t, flat, net, work):
    """How many rows of x the network (at test time) classifies as t; -1 if a logit is not finite.
    Unchecked."""
    return _count_correct(engine_forward(x, flat, net, work, (0, 0, False)), t)


@njit(cache=True)
def engine_decay_loss(flat, net):
    """½·Σ_l λ_l·‖W_l‖² over the layers with weight decay, in layer order (float64)."""
    rec, coef, _ = net
    total = 0.0
    for l in range(rec.shape[0]):
        if coef[l, DECAY] != 0:
            total += 0.5 * coef[l, DECAY] * sum_of_squares(_weights(flat, rec, l))
    return total


@njit(cache=True)
def engine_move_running(net, work):
    """Every batch-norm layer's running statistics moved toward the last training pass's (its
    statistics in ``work``), with the layer's momentum: what a training pass leaves behind."""
    rec, coef, running = net
    for l in range(rec.shape[0]):
        if rec[l, KIND] == BATCHNORM:
            o, n = rec[l, RUN_OFF], rec[l, C]
            move_running_statistics(running[:, o : o + n], work.stats[:, o : o + n], coef[l, MOMENTUM])


@njit(parallel=True, cache=True)
def _backward(flat, grad, net, work, B, seed, step):
    """Every layer's parameter gradients into ``grad``, from ``work.deltas`` of the last layer down
    (``seed``, ``step``: the training step's dropout masks)."""
    rec, coef, _ = net
    for l in range(rec.shape[0] - 1, -1, -1):
        d = layer_rows(work.deltas, rec, l, B)
        h = work.x if l == 0 else layer_rows(work.acts, rec, l - 1, B)
        below = IDENTITY if l == 0 else rec[l - 1, ACT]
        dh = layer_rows(work.deltas, rec, l - 1, B) if l > 0 else work.x[:0]
        kind = rec[l, KIND]
        if kind == AFFINE:
            weights, _ = affine_params(flat, rec, l)
            dW, db = affine_params(grad, rec, l)
            split = product_split(weights.shape[0], B, weights.shape[1])
            one_zero = work.one_zero
            for k in prange(split[0] * split[1]):
                _weight_grad_block(h, d, one_zero, dW, split, k)
            _column_sums(d, db, work.acc)
            if l > 0:
                nr = num_blocks(B, B * weights.shape[0] * weights.shape[1])
                for k in prange(nr):
                    r0, r1 = block_bounds(B, nr, k)
                    _input_grad_rows(d, weights, h, dh, r0, r1, one_zero, below)
        elif kind == CONV:
            b0, fn = rec[l, B_OFF], rec[l, OC]
            conv_backward_rows(h, _weights(flat, rec, l), d, _weights(grad, rec, l), grad[b0 : b0 + fn], dh, work.col,
                               work.dcol, work.taps, work.parts, work.acc, rec[l, C], rec[l, H], rec[l, W], rec[l, FH],
                               rec[l, FW], rec[l, STRIDE], rec[l, PAD], below, work.one_zero,
                               work.one_one)  # fmt: skip
        elif kind == BATCHNORM:
            gamma, _ = _channels(flat, rec, l)
            dgamma, dbeta = _channels(grad, rec, l)
            channels, S, stats, normed, nb = _norm_state(rec, l, work, B)
            for k in prange(nb):
                c0, c1 = block_bounds(channels, nb, k)
                batchnorm_backward_channels(d, normed, gamma, stats, dgamma, dbeta, dh, h, below, S, c0, c1)
        elif kind == POOL and l > 0:
            pool_backward_rows(d, layer_aux(work.winners, rec, l, B), dh, h, below)
        elif kind == DROPOUT and l > 0:
            nb = num_blocks(B)
            ratio = coef[l, RATIO]
            for k in prange(nb):
                r0, r1 = block_bounds(B, nb, k)
                _dropout_backward_rows(d, dh, h, below, ratio, seed, step, l + 1, r0, r1)
        if coef[l, DECAY] != 0:  # the book's λ·W, added to the layer's weight gradient
            n = rec[l, B_OFF] - rec[l, W_OFF]
            add_decay(_weights(grad, rec, l).reshape((1, n)), _weights(flat, rec, l).reshape((1, n)), coef[l, DECAY])


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
    nb = num_blocks(B)
    for k in prange(nb):
        r0, r1 = block_bounds(B, nb, k)
        _gather_rows(X, T, idx, x, tb, row_check, r0, r1, x_divisor)
    for i in range(B):
        if row_check[i] != 0.0:
            raise ValueError("the network: x has NaN or infinity in row", idx[i])
    z = engine_forward(x, flat, net, work, (seed, step, True))
    dz = layer_rows(work.deltas, net.rec, net.rec.shape[0] - 1, B)
    row_loss = work.row_loss  # a local: a prange body writing through a tuple's field lost the writes
    for i in prange(B):
        row_loss[i] = _softmax_ce_row(z, tb, dz, i, inv_batch)
    loss = 0.0
    for i in range(B):  # fixed order: the loss does not depend on the thread count
        loss += row_loss[i]
    loss = loss * inv_batch + engine_decay_loss(flat, net)
    if update and not np.isfinite(loss):
        return loss  # diverged: the parameters stay the last finite ones
    _backward(flat, grad, net, work, B, seed, step)
    if update:
        engine_move_running(net, work)
        kind, hyper, s1, s2 = optimizer
        lr_t = next_rate(kind, hyper)
        n = flat.shape[0]
        nu = num_blocks(n)
        for k in prange(nu):
            lo, hi = block_bounds(n, nu, k)
            update_range(kind, flat, grad, s1, s2, hyper, lr_t, lo, hi)
    return loss


@njit(cache=True)
def check_batches(X, T, batches, rec, batch):
    """What the steps take from the caller, checked before the first one: X's width, one label
    per row, every batch index inside X and every label of a batch inside [0, C)."""
    classes = rec[rec.shape[0] - 1, OUT_SIZE]
    if X.shape[1] != rec[0, IN_SIZE]:
        raise ValueError("the network: x must have C·H·W values per row")
    if T.shape[0] != X.shape[0]:
        raise ValueError("the network: t must have one label per row of x")
    if batches.shape[1] != batch:
        raise ValueError("the network: the batches do not match the workspace")
    for s in range(batches.shape[0]):
        for i in range(batches.shape[1]):
            row = batches[s, i]
            if row < 0 or row >= X.shape[0]:
                raise ValueError("the network: a batch index lies outside [0, len(x)); (position, index) =", i, row)
            if T[row] < 0 or T[row] >= classes:
                raise ValueError("the network: labels must lie in [0, C); (row, label, C) =", row, T[row], classes)


@njit(cache=True)
def engine_steps_check(X, T, batches, net, work):
    """``check_batches`` against the workspace ``work`` (an ``EngineWork`` as a tuple)."""
    check_batches(X, T, batches, EngineNetwork(*net).rec, EngineWork(*work).tb.shape[0])


@njit(parallel=True, cache=True)
def engine_steps(X, T, batches, flat, grad, net, work, seed, first_step, optimizer, losses, x_divisor):
    """``engine_step_unchecked`` on each row of ``batches`` in turn (updating; step s's masks are
    those of ``first_step + s``), behind one ``check_batches`` of every batch first. losses[s] =
    step s's; stops after a step whose loss is not finite. Returns the steps taken."""
    named, network = EngineWork(*work), EngineNetwork(*net)
    if losses.shape[0] < batches.shape[0]:
        raise ValueError("the network: losses needs one entry per batch")
    check_batches(X, T, batches, network.rec, named.tb.shape[0])
    for s in range(batches.shape[0]):
        losses[s] = _step(X, T, batches[s], flat, grad, network, named, seed, first_step + s, optimizer, True,
                          x_divisor)  # fmt: skip
        if not np.isfinite(losses[s]):
            return s + 1
    return batches.shape[0]
