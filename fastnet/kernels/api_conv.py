"""The checked entry points of the convolution and pooling kernels (``conv``, ``pool``), from
Python and from ``@njit`` code, in ``api``'s three parts: a Python function (kind checks), its
overload for compiled callers (kind checks at typing time), one compiled ``_checked_*`` function
both call (value checks, then the raw kernel with its scratch)."""

import numpy as np
from numba import njit
from numba.extending import overload

from ._kinds import IN, LABELS, OUT, python_args, typing_problem
from .checks import require_disjoint, require_finite, span
from .conv import conv_backward_unchecked, conv_blocks, conv_forward_unchecked, conv_scratch_size, output_size
from .pool import pool_backward_unchecked, pool_forward_unchecked


@njit(cache=True)
def _shape(a, b, c, d):
    return "(" + str(a) + ", " + str(b) + ", " + str(c) + ", " + str(d) + ")"


@njit(cache=True)
def _geometry(func, what, size, window, stride, pad):
    """The output size along one axis, or a ValueError naming the sizes."""
    if stride < 1 or pad < 0:
        raise ValueError(func + ": stride must be >= 1 and pad >= 0, not stride " + str(stride) + ", pad " + str(pad))
    n = output_size(size, window, stride, pad)
    if n < 1:
        raise ValueError(func + ": the window does not fit: (" + what + " + 2·pad − window) must be a multiple of "
                         "the stride, not negative; " + what + " " + str(size) + ", window " + str(window) + ", stride "
                         + str(stride) + ", pad " + str(pad))  # fmt: skip
    return n


@njit(cache=True)
def _check_conv(func, x, W, b, b_name, out_shape, stride, pad):
    """The sizes of a convolution's arrays, x and W finite; b (the bias, or the bias gradient db:
    ``b_name``) one entry per filter (its values are the caller's to check: an output may hold anything)."""
    N, C, H, Wd = x.shape
    FN, FC, FH, FW = W.shape
    if N == 0 or FN == 0:
        raise ValueError(func + ": arrays must not be empty")
    if FC != C:
        raise ValueError(func + ": argument 'W' must have the input's channels: x has " + str(C) + ", W " + str(FC))
    if b.shape[0] != FN:
        raise ValueError(func + ": argument '" + b_name + "' must have one entry per filter (W.shape[0])")
    OH, OW = _geometry(func, "height", H, FH, stride, pad), _geometry(func, "width", Wd, FW, stride, pad)
    if out_shape[0] != N or out_shape[1] != FN or out_shape[2] != OH or out_shape[3] != OW:
        raise ValueError(func + ": the output (or dout) must have shape (N, FN, OH, OW) = " + _shape(N, FN, OH, OW))
    require_finite(func, "argument 'x'", x)
    require_finite(func, "argument 'W'", W)
    return OH * OW


@njit(cache=True)
def _scratch(x, W, stride, pad):
    return conv_scratch_size(x.shape[1], x.shape[2], x.shape[3], W.shape[0], W.shape[2], W.shape[3], stride, pad)


_CONV_SPEC = [("x", 4, IN), ("W", 4, IN), ("b", 1, IN), ("out", 4, OUT)]


@njit(parallel=True, cache=True)
def _checked_conv_forward(x, W, b, out, stride, pad, relu):
    func = "conv_forward"
    P = _check_conv(func, x, W, b, "b", out.shape, stride, pad)
    require_finite(func, "argument 'b'", b)
    require_disjoint(func, (span(out),), (span(x), span(W), span(b)))
    col = np.empty((conv_blocks(x.shape[0], W[0].size, P, W.shape[0]), _scratch(x, W, stride, pad)), x.dtype)
    return conv_forward_unchecked(x, W, b, out, col, stride, pad, 1 if relu else 0)


