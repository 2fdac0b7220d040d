"""Max pooling (chapter 7): forward (recording each window's winner) next to its backward.

Images NCHW; windows pool_h × pool_w every ``stride`` pixels, ``pad`` rows and columns of zeros
around the image (as the book's, zeros take part in the maximum); reference twin:
``fastnet.reference.Pooling``. The winner of a window is the first maximum in (row, column)
order, stored as its index in the image's C·H·W values (-1 for a padding zero). Backward sends
each output's gradient to its winner (added, where windows overlap), times the derivative of the
layer below's activation read from its output ([x > 0] for a ReLU). One parallel loop over
blocks of images; each image is one iteration's: deterministic.
"""

from numba import njit, prange

from ._simd import pool_row, pool_row_winners, unpool_row
from .activations import activation_backward
from .conv import output_size
from .partition import block_bounds, num_blocks


@njit(cache=True)
def _pool_forward_image(x, C, H, W, ph, pw, stride, pad, OH, OW, out, winners):
    """One image: out[c, oy, ox] = max of its window, winners[...] = where (flat index or -1)."""
    if pad == 0:
        _pool_forward_inside(x, C, H, W, ph, pw, stride, OH, OW, out, winners)
        return
    for c in range(C):
        plane = x[c * H * W : (c + 1) * H * W]
        for oy in range(OH):
            for ox in range(OW):
                best, where = plane[0], -2  # -2: nothing seen yet
                for fy in range(ph):
                    iy = oy * stride - pad + fy
                    for fx in range(pw):
                        ix = ox * stride - pad + fx
                        if 0 <= iy < H and 0 <= ix < W:
                            v, at = plane[iy * W + ix], c * H * W + iy * W + ix
                        else:
                            v, at = plane[0] * 0, -1
                        if where == -2 or v > best or (v != v and best == best):  # a NaN wins: it shows
                            best, where = v, at
                o = (c * OH + oy) * OW + ox
                out[o], winners[o] = best, where


@njit(cache=True)
def _pool_forward_inside(x, C, H, W, ph, pw, stride, OH, OW, out, winners):
    """``_pool_forward_image`` without padding: every window inside the image, no bounds tests.
    The comparisons skip NaN (v > NaN and NaN > v are false); a window that holds one is
    redone by ``_nan_window``, so that a NaN still shows in the output."""
    for c in range(C):
        base = c * H * W
        for oy in range(OH):
            o = (c * OH + oy) * OW
            dst, at = out[o : o + OW], winners[o : o + OW]
            top = base + oy * stride * W
            if ph == 2 and pw == 2 and stride == 2:  # the book's pool, a vector of outputs at a time
                pool_row_winners(x, top, top + W, out, winners, o, OW)
                continue
            if ph == 2 and pw == 2:  # unrolled
                for ox in range(OW):
                    i = top + ox * stride
                    a, b, d, e = x[i], x[i + 1], x[i + W], x[i + W + 1]
                    best, where = a, i
                    if b > best:
                        best, where = b, i + 1
                    if d > best:
                        best, where = d, i + W
                    if e > best:
                        best, where = e, i + W + 1
                    dst[ox], at[ox] = best, where
                    if (a - a) + (b - b) + (d - d) + (e - e) != 0:  # NaN or inf in the window
                        dst[ox], at[ox] = _nan_window(x, i, W, ph, pw, best, where)
                continue
            for ox in range(OW):
                first = top + ox * stride
                best, where, bad = x[first], first, False
                for fy in range(ph):
                    row = first + fy * W
                    for fx in range(pw):
                        v = x[row + fx]
                        bad |= v != v
                        if v > best:
                            best, where = v, row + fx
                dst[ox], at[ox] = best, where
                if bad or best != best:
                    dst[ox], at[ox] = _nan_window(x, first, W, ph, pw, best, where)


@njit(cache=True)
def _nan_window(x, first, W, ph, pw, best, where):
    """(value, index) of a window that may hold NaN: its first NaN, else (best, where) as found."""
    for fy in range(ph):
        for fx in range(pw):
            v = x[first + fy * W + fx]
            if v != v:
                return v, first + fy * W + fx
    return best, where


@njit(cache=True)
def max_pool_planes(src, plane, row, C, ph, pw, stride, OH, OW, out):
    """out (C·OH·OW, flat) = the max pooling of C planes of ``src`` without padding, plane c from
    c·``plane`` on, its rows ``row`` values apart: the test-time pool (no winners), over an image
    (plane = H·W, row = W) or a convolution's wide output where the tiles left it
    (``max_pool_into``, out's planes dense)."""
    max_pool_into(src, plane, row, C, ph, pw, stride, OH, OW, out, 0, OH * OW, OW)


