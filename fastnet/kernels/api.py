"""The checked entry points: the raw kernels behind argument checks, from Python and from ``@njit`` code.

Each has three parts: the Python function (kind checks in Python, ``_kinds``),
its overload for ``@njit`` callers (kind checks at typing time: a bad kind
compiles to a ``raise TypeError``), and one compiled ``_checked_*`` function
both paths call (value checks, ``checks``, then the raw kernel).
"""

import numpy as np
from numba import njit, types
from numba.extending import overload

from ._kinds import IN, LABELS, OUT, learning_rate, python_args, typing_problem
from .checks import require, require_disjoint, require_finite, require_labels, require_lr, span
from .layers import (
    affine_backward_params_unchecked,
    affine_forward_unchecked,
    affine_relu_backward_unchecked,
    affine_relu_forward_unchecked,
    sgd_update_unchecked,
    softmax_cross_entropy_unchecked,
)
from .step import named, train_step_unchecked, train_steps_unchecked

_AFFINE_SPEC = [("x", 2, IN), ("W", 2, IN), ("b", 1, IN), ("out", 2, OUT)]


@njit(cache=True)
def _check_affine(func, x, W, b, out):
    require(x.shape[0] > 0 and x.shape[1] > 0 and W.shape[1] > 0, func, ": arrays must not be empty")
    require(W.shape[0] == x.shape[1], func, ": argument 'W' must have x.shape[1] rows (x is (B, D), W is (D, H))")
    require(b.shape[0] == W.shape[1], func, ": argument 'b' must have W.shape[1] entries")
    require(
        out.shape[0] == x.shape[0] and out.shape[1] == W.shape[1],
        func,
        ": argument 'out' must have shape (x.shape[0], W.shape[1])",
    )
    require_disjoint(func, (span(out),), (span(x), span(W), span(b)))
    require_finite(func, "argument 'x'", x)
    require_finite(func, "argument 'W'", W)
    require_finite(func, "argument 'b'", b)


@njit(parallel=True, cache=True)
def _checked_affine_relu_forward(x, W, b, out):
    _check_affine("affine_relu_forward", x, W, b, out)
    return affine_relu_forward_unchecked(x, W, b, out)


@njit(parallel=True, cache=True)
def _checked_affine_forward(x, W, b, out):
    _check_affine("affine_forward", x, W, b, out)
    return affine_forward_unchecked(x, W, b, out)


def affine_relu_forward(x, W, b, out):
    """out[:] = max(x @ W + b, 0); returns ``out``.

    x (B,D), W (D,H), b (H,), out (B,H), all float32 or all float64. Checked.
    """
    x, W, b, out = python_args("affine_relu_forward", _AFFINE_SPEC, (x, W, b, out))
    return _checked_affine_relu_forward(x, W, b, out)


def affine_forward(x, W, b, out):
    """out[:] = x @ W + b; returns ``out``. Shapes as ``affine_relu_forward``. Checked."""
    x, W, b, out = python_args("affine_forward", _AFFINE_SPEC, (x, W, b, out))
    return _checked_affine_forward(x, W, b, out)


@overload(affine_relu_forward)
def _overload_affine_relu_forward(x, W, b, out):
    problem = typing_problem("affine_relu_forward", _AFFINE_SPEC, (x, W, b, out))
    if problem:

        def raise_type_error(x, W, b, out):
            raise TypeError(problem)

        return raise_type_error
    return lambda x, W, b, out: _checked_affine_relu_forward(x, W, b, out)


@overload(affine_forward)
def _overload_affine_forward(x, W, b, out):
    problem = typing_problem("affine_forward", _AFFINE_SPEC, (x, W, b, out))
    if problem:

        def raise_type_error(x, W, b, out):
            raise TypeError(problem)

        return raise_type_error
    return lambda x, W, b, out: _checked_affine_forward(x, W, b, out)


_SOFTMAX_SPEC = [("z", 2, IN), ("t", 1, LABELS), ("dz", 2, OUT)]


@njit(parallel=True, cache=True)
def _checked_softmax_cross_entropy(z, t, dz):
    func = "softmax_cross_entropy"
    require(z.shape[0] > 0 and z.shape[1] > 0, func, ": argument 'z' must not be empty")
    require(t.shape[0] == z.shape[0], func, ": argument 't' must have one label per row of z")
    require(dz.shape[0] == z.shape[0] and dz.shape[1] == z.shape[1], func, ": argument 'dz' must have the shape of z")
    require_labels(func, t, z.shape[1])
    require_finite(func, "argument 'z'", z)
    require_disjoint(func, (span(dz),), (span(z), span(t)))
    return softmax_cross_entropy_unchecked(z, t, dz)


