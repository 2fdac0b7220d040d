"""The engine's schedule for K networks of one architecture trained together (``NetStack``).

A small network's step is many small products with a synchronisation between each; K of them
fed the same batch need none between them. So the stacked step gathers the batch once (a
parallel region over its rows) and then runs the K members' whole steps in one parallel loop over
the members, each member's step serial and alone on its core: the engine's own layer blocks
(``engine.forward_block``, ``engine.backward_block``, ``schedule.gradient_tasks``), each layer
in one block. A member whose loss stops being finite is frozen (``active[k]`` cleared) and the
others go on.

Members run layers whose work splits into blocks of rows or channels (affine, batch norm,
dropout: ``stackable``); convolutions and pools run their own parallel loops, and a stack of
convnets trains its members one after another, each on every core (``fastnet.stack``).

Member k's parameters, gradient and optimizer state are row k of (K, P) arrays; its running
statistics, coefficients (weight decay, dropout ratio) and buffers row k of (K, ...) arrays.
"""

import numpy as np
from numba import njit, prange

from .codes import _gather_rows
from .engine import backward_block, engine_decay_loss, forward_block, move_running, new_engine_work
from .forward import _count_correct
from .layers import _softmax_ce_row
from .optimizer import next_rate, update_range
from .partition import block_bounds, num_blocks
from .records import AFFINE, BATCHNORM, DROPOUT, KIND, EngineNetwork, EngineWork, layer_rows
from .schedule import (
    gradient_tasks,
    logits_layer,
    other_params,
    plan_gradient_tasks,
    task_blocks,
    test_rows,
    test_transforms,
)

MEMBER_FIELDS = ("acts", "deltas", "normed", "stats", "acc", "row_loss")  # a row per member; the rest shared
ONE_BLOCK = (1, 1)


def stackable(rec):
    """Whether the stack's kernel runs networks of these records (affine, batch norm, dropout)."""
    return bool(np.isin(rec[:, KIND], (AFFINE, BATCHNORM, DROPOUT)).all())


def new_stack_work(members, batch, net, dtype, training=True):
    """An ``EngineWork`` for ``members`` networks like ``net`` (an ``EngineNetwork``) and batches of
    ``batch`` rows: the fields of ``MEMBER_FIELDS`` with a row per member, the gathered batch shared;
    ``training=False``: for ``stack_correct_counts_unchecked``, chunks of ``batch`` rows."""
    one = new_engine_work(batch, net, dtype, 1, training)
    if training:  # a serial step: each weight gradient one product
        one = one._replace(tasks=np.stack(plan_gradient_tasks(net.rec, batch, True)))
    return EngineWork(*(np.zeros((members,) + a.shape, a.dtype) if name in MEMBER_FIELDS else a
                        for name, a in zip(EngineWork._fields, one)))  # fmt: skip


@njit(cache=True)
def _member(nets, w, m):
    """Member m's ``EngineNetwork`` and ``EngineWork``: row m of the per-member arrays."""
    rec, coefs, means, variances = nets
    work = EngineWork(w.x, w.tb, w.acts[m], w.deltas[m], w.winners, w.normed[m], w.stats[m], w.col, w.dcol, w.taps,
                      w.parts, w.acc[m], w.tasks, w.row_loss[m], w.row_check, w.one_zero, w.one_one)  # fmt: skip
    return EngineNetwork(rec, coefs[m], means[m], variances[m]), work


