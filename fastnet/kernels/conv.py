"""Convolution (chapter 7): forward (+ bias, + ReLU) next to its backward (dW, db, dx).

Images are NCHW, filters (FN, C, FH, FW), outputs (N, FN, OH, OW), OH = (H + 2·pad − FH) /
stride + 1; reference twin: ``fastnet.reference.Convolution``. Per image, the windows are
unfolded into ``col`` (K = C·FH·FW rows, P = OH·OW columns: the transposed im2col, so that
one product with the filters, (FN×K)·(K×P), writes the output in NCHW order directly):

    forward   out_n = W·col_n + b, ReLU in the same pass over out_n
    backward  [dW db] = Σ_n dout_n·[col_n; 1]ᵀ (a row of ones under col: the bias gradient comes
              out of the same product), dcol_n = Wᵀ·dout_n → dx_n (col2im)

A parallel loop runs blocks of images (``partition``); each block unfolds into its own slice of
the scratch ``col``. dx_n is written by the one iteration that owns image n (col2im's
scatter-add is serial within an image). dW and db are summed per block into partials, which
are then added in block order: the same bits whatever the number of threads.
"""

import numpy as np
from numba import njit, prange

from ._blas import AS_IS, TRANSPOSED, gemm
from .partition import block_bounds, num_blocks

IDENTITY, RELU = 0, 1  # as layers.IDENTITY, layers.RELU


@njit(cache=True)
def output_size(size, filter_size, stride, pad):
    """(size + 2·pad − filter_size) // stride + 1, or -1 if that is not a whole number ≥ 1."""
    span = size + 2 * pad - filter_size
    if stride < 1 or pad < 0 or filter_size < 1 or span < 0 or span % stride != 0:
        return -1
    return span // stride + 1


@njit(cache=True)
def conv_blocks(N, K, P, FN):
    """How many blocks of images the convolution's parallel loops use (by the shapes only)."""
    return num_blocks(N * 8, N * K * P * FN) if N > 1 else 1


@njit(cache=True)
def _unfold_image(x, C, H, W, FH, FW, stride, pad, OH, OW, col):
    """col[(c·FH + fy)·FW + fx, oy·OW + ox] = x[c, oy·stride − pad + fy, ox·stride − pad + fx]
    (0 outside the image), for one image x (C·H·W values, flat); then one more row of ones, so
    that the weight-gradient product also sums dout over the pixels: the bias gradient."""
    ones = col[C * FH * FW * OH * OW : (C * FH * FW + 1) * OH * OW]
    for p in range(OH * OW):
        ones[p] = 1
    for c in range(C):
        for fy in range(FH):
            for fx in range(FW):
                row = col[((c * FH + fy) * FW + fx) * OH * OW :]
                for oy in range(OH):
                    iy = oy * stride - pad + fy
                    dst = row[oy * OW : (oy + 1) * OW]
                    if iy < 0 or iy >= H:
                        for ox in range(OW):
                            dst[ox] = 0
                        continue
                    src = x[(c * H + iy) * W :]
                    if stride == 1 and pad == 0:  # the common case: a contiguous copy
                        line = src[fx : fx + OW]
                        for ox in range(OW):
                            dst[ox] = line[ox]
                    else:
                        for ox in range(OW):
                            ix = ox * stride - pad + fx
                            dst[ox] = src[ix] if 0 <= ix < W else 0


@njit(cache=True)
def _fold_image(dcol, C, H, W, FH, FW, stride, pad, OH, OW, dx, x, below):
    """dx (C·H·W, flat) = col2im(dcol): each window's entries added back at the pixels it covers;
    with ``below`` RELU, times [x > 0] (x: the layer below's output, this layer's input)."""
    for i in range(C * H * W):
        dx[i] = 0
    for c in range(C):
        for fy in range(FH):
            for fx in range(FW):
                row = dcol[((c * FH + fy) * FW + fx) * OH * OW :]
                for oy in range(OH):
                    iy = oy * stride - pad + fy
                    if iy < 0 or iy >= H:
                        continue
                    dst = dx[(c * H + iy) * W :]
                    src = row[oy * OW : (oy + 1) * OW]
                    for ox in range(OW):
                        ix = ox * stride - pad + fx
                        if 0 <= ix < W:
                            dst[ix] += src[ox]
    if below == RELU:
        for i in range(C * H * W):
            if not x[i] > 0:
                dx[i] = 0