def conv_forward(x, W, b, out, stride=1, pad=0, relu=False):
    """out[:] = conv(x, W) + b (then max(·, 0) with ``relu``); returns ``out``. x (N, C, H, W),
    W (FN, C, FH, FW), b (FN,), out (N, FN, OH, OW) with OH = (H + 2·pad − FH) / stride + 1.
    Checked."""
    x, W, b, out = python_args("conv_forward", _CONV_SPEC, (x, W, b, out))
    return _checked_conv_forward(x, W, b, out, int(stride), int(pad), bool(relu))


@overload(conv_forward)
def _overload_conv_forward(x, W, b, out, stride=1, pad=0, relu=False):
    problem = typing_problem("conv_forward", _CONV_SPEC, (x, W, b, out))
    if problem:

        def raise_type_error(x, W, b, out, stride=1, pad=0, relu=False):
            raise TypeError(problem)

        return raise_type_error
    return lambda x, W, b, out, stride=1, pad=0, relu=False: _checked_conv_forward(x, W, b, out, stride, pad, relu)


_CONV_BACKWARD_SPEC = [("x", 4, IN), ("W", 4, IN), ("dout", 4, IN), ("dW", 4, OUT), ("db", 1, OUT), ("dx", 4, OUT)]


@njit(parallel=True, cache=True)
def _checked_conv_backward(x, W, dout, dW, db, dx, stride, pad):
    func = "conv_backward"
    P = _check_conv(func, x, W, db, "db", dout.shape, stride, pad)
    if dW.shape != W.shape:
        raise ValueError(func + ": argument 'dW' must have the shape of W")
    if dx.shape[0] != 0 and dx.shape != x.shape:
        raise ValueError(func + ": argument 'dx' must have the shape of x (or 0 rows: no input gradient)")
    require_finite(func, "argument 'dout'", dout)
    require_disjoint(func, (span(dW), span(db), span(dx)), (span(x), span(W), span(dout)))
    nb, size = conv_blocks(x.shape[0], W[0].size, P, W.shape[0]), _scratch(x, W, stride, pad)
    col, dcol = np.empty((nb, size), x.dtype), np.empty((nb, size), x.dtype)
    return conv_backward_unchecked(x, W, dout, dW, db, dx, col, dcol, stride, pad)


def conv_backward(x, W, dout, dW, db, dx=None, stride=1, pad=0):
    """The gradients of out = conv(x, W) + b given dout (N, FN, OH, OW): dW = Σ dout ⋆ x, db =
    Σ dout, and dx (col2im of Wᵀ·dout) unless ``dx`` is None (from compiled code: an array with 0
    rows). Returns (dW, db, dx). Checked."""
    if dx is None:
        dx = np.empty((0, *np.shape(x)[1:]), getattr(x, "dtype", np.float64))
    x, W, dout, dW, db, dx = python_args("conv_backward", _CONV_BACKWARD_SPEC, (x, W, dout, dW, db, dx))
    dW, db, dx = _checked_conv_backward(x, W, dout, dW, db, dx, int(stride), int(pad))
    return dW, db, (dx if dx.shape[0] else None)


@overload(conv_backward)
def _overload_conv_backward(x, W, dout, dW, db, dx, stride=1, pad=0):
    problem = typing_problem("conv_backward", _CONV_BACKWARD_SPEC, (x, W, dout, dW, db, dx))
    if problem:

        def raise_type_error(x, W, dout, dW, db, dx, stride=1, pad=0):
            raise TypeError(problem)

        return raise_type_error
    return lambda x, W, dout, dW, db, dx, stride=1, pad=0: _checked_conv_backward(x, W, dout, dW, db, dx, stride, pad)


_POOL_SPEC = [("x", 4, IN), ("out", 4, OUT), ("winners", 4, LABELS)]


