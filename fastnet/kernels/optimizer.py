"""The optimizers' updates, fused: one pass over a flat parameter vector and its state.

``kind`` picks the rule (the codes below, ``fastnet.optim`` has the classes);
``hyper`` = (lr, rate, beta2, t): rate is Momentum/Nesterov's momentum,
RMSprop's decay rate or Adam's beta1; t counts Adam's steps (updated here).
s1, s2 are the state (v; h; Adam's m and v), as long as the parameters.
Each block of the vector is updated by one thread; every element's update is
independent, so results do not depend on the block count.

State that decays (Momentum's and Nesterov's v, RMSprop's h, Adam's m and v) is
flushed to zero where it falls below the dtype's smallest normal number. Where
a gradient is zero (a weight from an input pixel that is always 0, a dead unit)
the state shrinks by its rate each step into subnormal numbers and, rounding to
nearest, never reaches zero; arithmetic on subnormals takes a slow microcode
path on x86, which made a convnet's training on MNIST half as slow again after
its first few hundred steps (docs/PERFORMANCE.md). The flush moves the state by
less than the smallest normal number, and the weights by far less than one of
their own ulps (Adam's and RMSprop's divisors are at least ε).
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


@njit(cache=True, inline="always")
def flushed(value, tiny, zero):
    """``value``, or zero where it is subnormal (|value| < tiny): see the module's docstring."""
    return value if abs(value) >= tiny else zero


# error_model="numpy": a float division by zero gives inf/NaN instead of raising, so the loops
# carry no check per element and vectorise (no divisor here can be zero: √h + ε > 0).
@njit(cache=True, error_model="numpy")
def update_range(kind, p, g, s1, s2, hyper, lr_t, lo, hi):
    """The update of elements [lo, hi) (lr_t: Adam's bias-corrected rate for this step)."""
    lr, rate, beta2 = in_dtype_of(hyper[0], p), in_dtype_of(hyper[1], p), in_dtype_of(hyper[2], p)
    lr_t, one, eps = in_dtype_of(lr_t, p), in_dtype_of(1.0, p), in_dtype_of(EPS, p)
    tiny, zero = in_dtype_of(np.finfo(p.dtype).tiny, p), in_dtype_of(0.0, p)  # the smallest normal number
    # Views from lo, indexed from 0: an index the compiler knows is not negative needs no
    # wrap-around select per element, and the loops vectorise.
    w, dw, a, c = p[lo:hi], g[lo:hi], s1[lo:hi], s2[lo:hi]  # weights, gradient, state
    if kind == SGD:
        for i in range(w.shape[0]):
            w[i] -= lr * dw[i]
    elif kind == MOMENTUM:
        for i in range(w.shape[0]):
            v = flushed(rate * a[i] - lr * dw[i], tiny, zero)
            a[i] = v
            w[i] += v
    elif kind == NESTEROV:
        for i in range(w.shape[0]):
            w[i] += rate * rate * a[i]
            w[i] -= (one + rate) * lr * dw[i]
            a[i] = flushed(rate * a[i] - lr * dw[i], tiny, zero)
    elif kind == ADAGRAD:
        for i in range(w.shape[0]):
            a[i] += dw[i] * dw[i]
            w[i] -= lr * dw[i] / (np.sqrt(a[i]) + eps)
    elif kind == RMSPROP:
        for i in range(w.shape[0]):
            a[i] = flushed(rate * a[i] + (one - rate) * dw[i] * dw[i], tiny, zero)
            w[i] -= lr * dw[i] / (np.sqrt(a[i]) + eps)
    else:  # ADAM: a = m, c = v
        for i in range(w.shape[0]):
            a[i] = flushed(a[i] + (one - rate) * (dw[i] - a[i]), tiny, zero)
            c[i] = flushed(c[i] + (one - beta2) * (dw[i] * dw[i] - c[i]), tiny, zero)
            w[i] -= lr_t * a[i] / (np.sqrt(c[i]) + eps)


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