@njit(cache=True)
def max_pool_into(src, plane, row, C, ph, pw, stride, OH, OW, out, out_off, out_plane, out_row):
    """``max_pool_planes`` with output row oy of plane c from out_off + c·out_plane + oy·out_row on
    (a padded image for the convolution above: ``conv.zero_border``). Each output is the window's
    first largest value in (row, column) order, NaN if the window holds one. The book's 2×2
    windows at stride 2 go a vector of outputs at a time (``_simd.pool_row``)."""
    for c in range(C):
        for oy in range(OH):
            o, top = out_off + c * out_plane + oy * out_row, c * plane + oy * stride * row
            if ph == 2 and pw == 2 and stride == 2:
                pool_row(src, top, top + row, out, o, OW)
                continue
            dst = out[o : o + OW]
            for ox in range(OW):
                dst[ox] = src[top + ox * stride]
            for fy in range(ph):
                for fx in range(pw):
                    if fy + fx > 0:
                        first = top + fy * row + fx
                        for ox in range(OW):
                            v = src[first + ox * stride]
                            dst[ox] = v if (v > dst[ox]) | (v != v) else dst[ox]


@njit(cache=True)
def pool_test_images(x, out, geometry, n0, n1):
    """Images n0:n1 of x (rows) into out at test time, without winners; ``geometry`` as
    ``pool_forward_images``' (a pool without padding: ``max_pool_planes``)."""
    C, H, W, ph, pw, stride, _, OH, OW = geometry
    for n in range(n0, n1):
        max_pool_planes(x[n], H * W, W, C, ph, pw, stride, OH, OW, out[n])


@njit(cache=True)
def _pool_backward_image(dout, winners, dx, x, below, geometry):
    """One image: dx = 0, then dx[winner] += dout for every output; times act'(below) read from x.
    The book's 2×2 windows at stride 2 without padding a row of windows at a time (``_simd.unpool_row``:
    the zeros and the gradients in one pass)."""
    C, H, W, ph, pw, stride, pad, OH, OW = geometry
    if ph == 2 and pw == 2 and stride == 2 and pad == 0:  # the windows cover the image (H, W even: they fit)
        for c in range(C):
            for oy in range(OH):
                top = (c * H + 2 * oy) * W
                unpool_row(dout, winners, (c * OH + oy) * OW, OW, dx, top, top + W, 0)
    else:
        for i in range(dx.shape[0]):
            dx[i] = 0
        for o in range(dout.shape[0]):
            w = winners[o]
            if w >= 0:
                dx[w] += dout[o]
    activation_backward(below, dx, x)


@njit(cache=True)
def pool_blocks(N, per_image):
    """How many blocks of images the pooling loops use (by the shapes only)."""
    return num_blocks(N * 8, N * per_image * 64) if N > 1 else 1


@njit(parallel=True, cache=True)
def pool_forward_rows(x, out, winners, C, H, W, ph, pw, stride, pad):
    """Rows (N, C·H·W) → out (N, C·OH·OW), winners int64 (N, C·OH·OW). Unchecked."""
    N = x.shape[0]
    OH, OW = output_size(H, ph, stride, pad), output_size(W, pw, stride, pad)
    nb = pool_blocks(N, C * H * W)
    for k in prange(nb):
        n0, n1 = block_bounds(N, nb, k)
        pool_forward_images(x, out, winners, (C, H, W, ph, pw, stride, pad, OH, OW), n0, n1)
    return out


@njit(cache=True)
def pool_forward_images(x, out, winners, geometry, n0, n1):
    """Images n0:n1 of x (rows) into out and winners, one at a time; ``geometry`` = (C, H, W, ph,
    pw, stride, pad, OH, OW). ``pool_forward_rows``' block, and the test-time pass's."""
    C, H, W, ph, pw, stride, pad, OH, OW = geometry
    for n in range(n0, n1):
        _pool_forward_image(x[n], C, H, W, ph, pw, stride, pad, OH, OW, out[n], winners[n])


@njit(parallel=True, cache=True)
def pool_backward_rows(dout, winners, dx, x, below, geometry):
    """dx (N, C·H·W) from dout and winners (N, C·OH·OW), times act'(below) read from x; ``geometry``
    as ``pool_forward_images``' (a window size of 0: any pool, by the winners alone). Unchecked."""
    N = dout.shape[0]
    nb = pool_blocks(N, dx.shape[1])
    for k in prange(nb):
        n0, n1 = block_bounds(N, nb, k)
        for n in range(n0, n1):
            _pool_backward_image(dout[n], winners[n], dx[n], x[n], below, geometry)
    return dx


@njit(parallel=True, cache=True)
def pool_forward_unchecked(x, out, winners, pool_h, pool_w, stride, pad):
    """out (N, C, OH, OW) = max pooling of x (N, C, H, W); winners int64 of out's shape. Unchecked."""
    N, C, H, W = x.shape
    per = out.size // max(N, 1)
    pool_forward_rows(x.reshape((N, C * H * W)), out.reshape((N, per)), winners.reshape((N, per)), C, H, W, pool_h,
                      pool_w, stride, pad)  # fmt: skip
    return out, winners


@njit(parallel=True, cache=True)
def pool_backward_unchecked(dout, winners, dx):
    """dx (N, C, H, W) of max pooling from dout and the forward's winners (N, C, OH, OW). Unchecked."""
    N = dx.shape[0]
    per = dout.size // max(N, 1)
    rows = dx.reshape((N, dx.size // max(N, 1)))
    pool_backward_rows(dout.reshape((N, per)), winners.reshape((N, per)), rows, rows, 0, (0, 0, 0, 0, 0, 0, 0, 0, 0))
    return dx