@njit(cache=True)
def _member_step(flat, grad, net, work, seed, step, optimizer):
    """One member's step on the gathered batch (``work.x``, ``work.tb``), serial: every layer in one
    block, then the optimizer; returns the loss (nothing changes if it is not finite)."""
    rec = net.rec
    B, L = work.tb.shape[0], rec.shape[0]
    inv_batch = 1.0 / B
    h = work.x
    for l in range(L):
        out = layer_rows(work.acts, rec, l, B)
        forward_block(h, out, flat, net, work, l, (seed, step, True), ONE_BLOCK, 0)
        h = out
    dz = layer_rows(work.deltas, rec, L - 1, B)
    loss = 0.0
    for i in range(B):
        loss += _softmax_ce_row(h, work.tb, dz, i, inv_batch)
    loss = loss * inv_batch + engine_decay_loss(flat, rec, net.coef)
    if not np.isfinite(loss):
        return loss
    for l in range(L - 1, -1, -1):
        if l > 0 or rec[l, KIND] == BATCHNORM:
            backward_block(flat, grad, net, work, l, seed, step, ONE_BLOCK, 0)
    kind, hyper, s1, s2 = optimizer
    lr_t = next_rate(kind, hyper)
    for block in range(task_blocks(work.tasks)):
        gradient_tasks(flat, grad, net, work, optimizer, True, lr_t, block)
    for l in range(L):
        lo, hi = other_params(rec, l)
        update_range(kind, flat, grad, s1, s2, hyper, lr_t, lo, hi)
    move_running(net, work)
    return loss


@njit(parallel=True, cache=True)
def stack_steps_unchecked(X, T, batches, flats, grads, nets, work, masks, optimizers, active, losses, x_divisor):
    """For each row of ``batches``: gather it once, then one step of every active member.
    losses[s, k] = member k's loss at step s (NaN once frozen); a member whose loss is not finite
    is left as it was and frozen (active[k] = False).

    ``nets`` = (rec, coefs (K, L, COEFS), running means (K, R), running variances (K, R)); ``work``
    from ``new_stack_work`` (as a plain tuple); ``masks`` = (seeds, first steps): member k's dropout
    masks at step s are numbered first_steps[k] + s under seeds[k]; ``optimizers`` = (kinds (K,),
    hypers (K, 4), s1 (K, P), s2 (K, P)). Unchecked (``checks.check_batches`` first)."""
    seeds, first_steps = masks
    kinds, hypers, s1, s2 = optimizers
    w = EngineWork(*work)
    K, B = flats.shape[0], batches.shape[1]
    for s in range(batches.shape[0]):
        idx = batches[s]
        nb = num_blocks(B)
        for k in prange(nb):
            r0, r1 = block_bounds(B, nb, k)
            _gather_rows(X, T, idx, w.x, w.tb, w.row_check, r0, r1, x_divisor)
        for i in range(B):
            if w.row_check[i] != 0.0:
                raise ValueError("x has NaN or infinity in row " + str(idx[i]))
        for m in prange(K):
            if not active[m]:
                losses[s, m] = np.nan
            else:
                net, member = _member(nets, w, m)
                loss = _member_step(flats[m], grads[m], net, member, seeds[m], first_steps[m] + s,
                                    (kinds[m], hypers[m], s1[m], s2[m]))  # fmt: skip
                losses[s, m] = loss
                if not np.isfinite(loss):
                    active[m] = False
    return losses


@njit(parallel=True, cache=True)
def stack_correct_counts_unchecked(x, t, flats, nets, work, counts):
    """counts[k] = how many rows of x member k classifies (at test time) as t; -1 if one of its
    logits is not finite. One parallel loop over the members, each serial over chunks of the rows
    ``work`` holds (``new_stack_work(..., training=False)``), as ``schedule.test_rows``. ``nets`` as
    ``stack_steps_unchecked``'s. Unchecked."""
    rec = nets[0]
    w = EngineWork(*work)
    N, chunk = x.shape[0], w.tb.shape[0]
    last = logits_layer(rec)
    for m in prange(flats.shape[0]):
        net, member = _member(nets, w, m)
        test_transforms(flats[m], net, member)
        count = 0
        for r0 in range(0, N, chunk):
            r1 = min(N, r0 + chunk)
            # the rows in one pass through every layer: one core's cache each
            test_rows(x[r0:r1], flats[m], net, member, 0, rec.shape[0], 0, r1 - r0, flats[m], 0)
            c = _count_correct(layer_rows(member.acts, rec, last, r1 - r0), t[r0:r1])
            count = -1 if c < 0 or count < 0 else count + c
        counts[m] = count
    return counts