@njit(cache=True, error_model="numpy")
def _conv_forward_image(x, Wmat, b, out, col, C, H, W, FH, FW, stride, pad, OH, OW, activation, one_zero):
    """One image: out (FN·P, flat) = activation(Wmat·col + b); x its C·H·W inputs (flat)."""
    FN, K = Wmat.shape
    P = OH * OW
    _unfold_image(x, C, H, W, FH, FW, stride, pad, OH, OW, col)
    gemm(AS_IS, AS_IS, FN, P, K, one_zero, Wmat, K, col, P, out, P)
    for f in range(FN):
        row, bias = out[f * P : (f + 1) * P], b[f]
        if activation == RELU:
            for p in range(P):
                v = row[p] + bias
                row[p] = v
                if v < 0:  # not "v > 0 else 0": NaN must stay NaN
                    row[p] = 0
        else:
            for p in range(P):
                row[p] += bias


@njit(cache=True)
def _conv_backward_image(x, Wmat, dout, col, dcol, part, first, C, H, W, FH, FW, stride, pad, OH, OW, dx, below,
                         one_zero, one_one):  # fmt: skip
    """One image's share of the gradients: part (FN, K + 1) (+)= dout·[col; 1]ᵀ (= when ``first``):
    dW in its first K columns, db in the last; with dx (len > 0), dx = col2im(Wᵀ·dout) ⊙ act'(below)."""
    FN, K = Wmat.shape
    P = OH * OW
    _unfold_image(x, C, H, W, FH, FW, stride, pad, OH, OW, col)
    gemm(AS_IS, TRANSPOSED, FN, K + 1, P, one_zero if first else one_one, dout, P, col, P, part, K + 1)
    if dx.shape[0] > 0:
        gemm(TRANSPOSED, AS_IS, K, P, FN, one_zero, Wmat, K, dout, P, dcol, P)
        _fold_image(dcol, C, H, W, FH, FW, stride, pad, OH, OW, dx, x, below)


@njit(cache=True)
def _sum_partials(parts, nb, FN, K, dW, db, acc):
    """dW (FN·K), db (FN) = Σ_{k < nb} of the blocks' (FN, K + 1) partials, in block order
    (float64 accumulators in ``acc``, FN·(K + 1) of them)."""
    n = FN * (K + 1)
    for j in range(n):
        acc[j] = 0.0
    for k in range(nb):
        part = parts[k]
        for j in range(n):
            acc[j] += part[j]
    for f in range(FN):
        for j in range(K):
            dW[f * K + j] = acc[f * (K + 1) + j]
        db[f] = acc[f * (K + 1) + K]


@njit(parallel=True, cache=True)
def conv_forward_rows(x, Wflat, b, out, col, C, H, W, FH, FW, stride, pad, activation, one_zero):
    """The forward of a batch held as rows: x (N, C·H·W), out (N, FN·OH·OW), Wflat (FN·C·FH·FW,)
    the filters flat, col scratch (blocks, (K + 1)·P) with ``conv_blocks`` blocks at least. Unchecked."""
    N = x.shape[0]
    FN = b.shape[0]
    K = C * FH * FW
    OH, OW = output_size(H, FH, stride, pad), output_size(W, FW, stride, pad)
    Wmat = Wflat[: FN * K].reshape((FN, K))
    nb = conv_blocks(N, K, OH * OW, FN)
    for k in prange(nb):
        n0, n1 = block_bounds(N, nb, k)
        for n in range(n0, n1):
            _conv_forward_image(x[n], Wmat, b, out[n], col[k], C, H, W, FH, FW, stride, pad, OH, OW, activation,
                                one_zero)  # fmt: skip
    return out


