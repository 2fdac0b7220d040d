"""The engine's schedules: how a step's work is split into parallel regions where the plain
layer-by-layer loop of ``engine`` would leave time on the table.

Row-local networks (affine and dropout layers; at test time batch norm too) are taken a block of
rows at a time through every layer in one parallel region (``test_forward_by_rows``,
``forward_backward_by_rows``): the rows a layer reads are still in cache, and the region is
entered once, not once per layer. At test time every network is row-local: each image goes
through the convolutions and pools on its own too, so ``predict`` and ``accuracy`` take a few
images at a time through the whole network while their activations are in cache, as an
inference engine does (the same per-image kernels as the layer-by-layer loop: the same bits).
The blocks take the images in turns from a shared counter, whichever is free first, not a fixed
half each: a core slowed by something else then takes fewer turns instead of being waited for.
Each image's result does not depend on which block computes it: the same bits whoever does.

The weight gradients of affine layers, and the optimizer's update.

After the backward pass has written every layer's input gradient (``deltas``), the affine
layers' weight gradients dW_l = h_{l-1}ᵀ·d_l are independent products: one parallel region runs
them all, as tasks (each a block of one product, ``product_split``, or one layer's bias sums)
planned once per batch size. Tasks go largest first to the block with the least work so far:
the first layer's product is most of the work, and Numba gives each thread one contiguous range
of a prange, so a prange over the tasks in order handed one of two threads nearly all of it.
Each task adds weight decay to the gradient it wrote and, in a training step, applies the
optimizer to those parameters while they are in its cache. The parameters of other kinds (conv
filters, batch norm's γ and β), whose gradients the backward pass wrote, are updated after it.
The blocks are numbered by the shapes only: the same bits whatever the number of threads.
"""

import numpy as np
from numba import njit, prange

from .activations import IDENTITY, RELU, activation_forward
from .batchnorm import SCALE, SHIFT, batchnorm_test_in_place, batchnorm_test_rows, batchnorm_test_transform
from .codes import _gather_rows
from .conv import (
    _pad_image,
    _padded_plane,
    conv_forward_images,
    cut_wide,
    direct_filters,
    direct_tiles,
    no_winners,
    padded_size,
    tiles_output,
    uses_direct,
    uses_shifted,
    uses_weight_tiles,
    uses_winograd,
    wide_pixels,
    winograd_filters,
    zero_border,
)
from .decay import add_decay
from .dropout import dropout_backward_rows, dropout_rows, dropout_scale_in_place
from .forward import ROWS_PER_PASS
from .layers import _affine_block, _affine_rows, _column_sums, _input_grad_rows, _softmax_ce_row, _weight_grad_block
from .optimizer import update_range
from .partition import WORK_PER_BLOCK, block_bounds, fetch_add, max_blocks, num_blocks, product_block, product_split
from .pool import max_pool_into, pool_forward_images, pool_test_images
from .records import (
    ACT,
    ACT_OFF,
    AFFINE,
    B_OFF,
    BATCHNORM,
    CONV,
    DECAY,
    DROPOUT,
    FH,
    FW,
    IN_SIZE,
    KEY,
    KIND,
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
    H,
    W,
    affine_params,
    conv_filters,
    conv_geometry,
    layer_aux,
    layer_rows,
    norm_params,
    norm_stats,
    pool_geometry,
)

BIAS_TASK = -1  # a task that sums a layer's bias gradient (else: the number of a product block)
WHOLE_TASK = -2  # a task that runs a layer's whole product (a serial step: one block)
# images a block takes through the image layers at a time at test time (``test_forward_by_rows``): few enough
# that the blocks finish together when one core runs slower, enough that the shared counter is seldom touched
IMAGES_PER_TURN = 16


@njit(cache=True)
def _task_split(d, B, n, whole):
    return (1, 1) if whole else product_split(d, B, n)


