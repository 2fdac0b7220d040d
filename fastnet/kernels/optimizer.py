"""The optimizers' updates, fused: one pass over a flat parameter vector and its state.

``kind`` picks the rule (the codes below, ``fastnet.optim`` has the classes);
``hyper`` = (lr, rate, beta2, t): rate is Momentum/Nesterov's momentum,
RMSprop's decay rate or Adam's beta1; t counts Adam's steps (updated here).
s1, s2 are the state (v; h; Adam's m and v), as long as the parameters.
Each block of the vector is updated by one thread; every element's update is
independent, so results do not depend on the block count.
"""

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from .partition import block_bounds, num_blocks

SGD, MOMENTUM, NESTEROV, ADAGRAD, RMSPROP, ADAM = range(6)
EPS = 1e-7  # the book's


def in_dtype_of(value, array):
    """``value`` as a scalar of ``array``'s dtype (compiled code only): float32 updates then
    compute in float32 throughout, which vectorises twice as wide as mixed float64 arithmetic."""
    raise NotImplementedError("in_dtype_of is callable from compiled code only")


@overload(in_dtype_of)
def _overload_in_dtype_of(value, array):
    to_float = np.float32 if array.dtype == types.float32 else np.float64
    return lambda value, array: to_float(value)


@njit(cache=True)
def update_range(kind, p, g, s1, s2, hyper, lr_t, lo, hi):
    """The update of elements [lo, hi) (lr_t: Adam's bias-corrected rate for this step)."""
    lr, rate, beta2 = in_dtype_of(hyper[0], p), in_dtype_of(hyper[1], p), in_dtype_of(hyper[2], p)
    lr_t, one, eps = in_dtype_of(lr_t, p), in_dtype_of(1.0, p), in_dtype_of(EPS, p)
    if kind == SGD:
        for i in range(lo, hi):
            p[i] -= lr * g[i]
    elif kind == MOMENTUM:
        for i in range(lo, hi):
            v = rate * s1[i] - lr * g[i]
            s1[i] = v
            p[i] += v
    elif kind == NESTEROV:
        for i in range(lo, hi):
            p[i] += rate * rate * s1[i]
            p[i] -= (one + rate) * lr * g[i]
            s1[i] = rate * s1[i] - lr * g[i]
    elif kind == ADAGRAD:
        for i in range(lo, hi):
            s1[i] += g[i] * g[i]
            p[i] -= lr * g[i] / (np.sqrt(s1[i]) + eps)
    elif kind == RMSPROP:
        for i in range(lo, hi):
            s1[i] = rate * s1[i] + (one - rate) * g[i] * g[i]
            p[i] -= lr * g[i] / (np.sqrt(s1[i]) + eps)
    else:  # ADAM
        for i in range(lo, hi):
            s1[i] += (one - rate) * (g[i] - s1[i])
            s2[i] += (one - beta2) * (g[i] * g[i] - s2[i])
            p[i] -= lr_t * s1[i] / (np.sqrt(s2[i]) + eps)


@njit(cache=True)
def next_rate(kind, hyper):
    """Count the step (hyper[3] = t) and return Adam's lr_t = lr·√(1-β2ᵗ)/(1-β1ᵗ) (lr otherwise)."""
    hyper[3] += 1
    if kind != ADAM:
        return hyper[0]
    t = hyper[3]
    return hyper[0] * np.sqrt(1.0 - hyper[2] ** t) / (1.0 - hyper[1] ** t)


@njit(parallel=True, cache=True)
def update_unchecked(kind, p, g, s1, s2, hyper):
    """One update of the flat parameters p from the gradient g, in place (state s1, s2). Unchecked."""
    lr_t = next_rate(kind, hyper)
    n = p.shape[0]
    nb = num_blocks(n)
    for k in prange(nb):
        lo, hi = block_bounds(n, nb, k)
        update_range(kind, p, g, s1, s2, hyper, lr_t, lo, hi)