@njit(parallel=True, cache=True)
def conv_backward_rows(x, Wflat, dout, dW, db, dx, col, dcol, parts, acc, C, H, W, FH, FW, stride, pad, below,
                       one_zero, one_one):  # fmt: skip
    """The backward of a batch held as rows: x (N, C·H·W) the forward's input, dout (N, FN·P);
    writes dW (FN·K,), db (FN,) and, if dx has rows, dx (N, C·H·W) ⊙ act'(below). Scratch: col
    ((K + 1)·P per block), dcol (K·P per block), parts (blocks, FN·(K + 1)), acc float64
    (FN·(K + 1)). Unchecked."""
    N = x.shape[0]
    FN = db.shape[0]
    K = C * FH * FW
    OH, OW = output_size(H, FH, stride, pad), output_size(W, FW, stride, pad)
    Wmat = Wflat[: FN * K].reshape((FN, K))
    nb = conv_blocks(N, K, OH * OW, FN)
    with_dx = dx.shape[0] > 0
    for k in prange(nb):
        n0, n1 = block_bounds(N, nb, k)
        part = parts[k, : FN * (K + 1)].reshape((FN, K + 1))
        for n in range(n0, n1):
            dx_n = dx[n] if with_dx else dx.reshape(dx.size)[:0]
            _conv_backward_image(x[n], Wmat, dout[n], col[k], dcol[k], part, n == n0, C, H, W, FH, FW, stride, pad,
                                 OH, OW, dx_n, below, one_zero, one_one)  # fmt: skip
    _sum_partials(parts, nb, FN, K, dW, db, acc)
    return dW, db, dx


@njit(parallel=True, cache=True)
def conv_forward_unchecked(x, W, b, out, col, stride, pad, activation):
    """out = activation(conv(x, W) + b): x (N, C, H, W), W (FN, C, FH, FW), b (FN,), out (N, FN,
    OH, OW), col scratch (``conv_blocks`` rows at least, (C·FH·FW + 1)·OH·OW), activation 0 (none)
    or 1 (ReLU). Unchecked."""
    N, C, H, Wd = x.shape
    FN, _, FH, FW = W.shape
    one_zero = np.zeros(2, x.dtype)
    one_zero[0] = 1
    conv_forward_rows(x.reshape((N, C * H * Wd)), W.reshape(W.size), b, out.reshape((N, out.size // max(N, 1))), col,
                      C, H, Wd, FH, FW, stride, pad, activation, one_zero)  # fmt: skip
    return out


@njit(parallel=True, cache=True)
def conv_backward_unchecked(x, W, dout, dW, db, dx, col, dcol, stride, pad):
    """dW, db and (if dx is not empty) dx of out = conv(x, W) + b, given dout (N, FN, OH, OW);
    dx (N, C, H, W) or a (0, C, H, W) array for none; col, dcol scratch as for the forward. Unchecked."""
    N, C, H, Wd = x.shape
    FN, _, FH, FW = W.shape
    one_zero, one_one = np.zeros(2, x.dtype), np.ones(2, x.dtype)
    one_zero[0] = 1
    nb = col.shape[0]
    parts = np.empty((nb, W.size + FN), x.dtype)
    acc = np.empty(W.size + FN)
    rows = dx.reshape((dx.shape[0], C * H * Wd))
    conv_backward_rows(x.reshape((N, C * H * Wd)), W.reshape(W.size), dout.reshape((N, dout.size // max(N, 1))),
                       dW.reshape(W.size), db, rows, col, dcol, parts, acc, C, H, Wd, FH, FW, stride, pad, IDENTITY,
                       one_zero, one_one)  # fmt: skip
    return dW, db, dx