@njit(cache=True)
def plan_gradient_tasks(rec, B, whole=False):
    """(layer, part, owner) of every task of the weight-gradient region for batches of B rows:
    task i is block ``part[i]`` of layer ``layer[i]``'s product, or its bias sums (``BIAS_TASK``),
    run by block ``owner[i]``. As many blocks as the work supports (at most ``max_blocks()``, each
    WORK_PER_BLOCK multiply-adds at least, one task at least). ``whole``: for a serial step, each
    product one task (``WHOLE_TASK``), one block."""
    count = 0
    for l in range(rec.shape[0]):
        if rec[l, KIND] == AFFINE:
            split = _task_split(rec[l, IN_SIZE], B, rec[l, OUT_SIZE], whole)
            count += split[0] * split[1] + 1
    layer, part, cost = (
        np.empty(count, np.int64),
        np.empty(count, np.int64),
        np.empty(count, np.int64),
    )
    i = 0
    for l in range(rec.shape[0]):
        if rec[l, KIND] != AFFINE:
            continue
        d, n = rec[l, IN_SIZE], rec[l, OUT_SIZE]
        split = _task_split(d, B, n, whole)
        for k in range(split[0] * split[1]):
            r0, r1, c0, c1 = product_block(d, n, split, k)
            layer[i], part[i], cost[i] = l, WHOLE_TASK if whole else k, (r1 - r0) * (c1 - c0) * B
            i += 1
        layer[i], part[i], cost[i] = l, BIAS_TASK, B * n
        i += 1
    total = 0
    for i in range(count):
        total += cost[i]
    nb = 1 if whole else max(1, min(max_blocks(), count, total // WORK_PER_BLOCK))
    owner = np.full(count, -1, np.int64)
    load = np.zeros(nb, np.int64)
    for _ in range(count):
        largest = -1
        for i in range(count):
            if owner[i] < 0 and (largest < 0 or cost[i] > cost[largest]):
                largest = i
        least = 0
        for k in range(1, nb):
            if load[k] < load[least]:
                least = k
        owner[largest] = least
        load[least] += cost[largest]
    return layer, part, owner


@njit(parallel=True, cache=True)
def affine_gradients(flat, grad, net, work, optimizer, update, lr_t):
    """dW_l = h_{l-1}ᵀ d_l (+ λ_l W_l) and db_l = Σ_rows d_l of every affine layer, in one parallel
    region (the tasks of ``work.tasks``); with ``update``, each task then applies the optimizer
    (at rate ``lr_t``) to the parameters whose gradient it wrote."""
    for block in prange(task_blocks(work.tasks)):
        gradient_tasks(flat, grad, net, work, optimizer, update, lr_t, block)


@njit(cache=True)
def task_blocks(tasks):
    """How many blocks the tasks of the weight-gradient region (``plan_gradient_tasks``) go to."""
    nb = 0
    for i in range(tasks.shape[1]):
        nb = max(nb, tasks[2, i] + 1)
    return nb


@njit(cache=True)
def gradient_tasks(flat, grad, net, work, optimizer, update, lr_t, block):
    """The tasks of ``work.tasks`` that block ``block`` runs (``affine_gradients``), serial."""
    rec, coef = net.rec, net.coef
    B = work.x.shape[0]
    kind, hyper, s1, s2 = optimizer
    layer, part, owner = work.tasks[0], work.tasks[1], work.tasks[2]
    acts, deltas, acc = work.acts, work.deltas, work.acc
    for i in range(layer.shape[0]):
        if owner[i] != block:
            continue
        l = layer[i]
        d, n, w0, b0 = rec[l, IN_SIZE], rec[l, OUT_SIZE], rec[l, W_OFF], rec[l, B_OFF]
        dout = deltas[rec[l, ACT_OFF] * B : (rec[l, ACT_OFF] + n) * B].reshape((B, n))
        if part[i] == BIAS_TASK:  # summed over the rows in order
            _column_sums(dout, grad[b0 : b0 + n], acc[rec[l, ACT_OFF] :])
            if update:
                update_range(kind, flat, grad, s1, s2, hyper, lr_t, b0, b0 + n)
            continue
        if l == 0:
            h = work.x
        else:
            o = rec[l - 1, ACT_OFF] * B
            h = acts[o : o + B * d].reshape((B, d))
        dW = grad[w0:b0].reshape((d, n))
        whole = part[i] == WHOLE_TASK
        split, k = _task_split(d, B, n, whole), 0 if whole else part[i]
        _weight_grad_block(h, dout, work.one_zero, dW, split, k)
        d0, d1, h0, h1 = product_block(d, n, split, k)
        if coef[l, DECAY] != 0:
            add_decay(dW[d0:d1, h0:h1], flat[w0:b0].reshape((d, n))[d0:d1, h0:h1], coef[l, DECAY])
        if update:  # rows d0:d1, columns h0:h1 of W_l
            if h0 == 0 and h1 == n:
                update_range(kind, flat, grad, s1, s2, hyper, lr_t, w0 + d0 * n, w0 + d1 * n)
            else:
                for r in range(d0, d1):
                    update_range(kind, flat, grad, s1, s2, hyper, lr_t, w0 + r * n + h0, w0 + r * n + h1)


@njit(parallel=True, cache=True)
def update_other_params(flat, grad, net, optimizer, lr_t):
    """The optimizer's update of every parameter that is not an affine layer's (conv filters and
    biases, batch norm's γ and β), in blocks over each layer's range."""
    rec = net.rec
    kind, hyper, s1, s2 = optimizer
    for l in range(rec.shape[0]):
        lo, hi = other_params(rec, l)
        n = hi - lo
        nu = num_blocks(n) if n else 0
        for k in prange(nu):
            a, b = block_bounds(n, nu, k)
            update_range(kind, flat, grad, s1, s2, hyper, lr_t, lo + a, lo + b)


@njit(cache=True)
def other_params(rec, l):
    """Where layer l's parameters lie in the flat vector, (lo, hi), if they are not an affine
    layer's (conv W and b, batch norm's γ and β); else (0, 0)."""
    if rec[l, KIND] != CONV and rec[l, KIND] != BATCHNORM:
        return 0, 0
    return rec[l, W_OFF], rec[l, B_OFF] + rec[l, OC]  # W (γ), then b (β)


@njit(cache=True)
def row_local(rec):
    """Whether every layer of a training step works on each row on its own (so that one parallel
    region can take a block of rows through the whole network): affine and dropout layers only;
    convolutions, pools and batch norm run their own parallel loops. (At test time every network
    goes through ``test_forward_by_rows``.)"""
    for l in range(rec.shape[0]):
        kind = rec[l, KIND]
        if kind != AFFINE and kind != DROPOUT:
            return False
    return True


@njit(cache=True)
def row_work(rec):
    """Multiply-adds per row of a network's affine and convolution layers: sizes the row blocks."""
    total = 0
    for l in range(rec.shape[0]):
        if rec[l, KIND] == AFFINE:
            total += rec[l, IN_SIZE] * rec[l, OUT_SIZE]
        elif rec[l, KIND] == CONV:
            total += rec[l, OUT_SIZE] * rec[l, C] * rec[l, FH] * rec[l, FW]
    return total


@njit(cache=True)
def image_layers(rec):
    """How many layers, from the first, work on images (up to the last convolution or pool, and the
    batch norm a convolution there takes in, ``folds_batchnorm``): the part the test-time pass
    takes an image at a time (``test_image``); the dense layers above it take ROWS_PER_PASS rows."""
    n = 0
    for l in range(rec.shape[0]):
        if rec[l, KIND] == CONV or rec[l, KIND] == POOL:
            n = l + 1
    if n > 0 and folds_batchnorm(rec, n - 1):
        n += 1
    return n


@njit(cache=True)
def folds_batchnorm(rec, l):
    """Whether layer l, a convolution, takes the batch norm above it into its filters and bias at
    test time (``test_filters``): a direct-tile convolution without an activation of its own,
    right below a batch-norm layer (whose test-time map is a scale and a shift per channel)."""
    return (rec[l, KIND] == CONV and uses_direct(rec[l, STRIDE]) and rec[l, ACT] == IDENTITY
            and l + 1 < rec.shape[0] and rec[l + 1, KIND] == BATCHNORM)  # fmt: skip


@njit(cache=True)
def fuses_pool(rec, l, top):
    """Whether convolution l's test-time pass pools its output itself (``test_image``): a
    direct-tile convolution whose output (that of layer ``top``: the batch norm it folds, or its
    own) a pool without padding reads."""
    p = top + 1
    return uses_direct(rec[l, STRIDE]) and p < rec.shape[0] and rec[p, KIND] == POOL and rec[p, PAD] == 0


@njit(cache=True)
def pools_in_training(rec, l):
    """Whether convolution l's training pass pools its output itself (``conv.conv_forward_rows`` with winners)
    and its backward takes the pool's gradient (``conv.conv_backward_rows``' ``pool``): a direct-tile
    convolution (ReLU or no activation) with its backward by weight tiles (``uses_weight_tiles``), right
    below a 2×2 pool at stride 2 without padding. Its own output and gradient are never written:
    the pool, the one layer that reads them, reads the wide output where the tiles left it, and
    its gradient goes to its winners straight in the weight tiles' planes."""
    if rec[l, KIND] != CONV or l + 1 >= rec.shape[0] or rec[l + 1, KIND] != POOL:
        return False
    p = l + 1
    return (uses_direct(rec[l, STRIDE]) and (rec[l, ACT] == RELU or rec[l, ACT] == IDENTITY)
            and uses_weight_tiles(rec[l, C], rec[l, OC], rec[l, FH], rec[l, FW], rec[l, STRIDE], l > 0)
            and rec[p, FH] == 2 and rec[p, FW] == 2 and rec[p, STRIDE] == 2 and rec[p, PAD] == 0)  # fmt: skip


@njit(cache=True)
def test_transforms(flat, net, work):
    """Every batch-norm layer's test-time map, a scale and a shift per channel from γ, β and the
    running statistics, into its statistics in ``work`` (``batchnorm_test_transform``)."""
    rec, running_mean, running_var = net.rec, net.running_mean, net.running_var
    for l in range(rec.shape[0]):
        if rec[l, KIND] == BATCHNORM:
            gamma, beta = norm_params(flat, rec, l)
            o, n = rec[l, RUN_OFF], rec[l, C]
            batchnorm_test_transform(gamma, beta, running_mean[o : o + n], running_var[o : o + n],
                                     norm_stats(work.stats, rec, l))  # fmt: skip


@njit(cache=True)
def test_filters(flat, net, work):
    """Every convolution's filters and bias as its test-time pass reads them, in an array laid out
    as ``flat`` (each layer's where its W and b are there; the rest unused): filters that run by
    direct tiles in their order (``conv.direct_filters``), the others unread; each bias copied.
    A convolution that folds the batch norm above it (``folds_batchnorm``) gets that layer's map,
    y = scale·(W∗x + b) + shift, taken in: filters scale·W, bias scale·b + shift (computed in
    float64; batch norm's maps already in ``work.stats``, ``test_transforms``). Filters that run by
    Winograd's transform (``uses_winograd``) are transformed too, after the rest (``winograd_at``)."""
    rec = net.rec
    params = np.empty(winograd_at(rec, rec.shape[0], flat.itemsize), flat.dtype)
    for l in range(rec.shape[0]):
        if rec[l, KIND] != CONV:
            continue
        b0, fn = rec[l, B_OFF], rec[l, OC]
        filters = conv_filters(flat, rec, l)
        if folds_batchnorm(rec, l):
            stats = norm_stats(work.stats, rec, l + 1)
            scaled = np.empty(filters.shape, flat.dtype)
            for f in range(fn):
                scale = stats[SCALE, f]
                params[b0 + f] = scale * flat[b0 + f] + stats[SHIFT, f]
                for j in range(filters.shape[1]):
                    scaled[f, j] = scale * filters[f, j]
            filters = scaled
        else:
            params[b0 : b0 + fn] = flat[b0 : b0 + fn]
        if uses_direct(rec[l, STRIDE]):
            direct_filters(filters, rec[l, C], rec[l, FH], rec[l, FW], params[rec[l, W_OFF] :])
        if conv_by_winograd(rec, l, flat.itemsize):
            winograd_filters(filters, rec[l, C], params[winograd_at(rec, l, flat.itemsize) :], False)
    return params


@njit(cache=True)
def conv_by_winograd(rec, l, itemsize):
    """Whether layer l is a convolution whose forward runs by Winograd's transform, for values of
    ``itemsize`` bytes (``conv.uses_winograd``)."""
    return rec[l, KIND] == CONV and uses_winograd(rec[l, C], rec[l, H], rec[l, W], rec[l, OC], rec[l, FH], rec[l, FW],
                                                  rec[l, STRIDE], rec[l, PAD], itemsize)  # fmt: skip


@njit(cache=True)
def winograd_at(rec, l, itemsize):
    """Where in ``test_filters``' array layer l's transformed filters begin (16 values for each
    weight): after every convolution's filters and bias, then each Winograd layer's below l in turn
    (l = the number of layers: the array's size)."""
    at = 0
    for m in range(rec.shape[0]):
        if rec[m, KIND] == CONV:
            at = rec[m, B_OFF] + rec[m, OC]
    for m in range(l):
        if conv_by_winograd(rec, m, itemsize):
            at += 16 * rec[m, OC] * rec[m, C]
    return at


@njit(cache=True)
def takes_padded(rec, m, l1):
    """Whether layer m (< l1) reads its input as an image zero-padded for direct tiles
    (``conv.padded_size`` values): then the layer below writes its output there (``test_image``)."""
    return m < l1 and rec[m, KIND] == CONV and uses_direct(rec[m, STRIDE])


@njit(cache=True)
def handoff_size(rec):
    """Values of one padded input of the largest direct-tile convolution (``takes_padded``)."""
    size = 0
    for m in range(rec.shape[0]):
        if takes_padded(rec, m, rec.shape[0]):
            size = max(size, padded_size(rec[m, C], rec[m, H], rec[m, W], rec[m, FW], rec[m, PAD]))
    return size


@njit(parallel=True, cache=True)
def test_forward_by_rows(x, flat, net, work):
    """Test time through the whole network (``row_local``), in two parallel regions: the first
    takes each image through the convolutions and pools alone (``test_image``), its blocks taking
    turns of IMAGES_PER_TURN images from a shared counter (``fetch_add``); the second takes each
    block of rows through the dense layers above them, ROWS_PER_PASS rows at a time, so each
    layer reads rows the one below just wrote, still in cache, and the weights once per pass.
    Batch norm and dropout are then a map of each value (a scale and a shift; a scale): above the
    first layer they work in place on the rows below instead of writing buffers of their own.
    Returns the logits' view of ``work.acts``."""
    rec = net.rec
    B = x.shape[0]
    test_transforms(flat, net, work)
    params = test_filters(flat, net, work)
    nb = num_blocks(B, B * row_work(rec))
    split = image_layers(rec)
    if split > 0:
        buffers = np.empty((nb, 2, handoff_size(rec)), flat.dtype)
        turn = min(IMAGES_PER_TURN, -(-B // nb))  # a few images: one turn a block
        taken = np.zeros(1, np.int64)
        for k in prange(nb):
            while True:  # to whichever block is free first: no core waits on a slower one
                n0 = fetch_add(taken, turn)
                if n0 >= B:
                    break
                for n in range(n0, min(n0 + turn, B)):
                    test_image(x, n, flat, net, work, split, params, k, buffers[k])
    for k in prange(nb):
        r0, r1 = block_bounds(B, nb, k)
        for c0 in range(r0, r1, ROWS_PER_PASS):
            test_rows(x, flat, net, work, split, rec.shape[0], c0, min(c0 + ROWS_PER_PASS, r1), params, k)
    return layer_rows(work.acts, rec, logits_layer(rec), B)


# where a direct-tile convolution leaves its output at test time (``handoff``)
OWN_BUFFER, BY_TILES, BY_COPY = 0, 1, 2


@njit(cache=True)
def handoff(rec, l, l1, itemsize):
    """(top, above, where) for convolution l (direct tiles) at test time, the image layers ending
    at l1 (``test_image``): top the layer whose output it gives (the batch norm it folds, or
    itself), above the layer that reads that (past the pool it fuses, ``fuses_pool``), and where
    it leaves it: OWN_BUFFER (its buffer, or the pool's) or the padded input of the direct-tile
    convolution above — BY_TILES (the tiles write it: no pool, an activation they apply, the same
    padded width, so that their sums over the padding land on the padding, and their last vector
    inside the plane, and tiles on the padded image, not on shifted copies nor Winograd's
    transform) or BY_COPY (the cut of the tiles' output, or the pool, writes it)."""
    top = l + 1 if folds_batchnorm(rec, l) else l
    pooled = top + 1 < l1 and fuses_pool(rec, l, top)
    above = top + 2 if pooled else top + 1
    if not takes_padded(rec, above, l1):
        return top, above, OWN_BUFFER
    act, pad, pad2 = rec[top, ACT], rec[l, PAD], rec[above, PAD]
    _, Wp = _padded_plane(rec[l, H], rec[l, W], rec[l, FW], pad)
    Hq2, Wp2 = _padded_plane(rec[above, H], rec[above, W], rec[above, FW], pad2)
    N = wide_pixels(rec[l, OH], Wp, itemsize)
    fits = Wp2 == Wp and pad2 * Wp2 + pad2 + N <= Hq2 * Wp2
    shifted = uses_shifted(rec[l, H], rec[l, W], rec[l, FH], rec[l, FW], pad, itemsize)
    tiled = not shifted and not conv_by_winograd(rec, l, itemsize)
    return top, above, BY_TILES if not pooled and (act == RELU or act == IDENTITY) and fits and tiled else BY_COPY


@njit(cache=True)
def test_image(x, n, flat, net, work, l1, params, k, buffers):
    """Image n of x through layers 0:l1 at test time, serial (``test_forward_by_rows``; block k's
    scratch ``work.col[k]``; ``buffers`` two of ``handoff_size`` values, used in turn). A
    direct-tile convolution takes in the batch norm it folds and the pool above it (the pool
    reads its wide output where the tiles left it) and writes its output where ``handoff`` says:
    into the padded input of the direct-tile convolution above (then ``zero_border``), which
    reads it there instead of padding a copy, or into its own buffer (a 3×3 convolution by
    Winograd's transform where ``conv_by_winograd``, its filters transformed by ``test_filters``).
    Every other layer goes as ``test_rows`` takes it."""
    rec = net.rec
    B = x.shape[0]
    scratch = work.col[k]
    padded = False  # whether layer l's input is in buffers[cur], padded for it
    cur = 0
    l = 0
    while l < l1:
        if not takes_padded(rec, l, l1):
            test_rows(x, flat, net, work, l, l + 1, n, n + 1, params, k)
            padded, l = False, l + 1
            continue
        top, above, where = handoff(rec, l, l1, flat.itemsize)
        act, b0, fn, pad = rec[top, ACT], rec[l, B_OFF], rec[l, OC], rec[l, PAD]
        b, geometry = params[b0 : b0 + fn], conv_geometry(rec, l)
        w0 = winograd_at(rec, l, flat.itemsize) if conv_by_winograd(rec, l, flat.itemsize) else rec[l, W_OFF]
        filters = params[w0:]
        Hq, Wp = _padded_plane(rec[l, H], rec[l, W], rec[l, FW], pad)
        xp, out = buffers[cur], buffers[1 - cur]
        if not padded:
            _pad_image(layer_input(x, work.acts, rec, l)[n], rec[l, C], rec[l, H], rec[l, W], pad, Hq, Wp, xp)
        pooled = above == top + 2
        o = top + 1 if pooled else l  # the layer whose output size this pass writes
        OH_, OW_ = rec[o, OH], rec[o, OW]
        if where == OWN_BUFFER:
            out = layer_rows(work.acts, rec, o, B)[n]  # (a batch norm it folds has nothing left to do)
            plane, row, first = OH_ * OW_, OW_, 0
        else:
            pad2 = rec[above, PAD]
            Hq2, Wp2 = _padded_plane(OH_, OW_, rec[above, FW], pad2)
            plane, row, first = Hq2 * Wp2, Wp2, pad2 * Wp2 + pad2
        if where == BY_TILES:  # the wide rows land on the padded rows
            direct_tiles(xp, filters, b, out, first, plane, geometry, act)
        else:
            wide, N, wide_row = tiles_output(xp, filters, b, scratch, geometry, act)
            if pooled:
                _, _, _, ph, pw, stride, _, _, _ = pool_geometry(rec, o)
                max_pool_into(wide, N, wide_row, fn, ph, pw, stride, OH_, OW_, out, first, plane, row)
            else:
                cut_wide(wide, N, wide_row, fn, OH_, OW_, out, first, plane, row)
        if act != RELU and act != IDENTITY:  # after the pool: activations never decrease; the padding's zeros
            activation_forward(act, out[: fn * plane])  # are written after it
        if where != OWN_BUFFER:
            zero_border(out, fn, OH_, OW_, rec[above, PAD], plane // row, row)
        cur, padded = (1 - cur, True) if where != OWN_BUFFER else (cur, False)
        l = above


@njit(cache=True)
def logits_layer(rec):
    """The layer whose buffer holds the logits after ``test_rows``: the last affine layer (dropout
    above it scales them in place)."""
    last = rec.shape[0] - 1
    while rec[last, KIND] != AFFINE:
        last -= 1
    return last


@njit(cache=True)
def test_rows(x, flat, net, work, l0, l1, c0, c1, params, k):
    """Rows c0:c1 of x through layers l0:l1 at test time, serial (``test_forward_by_rows``; batch
    norm's maps already in ``work.stats``, ``test_transforms``; the convolutions' filters and bias
    in ``params``, ``test_filters``; block k's scratch ``work.col[k]``). Layer l0's input is x's
    rows for l0 = 0, else what layers below l0 left in their buffers (``layer_input``). Direct-tile
    convolutions, whose ``params`` may hold a batch norm folded in, go through ``test_image``: the
    convolutions here are the unfolded route's."""
    rec, coef = net.rec, net.coef
    B = x.shape[0]
    h = layer_input(x, work.acts, rec, l0)
    for l in range(l0, l1):
        kind, act = rec[l, KIND], rec[l, ACT]
        if kind == AFFINE:
            out = layer_rows(work.acts, rec, l, B)
            weights, bias = affine_params(flat, rec, l)
            _affine_rows(h, weights, bias, out, work.one_zero, c0, c1, 0, weights.shape[1], act)
            h = out
        elif kind == CONV:
            out, b0 = layer_rows(work.acts, rec, l, B), rec[l, B_OFF]
            conv_forward_images(h, conv_filters(flat, rec, l), params[rec[l, W_OFF] :], params[b0 : b0 + rec[l, OC]],
                                out, no_winners(work.winners), work.col[k], conv_geometry(rec, l), act,
                                (work.one_zero, work.one_one), c0, c1)  # fmt: skip
            h = out
        elif kind == POOL:
            out = layer_rows(work.acts, rec, l, B)
            if rec[l, PAD] == 0:  # nothing reads the winners at test time
                pool_test_images(h, out, pool_geometry(rec, l), c0, c1)
            else:
                pool_forward_images(h, out, layer_aux(work.winners, rec, l, B), pool_geometry(rec, l), c0, c1)
            h = out
        elif l == 0:  # the input is the caller's: these write their own buffer
            out = layer_rows(work.acts, rec, l, B)
            if kind == DROPOUT:
                dropout_rows(h, out, coef[l, RATIO], 0, 0, rec[l, KEY], False, c0, c1)
            else:
                batchnorm_test_rows(h, out, norm_stats(work.stats, rec, l), rec[l, H] * rec[l, W], c0, c1, 0,
                                    rec[l, C], act)  # fmt: skip
            h = out
        elif kind == DROPOUT:
            dropout_scale_in_place(h, coef[l, RATIO], c0, c1)
        else:
            batchnorm_test_in_place(h, norm_stats(work.stats, rec, l), rec[l, H] * rec[l, W], c0, c1, act)


@njit(cache=True)
def layer_input(x, acts, rec, l):
    """The rows layer l reads at test time: x for the first layer; else the buffer of the layer
    below, or of the one below that for a batch norm or dropout above the first layer (those work
    in place at test time, ``test_rows``)."""
    if l == 0:
        return x
    below = l - 1
    while below > 0 and (rec[below, KIND] == BATCHNORM or rec[below, KIND] == DROPOUT):
        below -= 1
    return layer_rows(acts, rec, below, x.shape[0])


@njit(parallel=True, cache=True)
def forward_backward_by_rows(X, T, idx, flat, net, work, seed, step, inv_batch, x_divisor):
    """A training step's gather, forward, loss and input gradients through a row-local network
    (``_row_local``): one parallel region, each block of rows gathered, through every layer, the
    loss and back down to the first layer; the weight gradients come after, in their own region."""
    rec, coef = net.rec, net.coef
    B, L = idx.shape[0], rec.shape[0]
    x, tb, acts, deltas, one_zero, row_loss = work.x, work.tb, work.acts, work.deltas, work.one_zero, work.row_loss
    nb = num_blocks(B, B * row_work(rec))
    split = (nb, 1)  # rows only: block k of every layer is rows block_bounds(B, nb, k)
    for k in prange(nb):
        r0, r1 = block_bounds(B, nb, k)
        _gather_rows(X, T, idx, x, tb, work.row_check, r0, r1, x_divisor)
        h = x
        for l in range(L):
            out = layer_rows(acts, rec, l, B)
            if rec[l, KIND] == AFFINE:
                weights, bias = affine_params(flat, rec, l)
                _affine_block(h, weights, bias, out, one_zero, split, k, rec[l, ACT])
            else:
                dropout_rows(h, out, coef[l, RATIO], seed, step, rec[l, KEY], True, r0, r1)
            h = out
        dz = layer_rows(deltas, rec, L - 1, B)
        for i in range(r0, r1):
            row_loss[i] = _softmax_ce_row(h, tb, dz, i, inv_batch)
        for l in range(L - 1, 0, -1):
            d, below = layer_rows(deltas, rec, l, B), rec[l - 1, ACT]
            h, dh = layer_rows(acts, rec, l - 1, B), layer_rows(deltas, rec, l - 1, B)
            if rec[l, KIND] == AFFINE:
                weights, _ = affine_params(flat, rec, l)
                _input_grad_rows(d, weights, h, dh, r0, r1, one_zero, below)
            else:
                out = layer_rows(acts, rec, l, B)
                dropout_backward_rows(d, dh, h, out, below, coef[l, RATIO], seed, step, rec[l, KEY], r0, r1)