def softmax_cross_entropy(z, t, dz):
    """Mean cross-entropy loss of logits z (B,C) against integer labels t (B,); writes dz.

    loss = -(1/B) sum_i log softmax(z_i)[t_i] (stable: row max subtracted,
    log-sum-exp), returned as a float; dz[:] = (softmax(z) - onehot(t)) / B in
    the same pass. Labels must lie in [0, C). Checked.
    """
    z, t, dz = python_args("softmax_cross_entropy", _SOFTMAX_SPEC, (z, t, dz))
    return _checked_softmax_cross_entropy(z, t, dz)


@overload(softmax_cross_entropy)
def _overload_softmax_cross_entropy(z, t, dz):
    problem = typing_problem("softmax_cross_entropy", _SOFTMAX_SPEC, (z, t, dz))
    if problem:

        def raise_type_error(z, t, dz):
            raise TypeError(problem)

        return raise_type_error
    return lambda z, t, dz: _checked_softmax_cross_entropy(z, t, dz)


_RELU_BACKWARD_SPEC = [("dout", 2, IN), ("h", 2, IN), ("W", 2, IN), ("dW", 2, OUT), ("db", 1, OUT), ("dh", 2, OUT)]


@njit(parallel=True, cache=True)
def _checked_affine_relu_backward(dout, h, W, dW, db, dh):
    func = "affine_relu_backward"
    B, C = dout.shape
    H = h.shape[1]
    require(B > 0 and C > 0 and H > 0, func, ": arrays must not be empty")
    require(h.shape[0] == B, func, ": argument 'h' must have as many rows as 'dout'")
    require(W.shape[0] == H and W.shape[1] == C, func, ": argument 'W' must have shape (h.shape[1], dout.shape[1])")
    require(dW.shape[0] == H and dW.shape[1] == C, func, ": argument 'dW' must have the shape of W")
    require(db.shape[0] == C, func, ": argument 'db' must have dout.shape[1] entries")
    require(dh.shape[0] == B and dh.shape[1] == H, func, ": argument 'dh' must have the shape of h")
    require_disjoint(func, (span(dW), span(db), span(dh)), (span(dout), span(h), span(W)))
    require_finite(func, "argument 'dout'", dout)
    require_finite(func, "argument 'h'", h)
    require_finite(func, "argument 'W'", W)
    return affine_relu_backward_unchecked(dout, h, W, dW, db, dh)


def affine_relu_backward(dout, h, W, dW, db, dh):
    """Backward of ``out = h @ W + b`` whose input h came out of a ReLU; returns (dW, db, dh).

    dout (B,C), h (B,H), W (H,C) in; dW (H,C) = h.T @ dout, db (C,) = column sums
    of dout, dh (B,H) = (dout @ W.T) * [h > 0] out (the gradient at the ReLU's
    input: the mask is fused). Checked.
    """
    args = python_args("affine_relu_backward", _RELU_BACKWARD_SPEC, (dout, h, W, dW, db, dh))
    return _checked_affine_relu_backward(*args)


@overload(affine_relu_backward)
def _overload_affine_relu_backward(dout, h, W, dW, db, dh):
    problem = typing_problem("affine_relu_backward", _RELU_BACKWARD_SPEC, (dout, h, W, dW, db, dh))
    if problem:

        def raise_type_error(dout, h, W, dW, db, dh):
            raise TypeError(problem)

        return raise_type_error
    return lambda dout, h, W, dW, db, dh: _checked_affine_relu_backward(dout, h, W, dW, db, dh)


_PARAMS_BACKWARD_SPEC = [("x", 2, IN), ("dout", 2, IN), ("dW", 2, OUT), ("db", 1, OUT)]


@njit(parallel=True, cache=True)
def _checked_affine_backward_params(x, dout, dW, db):
    func = "affine_backward_params"
    B, D = x.shape
    H = dout.shape[1]
    require(D > 0 and B > 0 and H > 0, func, ": arrays must not be empty")
    require(dout.shape[0] == B, func, ": argument 'dout' must have as many rows as 'x'")
    require(dW.shape[0] == D and dW.shape[1] == H, func, ": argument 'dW' must have shape (x.shape[1], dout.shape[1])")
    require(db.shape[0] == H, func, ": argument 'db' must have dout.shape[1] entries")
    require_disjoint(func, (span(dW), span(db)), (span(x), span(dout)))
    require_finite(func, "argument 'x'", x)
    require_finite(func, "argument 'dout'", dout)
    return affine_backward_params_unchecked(x, dout, dW, db)


