"""A MultiLayerNet step's weight gradients, in one balanced parallel region, each block followed by
the optimizer's update of the parameters it wrote; and weight decay (its loss and its gradient)."""

import numpy as np
from numba import njit, prange

from .decay import add_decay, sum_of_squares
from .layers import _column_sums, _weight_grad_block
from .layout import hidden_offset, layer_offset, layer_params, layer_rows
from .optimizer import next_rate, update_range
from .partition import WORK_PER_BLOCK, max_blocks, product_block, product_split


@njit(cache=True)
def weight_decay_loss(flat, sizes, decay):
    """½·λ·Σ‖W_l‖² over the weight matrices (not the biases), summed in a fixed order."""
    total = 0.0
    for l in range(1, sizes.shape[0]):
        W, _ = layer_params(flat, sizes, l)
        total += sum_of_squares(W.reshape(W.size))
    return 0.5 * decay * total


BIAS_TASK, EXTRA_TASK = -1, -2  # the weight-gradient region's tasks that are not a product block


@njit(cache=True)
def _gradient_tasks(sizes, B, extra):
    """The weight-gradient region's tasks and the block that runs each, by the shapes only.

    Task i is block ``part[i]`` of layer ``layer[i]``'s weight-gradient product
    (``product_split``), or that layer's bias gradient (``BIAS_TASK``), or, with
    ``extra`` > 0, the update of the parameters after every W and b (batch norm's
    gamma and beta: ``EXTRA_TASK``). The blocks are as many as the total work
    supports (at most ``max_blocks()``, each with WORK_PER_BLOCK multiply-adds and
    one task at least); tasks go largest first to the block with the least work so
    far (ties: the lower number): the first layer's product is most of the work,
    and a prange over the tasks in order (Numba gives each thread one contiguous
    range) gave one thread nearly all of it. Returns (layer, part, owner); the
    blocks are numbered 0 .. max(owner).
    """
    L = sizes.shape[0] - 1
    count = 0
    for l in range(1, L + 1):
        split = product_split(sizes[l - 1], B, sizes[l])
        count += split[0] * split[1] + 1
    count += 1 if extra > 0 else 0
    layer, part, cost = np.empty(count, np.int64), np.empty(count, np.int64), np.empty(count, np.int64)
    i = 0
    for l in range(1, L + 1):
        split = product_split(sizes[l - 1], B, sizes[l])
        for k in range(split[0] * split[1]):
            r0, r1, c0, c1 = product_block(sizes[l - 1], sizes[l], split, k)
            layer[i], part[i], cost[i] = l, k, (r1 - r0) * (c1 - c0) * B
            i += 1
        layer[i], part[i], cost[i] = l, BIAS_TASK, B * sizes[l]
        i += 1
    if extra > 0:
        layer[i], part[i], cost[i] = 0, EXTRA_TASK, extra
    total = 0
    for i in range(count):
        total += cost[i]
    nb = max(1, min(max_blocks(), count, total // WORK_PER_BLOCK))
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
def _weight_gradients(flat, grad, sizes, decay, work, optimizer, update):
    """dW_l = h_{l-1}ᵀ d_l (+ λ W_l) and db_l = Σ_rows d_l of every layer, in one parallel region
    (the tasks of ``work.tasks``, planned once per workspace by ``_gradient_tasks``); with
    ``update``, each task then applies the optimizer to the parameters whose gradient it wrote,
    while they are in its cache (batch norm's gamma and beta, whose gradients are written
    before, in a task of their own)."""
    L = sizes.shape[0] - 1
    B = work.x.shape[0]
    kind, hyper, s1, s2 = optimizer
    lr_t = next_rate(kind, hyper) if update else 0.0
    params_end = layer_offset(sizes, L + 1)
    layer, part, owner = work.tasks[0], work.tasks[1], work.tasks[2]
    nb = 0
    for i in range(owner.shape[0]):
        nb = max(nb, owner[i] + 1)
    col_acc = work.col_acc
    for block in prange(nb):
        for i in range(layer.shape[0]):
            if owner[i] != block:
                continue
            l = layer[i]
            if part[i] == EXTRA_TASK:
                if update:
                    update_range(kind, flat, grad, s1, s2, hyper, lr_t, params_end, flat.shape[0])
                continue
            n = sizes[l]
            w0 = layer_offset(sizes, l)  # W_l's start in the flat vectors, b_l's after it
            if part[i] == BIAS_TASK:  # summed over the rows in order
                _, db = layer_params(grad, sizes, l)
                _column_sums(layer_rows(work.deltas, sizes, B, l), db, col_acc[hidden_offset(sizes, l) :])
                if update:
                    b0 = w0 + sizes[l - 1] * n
                    update_range(kind, flat, grad, s1, s2, hyper, lr_t, b0, b0 + n)
                continue
            h = work.x if l == 1 else layer_rows(work.acts, sizes, B, l - 1)
            dW, _ = layer_params(grad, sizes, l)
            split = product_split(sizes[l - 1], B, n)
            _weight_grad_block(h, layer_rows(work.deltas, sizes, B, l), work.alpha_beta, dW, split, part[i])
            d0, d1, h0, h1 = product_block(sizes[l - 1], n, split, part[i])
            if decay != 0:
                W, _ = layer_params(flat, sizes, l)
                add_decay(dW[d0:d1, h0:h1], W[d0:d1, h0:h1], decay)
            if update:  # rows d0:d1, columns h0:h1 of W_l
                if h0 == 0 and h1 == n:
                    update_range(kind, flat, grad, s1, s2, hyper, lr_t, w0 + d0 * n, w0 + d1 * n)
                else:
                    for d in range(d0, d1):
                        update_range(kind, flat, grad, s1, s2, hyper, lr_t, w0 + d * n + h0, w0 + d * n + h1)
