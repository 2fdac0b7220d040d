"""The layer engine: a network as a sequence of layer records, one compiled forward and one
compiled training step that run any such sequence (chapters 7-8's convnets).

A network is an int64 array ``net`` with one row per layer (the columns below): its kind
(``AFFINE``, ``CONV``, ``POOL``, ``DROPOUT``), the activation fused into its output (``layers.IDENTITY`` or
``RELU``), its input and output geometry per image, its filter, stride and padding, where its
W and b start in the one flat parameter vector, and where its output starts in the workspace.
Every layer's outputs for a batch of B rows live in one flat buffer ``acts`` (layer l's are a
(B, OUT_SIZE) block at B·ACT_OFF), their gradients in ``deltas`` with the same layout, so an
image is a row of C·H·W values in NCHW order and an affine layer after a pool reads the book's
flattening as it is. The net's last layer is affine and feeds softmax-with-cross-entropy.

One step (``engine_step_unchecked``)::

    X[idx] --gather--> x;  for each layer: acts_l = layer_l(acts_{l-1})      (``engine_forward``)
    logits, t --softmax-CE--> loss, deltas_L
    for l = L..1: dW_l, db_l (conv: per block of images, partials summed in block order);
                  deltas_{l-1} = backward_l(deltas_l) ⊙ act'(acts_{l-1})   (not for the first layer)
                  (dropout draws its mask again from the counters: nothing is stored)
    the optimizer's update of the whole flat vector, one parallel pass

Dispatch is an integer test per layer inside one compiled function: it caches like any other
(no function objects as arguments). A new layer kind is a module with its forward and backward
(``conv``, ``pool``) and one branch in each loop here.
"""

from collections import namedtuple

import numpy as np
from numba import njit, prange

from .codes import _gather_rows
from .conv import conv_backward_rows, conv_forward_rows, conv_scratch_size, output_size
from .forward import _count_correct
from .layers import IDENTITY, RELU, _affine_block, _column_sums, _input_grad_rows, _softmax_ce_row, _weight_grad_block
from .optimizer import next_rate, update_range
from .partition import block_bounds, num_blocks, product_split
from .pool import pool_backward_rows, pool_forward_rows
from .regularize import dropout_row_key, dropout_uniform

AFFINE, CONV, POOL, DROPOUT = 1, 2, 3, 4
# The columns of a layer record.
(KIND, ACT, IN_SIZE, OUT_SIZE, C, H, W, OC, OH, OW, FH, FW, STRIDE, PAD, W_OFF, B_OFF, ACT_OFF,
 AUX_OFF, RATIO) = range(19)  # fmt: skip
FIELDS = 19
RATIO_UNIT = 1e-9  # a dropout ratio is kept in its record as an integer number of these

EngineWork = namedtuple(
    "EngineWork",
    [
        "x",  # (B, D) the gathered inputs
        "tb",  # (B,) int64 the gathered labels
        "acts",  # flat: every layer's outputs for B rows
        "deltas",  # flat: their gradients, the same layout
        "winners",  # int64 flat: every pool layer's winners for B rows
        "col",  # (blocks, the most conv_scratch_size) the convolutions' scratch, a row per block of images
        "dcol",  # the same, for their gradients
        "taps",  # (the largest conv W size,) a convolution's filters tap by tap (shifted products)
        "parts",  # (blocks, max conv W size + filters) per-block filter and bias gradients
        "acc",  # float64 scratch for sums in a fixed order
        "row_loss",  # (B,) float64
        "row_check",  # (B,) float64, 0 where the gathered row is finite
        "one_zero",  # (2,) BLAS's (alpha, beta) = (1, 0)
        "one_one",  # (2,) (1, 1): accumulate
    ],
)