def affine_backward_params(x, dout, dW, db):
    """Parameter gradients of the first layer (no input gradient); returns (dW, db).

    x (B,D) the layer input, dout (B,H) the upstream gradient; writes
    dW (D,H) = x.T @ dout and db (H,) = column sums of dout. Checked.
    """
    args = python_args("affine_backward_params", _PARAMS_BACKWARD_SPEC, (x, dout, dW, db))
    return _checked_affine_backward_params(*args)


@overload(affine_backward_params)
def _overload_affine_backward_params(x, dout, dW, db):
    problem = typing_problem("affine_backward_params", _PARAMS_BACKWARD_SPEC, (x, dout, dW, db))
    if problem:

        def raise_type_error(x, dout, dW, db):
            raise TypeError(problem)

        return raise_type_error
    return lambda x, dout, dW, db: _checked_affine_backward_params(x, dout, dW, db)


_SGD_SPEC = [("param", None, OUT), ("grad", None, IN)]


@njit(parallel=True, cache=True)
def _checked_sgd_update(param, grad, lr):
    func = "sgd_update"
    require(param.shape == grad.shape, func, ": argument 'grad' must have the shape of 'param'")
    require_lr(func, lr)
    require_disjoint(func, (span(param),), (span(grad),))
    require_finite(func, "argument 'param'", param)
    require_finite(func, "argument 'grad'", grad)
    return sgd_update_unchecked(param, grad, lr)


def sgd_update(param, grad, lr):
    """param -= lr * grad in place (1-D or 2-D, same shape and dtype; lr >= 0); returns ``param``. Checked."""
    param, grad = python_args("sgd_update", _SGD_SPEC, (param, grad))
    return _checked_sgd_update(param, grad, learning_rate("sgd_update", lr))


@overload(sgd_update)
def _overload_sgd_update(param, grad, lr):
    problem = typing_problem("sgd_update", _SGD_SPEC, (param, grad))
    if problem is None and not isinstance(lr, (types.Float, types.Integer)):
        problem = f"sgd_update: lr must be a real number, not {lr}"
    if problem:

        def raise_type_error(param, grad, lr):
            raise TypeError(problem)

        return raise_type_error
    return lambda param, grad, lr: _checked_sgd_update(param, grad, lr)


@njit(cache=True)
def _check_batches(func, X, T, batches, params, work, lr, x_divisor):
    """What ``train_step`` and ``train_steps`` take from the caller: data, lr, and the indices
    and labels of every batch (the rows of ``batches``), all before the first step."""
    require(np.isfinite(x_divisor) and x_divisor > 0, func, ": x_divisor must be finite and positive")
    require(X.shape[1] == params.W1.shape[0], func, ": x must have input_size columns")
    require(T.shape[0] == X.shape[0], func, ": t must have one label per row of x")
    require(batches.shape[1] == work.xb.shape[0], func, ": the batch does not match the workspace")
    require_lr(func, lr)
    for s in range(batches.shape[0]):
        for i in range(batches.shape[1]):
            row = batches[s, i]
            if row < 0 or row >= X.shape[0]:
                raise ValueError(func + ": a batch index lies outside [0, len(x)) = [0, " + str(X.shape[0])
                                 + "): (position, index) = (" + str(i) + ", " + str(row) + ") in batch "
                                 + str(s))  # fmt: skip
            if T[row] < 0 or T[row] >= params.W2.shape[1]:
                raise ValueError(func + ": labels must lie in [0, C), C = " + str(params.W2.shape[1])
                                 + " classes: label " + str(T[row]) + " in row " + str(row))  # fmt: skip


@njit(parallel=True, cache=True)
def train_step(X, T, idx, params, grads, work, lr, x_divisor=1.0):
    """``train_step_unchecked`` behind checks of the data, indices and labels.

    The buffers (``Params``, ``Grads``, ``StepWork``, or plain tuples in their
    order) are ``TwoLayerNet``'s own, sized by it; what comes from the caller (X, T, idx, lr >= 0) is checked here.
    """
    params, grads, work = named(params, grads, work)
    _check_batches("train_step", X, T, idx.reshape(1, idx.size), params, work, lr, x_divisor)
    return train_step_unchecked(X, T, idx, params, grads, work, lr, x_divisor)


@njit(parallel=True, cache=True)
def train_steps(X, T, batches, params, grads, work, lr, losses, x_divisor=1.0):
    """``train_steps_unchecked`` behind the checks of ``train_step``, for every batch, done first."""
    require(losses.shape[0] >= batches.shape[0], "train_steps", ": losses needs one entry per batch")
    params, grads, work = named(params, grads, work)
    _check_batches("train_steps", X, T, batches, params, work, lr, x_divisor)
    return train_steps_unchecked(X, T, batches, params, grads, work, lr, losses, x_divisor)