@njit(parallel=True, cache=True)
def _checked_pool_forward(x, out, winners, pool_h, pool_w, stride, pad):
    func = "pool_forward"
    N, C, H, W = x.shape
    if N == 0 or C == 0:
        raise ValueError(func + ": arrays must not be empty")
    if pool_h < 1 or pool_w < 1:
        raise ValueError(func + ": the window must be at least 1×1, not " + str(pool_h) + "×" + str(pool_w))
    OH, OW = _geometry(func, "height", H, pool_h, stride, pad), _geometry(func, "width", W, pool_w, stride, pad)
    if out.shape[0] != N or out.shape[1] != C or out.shape[2] != OH or out.shape[3] != OW:
        raise ValueError(func + ": argument 'out' must have shape (N, C, OH, OW) = " + _shape(N, C, OH, OW))
    if winners.shape != out.shape:
        raise ValueError(func + ": argument 'winners' must have the shape of out")
    require_finite(func, "argument 'x'", x)
    require_disjoint(func, (span(out), span(winners)), (span(x),))
    return pool_forward_unchecked(x, out, winners, pool_h, pool_w, stride, pad)


def pool_forward(x, out, winners, pool_h=2, pool_w=2, stride=2, pad=0):
    """Max pooling: out[n, c, oy, ox] = the maximum of its window of x (N, C, H, W), winners (int64,
    out's shape) = where it is (the first maximum; an index into the image's C·H·W values, -1 for
    padding). Returns (out, winners). Checked."""
    if isinstance(winners, np.ndarray) and winners.dtype != np.int64:
        raise TypeError(f"pool_forward: argument 'winners' is an output and must be int64, not {winners.dtype}")
    if isinstance(winners, np.ndarray) and not (winners.flags.c_contiguous and winners.flags.writeable):
        raise ValueError("pool_forward: argument 'winners' is an output and must be C-contiguous and writable")
    x, out, winners = python_args("pool_forward", _POOL_SPEC, (x, out, winners))
    return _checked_pool_forward(x, out, winners, int(pool_h), int(pool_w), int(stride), int(pad))


@overload(pool_forward)
def _overload_pool_forward(x, out, winners, pool_h=2, pool_w=2, stride=2, pad=0):
    problem = typing_problem("pool_forward", _POOL_SPEC, (x, out, winners))
    if problem:

        def raise_type_error(x, out, winners, pool_h=2, pool_w=2, stride=2, pad=0):
            raise TypeError(problem)

        return raise_type_error

    def checked(x, out, winners, pool_h=2, pool_w=2, stride=2, pad=0):
        return _checked_pool_forward(x, out, winners, pool_h, pool_w, stride, pad)

    return checked


_POOL_BACKWARD_SPEC = [("dout", 4, IN), ("winners", 4, LABELS), ("dx", 4, OUT)]


@njit(parallel=True, cache=True)
def _checked_pool_backward(dout, winners, dx):
    func = "pool_backward"
    if winners.shape != dout.shape or dx.shape[0] != dout.shape[0] or dx.shape[1] != dout.shape[1]:
        raise ValueError(func + ": dout and winners must have one shape, (N, C, OH, OW), and dx (N, C, H, W)")
    per_image = dx.shape[1] * dx.shape[2] * dx.shape[3]
    flat = winners.reshape(winners.size)
    for i in range(flat.size):
        if flat[i] < -1 or flat[i] >= per_image:
            raise ValueError(func + ": a winner lies outside its image (not from pool_forward on dx's shape?)")
    require_finite(func, "argument 'dout'", dout)
    require_disjoint(func, (span(dx),), (span(dout), span(winners)))
    return pool_backward_unchecked(dout, winners, dx)


def pool_backward(dout, winners, dx):
    """dx (N, C, H, W) of max pooling: each output's gradient in dout sent to its window's winner
    (from ``pool_forward``), summed where windows overlap. Returns dx. Checked."""
    dout, winners, dx = python_args("pool_backward", _POOL_BACKWARD_SPEC, (dout, winners, dx))
    return _checked_pool_backward(dout, winners, dx)


@overload(pool_backward)
def _overload_pool_backward(dout, winners, dx):
    problem = typing_problem("pool_backward", _POOL_BACKWARD_SPEC, (dout, winners, dx))
    if problem:

        def raise_type_error(dout, winners, dx):
            raise TypeError(problem)

        return raise_type_error
    return lambda dout, winners, dx: _checked_pool_backward(dout, winners, dx)