def layer_records(input_shape, layers):
    """(net, number of parameters) for ``layers`` applied to images of ``input_shape`` (C, H, W):
    each layer a tuple ('conv', FN, FH, FW, stride, pad, act), ('pool', ph, pw, stride, pad),
    ('affine', n, act) or ('dropout', ratio). Raises ValueError for a geometry that does not fit."""
    net = np.zeros((len(layers), FIELDS), np.int64)
    c, h, w = input_shape
    params = act_off = aux_off = 0
    for l, spec in enumerate(layers):
        rec = net[l]
        rec[IN_SIZE], rec[C], rec[H], rec[W] = c * h * w, c, h, w
        kind = spec[0]
        if kind == "conv":
            _, fn, fh, fw, stride, pad, act = spec
            oh, ow = output_size(h, fh, stride, pad), output_size(w, fw, stride, pad)
            if oh < 1 or ow < 1:
                raise ValueError(f"layer {l + 1} (conv {fh}×{fw}, stride {stride}, pad {pad}) does not fit its "
                                 f"{h}×{w} input: size + 2·pad − filter must be a multiple of the stride, "
                                 "and not negative")  # fmt: skip
            rec[KIND], rec[ACT], rec[OC], rec[OH], rec[OW] = CONV, act, fn, oh, ow
            rec[FH], rec[FW], rec[STRIDE], rec[PAD] = fh, fw, stride, pad
            rec[W_OFF], rec[B_OFF] = params, params + fn * c * fh * fw
            params += fn * c * fh * fw + fn
        elif kind == "pool":
            _, ph, pw, stride, pad = spec
            oh, ow = output_size(h, ph, stride, pad), output_size(w, pw, stride, pad)
            if oh < 1 or ow < 1:
                raise ValueError(f"layer {l + 1} (pool {ph}×{pw}, stride {stride}, pad {pad}) does not fit its "
                                 f"{h}×{w} input: size + 2·pad − window must be a multiple of the stride, "
                                 "and not negative")  # fmt: skip
            rec[KIND], rec[ACT], rec[OC], rec[OH], rec[OW] = POOL, IDENTITY, c, oh, ow
            rec[FH], rec[FW], rec[STRIDE], rec[PAD] = ph, pw, stride, pad
            rec[AUX_OFF] = aux_off
            aux_off += c * oh * ow
        elif kind == "dropout":
            _, ratio = spec
            rec[KIND], rec[ACT], rec[OC], rec[OH], rec[OW] = DROPOUT, IDENTITY, c, h, w
            rec[RATIO] = round(ratio / RATIO_UNIT)
        else:
            _, n, act = spec
            rec[KIND], rec[ACT], rec[OC], rec[OH], rec[OW] = AFFINE, act, n, 1, 1
            rec[W_OFF], rec[B_OFF] = params, params + c * h * w * n
            params += c * h * w * n + n
        rec[OUT_SIZE] = rec[OC] * rec[OH] * rec[OW]
        rec[ACT_OFF] = act_off
        act_off += rec[OUT_SIZE]
        c, h, w = rec[OC], rec[OH], rec[OW]
    return net, params


def new_engine_work(batch, net, dtype, blocks):
    """An ``EngineWork`` for batches of ``batch`` rows of ``net``; ``blocks``: the most blocks a
    parallel loop uses (``_cores.BLOCKS``)."""
    conv = net[net[:, KIND] == CONV]
    pool = net[net[:, KIND] == POOL]
    kp = max([int(conv_scratch_size(*r[[C, H, W, OC, FH, FW, STRIDE, PAD]])) for r in conv] + [1])
    wsize = int(max((conv[:, OC] * (conv[:, C] * conv[:, FH] * conv[:, FW] + 1)).max(initial=0), 1))
    outs = int(net[:, OUT_SIZE].sum())
    one_zero, one_one = np.zeros(2, dtype), np.ones(2, dtype)
    one_zero[0] = 1
    return EngineWork(
        x=np.empty((batch, int(net[0, IN_SIZE])), dtype), tb=np.empty(batch, np.int64),
        acts=np.empty(batch * outs, dtype), deltas=np.empty(batch * outs, dtype),
        winners=np.empty(batch * int(pool[:, OUT_SIZE].sum()), np.int64),
        col=np.empty((blocks, kp), dtype), dcol=np.empty((blocks, kp), dtype), taps=np.empty(wsize, dtype),
        parts=np.empty((blocks, wsize), dtype),
        acc=np.empty(max(wsize, int(net[:, OUT_SIZE].max()))), row_loss=np.empty(batch), row_check=np.empty(batch),
        one_zero=one_zero, one_one=one_one,
    )  # fmt: skip


