"""Inputs as the steps read them: floats, or 8-bit pixel codes; the batch gather.

A training step gathers its batch's rows from the whole training set. When the
inputs are 8-bit pixels (``x = code / 255`` as ``load_mnist`` gives them, or raw
pixel values), the step can read the 1-byte codes and divide in the network's
dtype: the same floats bit for bit, a quarter of the memory traffic.
"""

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from .partition import block_bounds, num_blocks


def input_value(X, row, col, x_divisor, like):
    """X[row, col] as the step reads it: itself for a float X; for 8-bit pixel codes,
    code / x_divisor, computed in the dtype of ``like`` (compiled code only)."""
    raise NotImplementedError("input_value is callable from compiled code only")


@overload(input_value)
def _overload_input_value(X, row, col, x_divisor, like):
    if isinstance(X.dtype, types.Float):
        return lambda X, row, col, x_divisor, like: X[row, col]
    to_float = np.float32 if like.dtype == types.float32 else np.float64
    # One rounding, in the network's dtype: exactly what x.astype(float32) / 255 gave.
    return lambda X, row, col, x_divisor, like: to_float(X[row, col]) / to_float(x_divisor)


@njit(parallel=True, cache=True)
def pixel_codes_unchecked(x, divisor, codes):
    """codes = x * divisor as uint8, if every x is exactly code / divisor computed in x's dtype
    (``input_value``'s reading); returns whether that held (if not, codes is partly written). Unchecked:
    codes is uint8 of x's shape, divisor of x's dtype."""
    n = x.shape[0]
    nb = num_blocks(n)
    exact = np.ones(nb, np.bool_)
    for k in prange(nb):
        r0, r1 = block_bounds(n, nb, k)
        good = True
        for i in range(r0, r1):
            for j in range(x.shape[1]):
                c = np.rint(x[i, j] * divisor)
                in_range = c >= 0 and c <= 255  # False for NaN too
                code = np.uint8(c if in_range else 0)
                codes[i, j] = code
                good &= in_range and input_value(codes, i, j, divisor, x) == x[i, j]
        exact[k] = good
    return exact.all()


@njit(cache=True)
def _gather_rows(X, T, idx, xb, tb, row_check, r0, r1, x_divisor):
    """Rows r0:r1 of xb = X[idx], tb = T[idx]; row_check[i] = 0 if row idx[i] is finite, else 1.

    X is float, or uint8 pixel codes read as code / x_divisor (``input_value``).
    The finiteness test rides along with the copy (v - v is 0 for finite v).
    """
    for i in range(r0, r1):
        src = idx[i]
        tb[i] = T[src]
        bad = False
        for d in range(X.shape[1]):
            v = input_value(X, src, d, x_divisor, xb)
            xb[i, d] = v
            bad |= v - v != 0  # an OR, not a float sum: it vectorises
        row_check[i] = 1.0 if bad else 0.0


@njit(parallel=True, cache=True)
def gather_unchecked(X, T, idx, xb, tb, row_check, x_divisor):
    """xb = X[idx], tb = T[idx], row_check as ``_gather_rows``. X (N,D), T (N,), idx (B,). Unchecked."""
    B = idx.shape[0]
    nb = num_blocks(B)
    for k in prange(nb):
        r0, r1 = block_bounds(B, nb, k)
        _gather_rows(X, T, idx, xb, tb, row_check, r0, r1, x_divisor)
    return xb, tb