@njit(cache=True)
def layer_rows(buf, net, l, B):
    """Layer l's outputs (or their gradients) for B rows: a (B, OUT_SIZE) view of the flat buffer."""
    o, n = net[l, ACT_OFF] * B, net[l, OUT_SIZE]
    return buf[o : o + B * n].reshape((B, n))


@njit(cache=True)
def layer_winners(buf, net, l, B):
    """Pool layer l's winners for B rows: a (B, OUT_SIZE) view."""
    o, n = net[l, AUX_OFF] * B, net[l, OUT_SIZE]
    return buf[o : o + B * n].reshape((B, n))


@njit(cache=True)
def affine_params(flat, net, l):
    """W (IN_SIZE, OUT_SIZE) and b (OUT_SIZE,) of affine layer l, views of the flat vector."""
    d, n, w0, b0 = net[l, IN_SIZE], net[l, OUT_SIZE], net[l, W_OFF], net[l, B_OFF]
    return flat[w0 : w0 + d * n].reshape((d, n)), flat[b0 : b0 + n]


@njit(cache=True)
def _dropout_rows(h, out, ratio, seed, step, layer, train, r0, r1):
    """Rows r0:r1 of out = h ⊙ mask in training (unit j of row i kept where its counter-based draw
    for (seed, step, layer, i, j) exceeds the ratio: ``regularize``'s masks), h·(1 − ratio) at test time."""
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
        src, dst, hin = d[i], dh[i], h[i]
        for j in range(src.shape[0]):
            keep = dropout_uniform(key, j) > ratio and (below != RELU or hin[j] > 0)
            dst[j] = src[j] if keep else 0


@njit(parallel=True, cache=True)
def engine_forward(x, flat, net, work, masks):
    """Every layer's output for the rows of x (B, IN_SIZE of the first layer) into ``work.acts``;
    returns the logits' view (B, classes). ``masks`` = (seed, step, train): dropout's masks are
    those of training step ``step`` when ``train``, else dropout scales. Unchecked."""
    B = x.shape[0]
    seed, step, train = masks
    h = x
    for l in range(net.shape[0]):
        out = layer_rows(work.acts, net, l, B)
        kind, act = net[l, KIND], net[l, ACT]
        if kind == AFFINE:
            weights, bias = affine_params(flat, net, l)
            split = product_split(B, weights.shape[0], weights.shape[1])
            one_zero = work.one_zero
            for k in prange(split[0] * split[1]):
                _affine_block(h, weights, bias, out, one_zero, split, k, act)
        elif kind == CONV:
            w0, b0 = net[l, W_OFF], net[l, B_OFF]
            conv_forward_rows(h, flat[w0:b0], flat[b0 : b0 + net[l, OC]], out, work.col, work.taps, net[l, C],
                              net[l, H], net[l, W], net[l, FH], net[l, FW], net[l, STRIDE], net[l, PAD], act,
                              work.one_zero, work.one_one)  # fmt: skip
        elif kind == POOL:
            pool_forward_rows(h, out, layer_winners(work.winners, net, l, B), net[l, C], net[l, H], net[l, W],
                              net[l, FH], net[l, FW], net[l, STRIDE], net[l, PAD])  # fmt: skip
        else:
            nb = num_blocks(B)
            ratio = net[l, RATIO] * RATIO_UNIT
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


@njit(parallel=True, cache=True)
def _backward(flat, grad, net, work, B, seed, step):
    """Every layer's parameter gradients into ``grad``, from ``work.deltas`` of the last layer down
    (``seed``, ``step``: the training step's dropout masks)."""
    L = net.shape[0]
    for l in range(L - 1, -1, -1):
        d = layer_rows(work.deltas, net, l, B)
        h = work.x if l == 0 else layer_rows(work.acts, net, l - 1, B)
        below = IDENTITY if l == 0 else net[l - 1, ACT]
        dh = layer_rows(work.deltas, net, l - 1, B) if l > 0 else work.x[:0]
        kind = net[l, KIND]
        if kind == AFFINE:
            weights, _ = affine_params(flat, net, l)
            dW, db = affine_params(grad, net, l)
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
            w0, b0, fn = net[l, W_OFF], net[l, B_OFF], net[l, OC]
            conv_backward_rows(h, flat[w0:b0], d, grad[w0:b0], grad[b0 : b0 + fn], dh, work.col, work.dcol,
                               work.taps, work.parts, work.acc, net[l, C], net[l, H], net[l, W], net[l, FH], net[l, FW],
                               net[l, STRIDE], net[l, PAD], below, work.one_zero, work.one_one)  # fmt: skip
        elif kind == POOL and l > 0:
            pool_backward_rows(d, layer_winners(work.winners, net, l, B), dh, h, below)
        elif l > 0:
            nb = num_blocks(B)
            ratio = net[l, RATIO] * RATIO_UNIT
            for k in prange(nb):
                r0, r1 = block_bounds(B, nb, k)
                _dropout_backward_rows(d, dh, h, below, ratio, seed, step, l + 1, r0, r1)


@njit(parallel=True, cache=True)
def engine_step_unchecked(X, T, idx, flat, grad, net, work, seed, step, optimizer, update, x_divisor):
    """One step on rows ``idx`` of (X, T): forward (dropout masks of training step ``step``
    under ``seed``), softmax-CE, backward into ``grad`` and, with ``update``, the optimizer's
    update of ``flat`` (``optimizer`` = (kind, hyper, s1, s2) as ``optimizer.update_range``
    takes them). Returns the loss before it; a non-finite loss changes nothing. ``work`` is an
    ``EngineWork`` (or a plain tuple in its order) for B = len(idx) rows. Unchecked."""
    return _step(X, T, idx, flat, grad, net, EngineWork(*work), seed, step, optimizer, update, x_divisor)


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
    dz = layer_rows(work.deltas, net, net.shape[0] - 1, B)
    row_loss = work.row_loss  # a local: a prange body writing through a tuple's field lost the writes
    for i in prange(B):
        row_loss[i] = _softmax_ce_row(z, tb, dz, i, inv_batch)
    loss = 0.0
    for i in range(B):  # fixed order: the loss does not depend on the thread count
        loss += row_loss[i]
    loss *= inv_batch
    if update and not np.isfinite(loss):
        return loss  # diverged: the parameters stay the last finite ones
    _backward(flat, grad, net, work, B, seed, step)
    if update:
        kind, hyper, s1, s2 = optimizer
        lr_t = next_rate(kind, hyper)
        n = flat.shape[0]
        nu = num_blocks(n)
        for k in prange(nu):
            lo, hi = block_bounds(n, nu, k)
            update_range(kind, flat, grad, s1, s2, hyper, lr_t, lo, hi)
    return loss


@njit(cache=True)
def check_batches(X, T, batches, net, batch):
    """What the steps take from the caller, checked before the first one: X's width, one label
    per row, every batch index inside X and every label of a batch inside [0, C)."""
    classes = net[net.shape[0] - 1, OUT_SIZE]
    if X.shape[1] != net[0, IN_SIZE]:
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
    check_batches(X, T, batches, net, EngineWork(*work).tb.shape[0])


@njit(parallel=True, cache=True)
def engine_steps(X, T, batches, flat, grad, net, work, seed, first_step, optimizer, losses, x_divisor):
    """``engine_step_unchecked`` on each row of ``batches`` in turn (updating; step s's masks are
    those of ``first_step + s``), behind one ``check_batches`` of every batch first. losses[s] =
    step s's; stops after a step whose loss is not finite. Returns the steps taken."""
    named = EngineWork(*work)
    if losses.shape[0] < batches.shape[0]:
        raise ValueError("the network: losses needs one entry per batch")
    check_batches(X, T, batches, net, named.tb.shape[0])
    for s in range(batches.shape[0]):
        losses[s] = _step(X, T, batches[s], flat, grad, net, named, seed, first_step + s, optimizer, True, x_divisor)
        if not np.isfinite(losses[s]):
            return s + 1
    return batches.shape[0]
