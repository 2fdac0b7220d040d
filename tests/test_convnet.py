"""Chapter 7: the reference's im2col/col2im/Convolution/Pooling against direct loops, the conv and
pool kernels against the reference, SimpleConvNet against the reference's and by gradcheck."""

import os
import subprocess
import sys

import numpy as np
import pytest
from numba import njit
from support import FLOAT_DTYPES, assert_matches_reference

from fastnet import SimpleConvNet, kernels, optim, reference
from fastnet.gradcheck import compare_gradients
from fastnet.kernels import _simd
from fastnet.kernels import conv as conv_kernels
from fastnet.kernels import pool as pool_kernels
from fastnet.kernels.activations import IDENTITY, RELU

# (N, C, H, W, FN, FH, FW, stride, pad): B = 1, odd sizes, stride 2, padding, several channels, the book's
GEOMETRIES = [
    (1, 1, 5, 5, 2, 3, 3, 1, 0),
    (3, 3, 7, 8, 4, 3, 2, 2, 1),
    (2, 2, 9, 7, 3, 5, 3, 2, 2),
    (5, 2, 8, 8, 3, 5, 5, 1, 2),
    (1, 4, 6, 6, 1, 1, 1, 1, 0),
    (4, 1, 28, 28, 30, 5, 5, 1, 0),
    (1, 3, 9, 11, 15, 3, 3, 1, 1),  # stride 1: the forward by direct tiles of 8, 4, 2 and 1 filters
    (1, 2, 3, 3, 7, 3, 3, 1, 0),  # one output pixel in a tile of many (half a tile: one vector of pixels)
    # stride 1 with 8+ filters: the backward by weight tiles (kernels.conv.uses_weight_tiles; dx too with 8+ channels)
    (1, 8, 5, 5, 8, 3, 3, 1, 1),
    (3, 9, 7, 6, 10, 3, 2, 1, 2),
    (2, 12, 6, 9, 8, 2, 3, 1, 0),
    (5, 16, 7, 7, 16, 3, 3, 1, 1),
    (2, 8, 4, 5, 9, 1, 1, 1, 0),
    (30, 8, 5, 5, 8, 3, 3, 1, 1),
    (2, 17, 5, 4, 23, 3, 3, 1, 1),
    (7, 8, 16, 15, 9, 3, 3, 1, 1),  # several sweeps of images (kernels.conv.sweep_images) in a block
    (3, 1, 12, 11, 8, 5, 5, 1, 0),  # one channel: weight tiles without dx, unfolded windows with it
    (2, 3, 9, 9, 12, 3, 3, 1, 2),
    (2, 1, 10, 9, 8, 3, 3, 1, 1),  # one channel, 3×3: unfolded windows
    # the weight tiles on shifted copies (kernels.conv.uses_shifted): DeepConvNet's 8×8; a plane of 4×3
    (3, 8, 8, 8, 9, 3, 3, 1, 1),
    (2, 9, 6, 5, 8, 3, 3, 1, 0),
    # the forward and dW by Winograd's transform (kernels.conv.uses_winograd, dw_by_winograd; (5, 16, 7, 7, ...)
    # above too): rows of odd length, a pad of 2 (rows as long as the output's), on shifted copies' rows
    (2, 32, 7, 9, 17, 3, 3, 1, 1),
    (1, 32, 5, 7, 16, 3, 3, 1, 2),
    (2, 32, 8, 8, 16, 3, 3, 1, 1),
    # the input gradient by Winograd's transform too (kernels.conv.dx_by_winograd; (2, 32, 8, 8, 16, ...) and
    # (5, 16, 7, 7, 16, ...) above too): planes of odd sizes, pads 0 and 2, the tiles of a sweep's images in
    # one call (kernels.conv.dx_images) and of one image's
    (2, 32, 15, 7, 32, 3, 3, 1, 1),
    (1, 33, 7, 8, 40, 3, 3, 1, 0),
    (2, 32, 8, 7, 17, 3, 3, 1, 2),
    (6, 32, 14, 13, 32, 3, 3, 1, 1),
    (28, 16, 8, 8, 16, 3, 3, 1, 1),  # shifted planes, more than a sweep of them in a block
]
POOLS = [(2, 2, 2, 0), (3, 3, 1, 1), (2, 3, 1, 0), (3, 2, 3, 0)]  # (pool_h, pool_w, stride, pad)


def fitting(window, stride, pad, start=6):
    """The first size from ``start`` that the window tiles: (size + 2·pad − window) % stride == 0."""
    return next(s for s in range(start, start + stride) if (s + 2 * pad - window) % stride == 0)


def direct_conv(x, W, b, stride, pad):
    """The definition, one output at a time."""
    N, C, H, Wd = x.shape
    FN, _, FH, FW = W.shape
    xp = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)])
    OH, OW = (H + 2 * pad - FH) // stride + 1, (Wd + 2 * pad - FW) // stride + 1
    out = np.empty((N, FN, OH, OW))
    for n in range(N):
        for f in range(FN):
            for i in range(OH):
                for j in range(OW):
                    window = xp[n, :, i * stride : i * stride + FH, j * stride : j * stride + FW]
                    out[n, f, i, j] = np.sum(window * W[f]) + b[f]
    return out


def direct_col2im(col, shape, FH, FW, stride, pad):
    N, C, H, W = shape
    OH, OW = (H + 2 * pad - FH) // stride + 1, (W + 2 * pad - FW) // stride + 1
    img = np.zeros((N, C, H + 2 * pad, W + 2 * pad))
    rows = col.reshape(N, OH, OW, C, FH, FW)
    for n in range(N):
        for i in range(OH):
            for j in range(OW):
                img[n, :, i * stride : i * stride + FH, j * stride : j * stride + FW] += rows[n, i, j]
    return img[:, :, pad : pad + H, pad : pad + W]


def direct_pool(x, ph, pw, stride, pad):
    """(max, first-maximum index into the padded window order) one window at a time."""
    N, C, H, W = x.shape
    xp = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)])
    OH, OW = (H + 2 * pad - ph) // stride + 1, (W + 2 * pad - pw) // stride + 1
    out, dx_of = np.empty((N, C, OH, OW)), {}
    for n in range(N):
        for c in range(C):
            for i in range(OH):
                for j in range(OW):
                    window = xp[n, c, i * stride : i * stride + ph, j * stride : j * stride + pw]
                    k = int(np.argmax(window))
                    out[n, c, i, j] = window.flat[k]
                    dx_of[(n, c, i, j)] = (i * stride + k // pw - pad, j * stride + k % pw - pad)
    return out, dx_of


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_reference_convolution_and_col2im_against_direct_loops(geometry):
    N, C, H, W, FN, FH, FW, stride, pad = geometry
    rng = np.random.default_rng(sum(geometry))
    x, Wt, b = rng.standard_normal((N, C, H, W)), rng.standard_normal((FN, C, FH, FW)), rng.standard_normal(FN)
    np.testing.assert_allclose(reference.Convolution(Wt, b, stride, pad).forward(x), direct_conv(x, Wt, b, stride, pad),
                               rtol=1e-12, atol=1e-12)  # fmt: skip
    col = rng.standard_normal(reference.im2col(x, FH, FW, stride, pad).shape)
    np.testing.assert_allclose(reference.col2im(col, x.shape, FH, FW, stride, pad),
                               direct_col2im(col, x.shape, FH, FW, stride, pad), rtol=1e-12, atol=1e-12)  # fmt: skip


@pytest.mark.parametrize("pool", POOLS)
def test_reference_pooling_against_direct_loops_first_maximum_on_ties(pool):
    ph, pw, stride, pad = pool
    rng = np.random.default_rng(ph * 10 + pw)
    H, W = fitting(ph, stride, pad), fitting(pw, stride, pad)
    x = rng.integers(-2, 3, (2, 3, H, W)).astype(np.float64)  # small integers: many ties
    layer = reference.Pooling(ph, pw, stride, pad)
    out, where = direct_pool(x, ph, pw, stride, pad)
    np.testing.assert_array_equal(layer.forward(x), out)
    dout = rng.standard_normal(out.shape)
    expected = np.zeros((2, 3, H + 2 * pad, W + 2 * pad))
    for (n, c, i, j), (r, s) in where.items():
        expected[n, c, r + pad, s + pad] += dout[n, c, i, j]
    np.testing.assert_allclose(layer.backward(dout), expected[:, :, pad : pad + H, pad : pad + W], rtol=1e-12)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_conv_kernels_equal_the_reference(geometry, dtype):
    N, C, H, W, FN, FH, FW, stride, pad = geometry
    rng = np.random.default_rng(sum(geometry) + 1)
    x, Wt, b = rng.standard_normal((N, C, H, W)), rng.standard_normal((FN, C, FH, FW)), rng.standard_normal(FN)
    ref = reference.Convolution(Wt, b, stride, pad)
    expected = ref.forward(x)
    out = np.empty(expected.shape, dtype)
    kernels.conv_forward(x.astype(dtype), Wt.astype(dtype), b.astype(dtype), out, stride, pad)
    assert_matches_reference(out, expected, dtype)
    kernels.conv_forward(x.astype(dtype), Wt.astype(dtype), b.astype(dtype), out, stride, pad, relu=True)
    assert_matches_reference(out, np.maximum(expected, 0), dtype, np.abs(expected).max())
    dout = rng.standard_normal(expected.shape)
    dx_ref = ref.backward(dout)
    dW, db, dx = np.empty(Wt.shape, dtype), np.empty(FN, dtype), np.empty(x.shape, dtype)
    kernels.conv_backward(x.astype(dtype), Wt.astype(dtype), dout.astype(dtype), dW, db, dx, stride, pad)
    assert_matches_reference(dW, ref.dW, dtype)
    assert_matches_reference(db, ref.db, dtype)
    assert_matches_reference(dx, dx_ref, dtype)
    assert kernels.conv_backward(x.astype(dtype), Wt.astype(dtype), dout.astype(dtype), dW, db, None, stride, pad)[2] \
        is None  # fmt: skip


def test_conv_backward_overwrites_whatever_its_outputs_held():
    """dW, db and dx are outputs: NaN in them before the call is overwritten, not refused (db was once
    checked as if it were the bias)."""
    rng = np.random.default_rng(3)
    x, Wt = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3))
    ref = reference.Convolution(Wt, np.zeros(4), 1, 1)
    dout = rng.standard_normal(ref.forward(x).shape)
    dx_ref = ref.backward(dout)
    dW, db, dx = np.full(Wt.shape, np.nan), np.full(4, np.nan), np.full(x.shape, np.nan)
    kernels.conv_backward(x, Wt, dout, dW, db, dx, 1, 1)
    for got, want in ((dW, ref.dW), (db, ref.db), (dx, dx_ref)):
        assert_matches_reference(got, want, np.float64)
    with pytest.raises(ValueError, match="argument 'db' must have one entry per filter"):
        kernels.conv_backward(x, Wt, dout, dW, np.empty(3), dx, 1, 1)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("pool", POOLS)
def test_pool_kernels_equal_the_reference(pool, dtype):
    ph, pw, stride, pad = pool
    rng = np.random.default_rng(ph + 7 * pw)
    H, W = fitting(ph, stride, pad), fitting(pw, stride, pad)
    for x in (rng.standard_normal((3, 2, H, W)), rng.integers(-1, 2, (1, 3, H, W)).astype(float)):
        layer = reference.Pooling(ph, pw, stride, pad)
        expected = layer.forward(x)
        out, winners = np.empty(expected.shape, dtype), np.empty(expected.shape, np.int64)
        kernels.pool_forward(x.astype(dtype), out, winners, ph, pw, stride, pad)
        np.testing.assert_array_equal(out, expected.astype(dtype))
        dout = rng.standard_normal(expected.shape)
        dx = np.empty(x.shape, dtype)
        kernels.pool_backward(dout.astype(dtype), winners, dx)
        assert_matches_reference(dx, layer.backward(dout), dtype)  # ties: the same (first) winner


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("geometry", [g for g in GEOMETRIES if g[7] == 1] + [(2, 5, 8, 8, 11, 3, 3, 1, 1)])
def test_the_shifted_copies_give_the_padded_image_s_bits(geometry, dtype):
    """Direct tiles on an image's shifted copies (conv.shift_image, shifted_tiles: OH·OW pixels a plane)
    write, bit for bit, the output that direct tiles on its padded image write (OH·Wp: conv.direct_tiles),
    the bias added and ReLU applied; whichever route conv.uses_shifted takes."""
    N, C, H, W, FN, FH, FW, _, pad = geometry
    rng = np.random.default_rng(N * H + FN)
    x = rng.standard_normal((N, C * H * W)).astype(dtype)
    weights, b = rng.standard_normal((FN, C * FH * FW)).astype(dtype), rng.standard_normal(FN).astype(dtype)
    packed = np.empty(weights.size, dtype)
    conv_kernels.direct_filters(weights, C, FH, FW, packed)
    geo = np.array([C, H, W, FH, FW, 1, pad], np.int64)
    Hq, Wp = conv_kernels._padded_plane(H, W, FW, pad)
    OH, OW = H + 2 * pad - FH + 1, W + 2 * pad - FW + 1
    wide_n, shifted_n = conv_kernels.wide_pixels(OH, Wp, x.itemsize), conv_kernels.shifted_pixels(OH, OW, x.itemsize)
    for n in range(N):
        xp = np.full(conv_kernels.padded_size(C, H, W, FW, pad), np.nan, dtype)
        conv_kernels._pad_image(x[n], C, H, W, pad, Hq, Wp, xp)
        wide, xs = np.empty(FN * wide_n, dtype), np.full(conv_kernels.shifted_size(C, H, W, FH, FW, pad), np.nan, dtype)
        conv_kernels.direct_tiles(xp, packed, b, wide, 0, wide_n, geo, RELU)
        conv_kernels.shift_image(xp, C, H, W, FW, pad, xs)
        shifted = np.empty(FN * shifted_n, dtype)
        conv_kernels.shifted_tiles(xs, packed, b, shifted, 0, shifted_n, geo, RELU)
        expected = wide.reshape(FN, -1)[:, : OH * Wp].reshape(FN, OH, Wp)[:, :, :OW]
        np.testing.assert_array_equal(shifted.reshape(FN, -1)[:, : OH * OW].reshape(FN, OH, OW), expected)
        assert (expected >= 0).all()


# (C, H, W, FN, pad): Winograd's 3×3; odd sizes (a last tile half outside), one tile, pads 0–2, filters not
# a whole number of tiles, channels past a vector
WINOGRAD_GEOMETRIES = [(16, 7, 9, 16, 1), (17, 3, 3, 19, 0), (16, 1, 2, 16, 1), (33, 8, 8, 21, 1), (16, 14, 14, 32, 2),
                       (20, 5, 12, 24, 0), (16, 28, 28, 16, 1), (24, 2, 6, 17, 2)]  # fmt: skip


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("geometry", WINOGRAD_GEOMETRIES)
def test_winograd_equals_the_reference(geometry, dtype):
    """conv.winograd_tiles (the transforms, the 16 products, the bias and ReLU) against the reference's
    convolution, into rows as long as the output's and longer; its scratch and the padded image's
    slack start as NaN (nothing stale or past the image may reach an output), and so does the output:
    nothing but the OH·OW outputs of each plane is written."""
    C, H, W, FN, pad = geometry
    rng = np.random.default_rng(C * H + W + FN + pad)
    x, Wt, b = rng.standard_normal((2, C, H, W)), rng.standard_normal((FN, C, 3, 3)), rng.standard_normal(FN)
    expected = reference.Convolution(Wt, b, 1, pad).forward(x)
    OH, OW = expected.shape[2:]
    packed = np.empty(conv_kernels.taps_size(C, FN, 3, 3), dtype)
    conv_kernels.winograd_filters(Wt.reshape(FN, -1).astype(dtype), C, packed, False)
    geo = np.array([C, H, W, 3, 3, 1, pad], np.int64)
    Hq, Wp = conv_kernels._padded_plane(H, W, 3, pad)
    scratch = np.full(conv_kernels.winograd_size(C, H, W, FN, pad, np.dtype(dtype).itemsize), np.nan, dtype)
    for n, row in enumerate((OW, OW + 3)):
        N = OH * row + 5
        xp = np.full(conv_kernels.padded_size(C, H, W, 3, pad), np.nan, dtype)
        conv_kernels._pad_image(x[n].astype(dtype).ravel(), C, H, W, pad, Hq, Wp, xp)
        for activation, want in ((RELU, np.maximum(expected[n], 0)), (IDENTITY, expected[n])):
            out = np.full(FN * N, np.nan, dtype)
            conv_kernels.winograd_tiles(xp, packed, b.astype(dtype), out, N, row, scratch, geo, activation)
            planes = out.reshape(FN, N)[:, : OH * row].reshape(FN, OH, row)
            assert_matches_reference(planes[:, :, :OW], want, dtype, np.abs(expected).max())
            assert np.isnan(planes[:, :, OW:]).all() and np.isnan(out.reshape(FN, N)[:, OH * row :]).all()


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("turned", [False, True])
@pytest.mark.parametrize("C, FN", [(16, 16), (17, 19), (64, 64), (3, 5), (64, 13), (9, 40)])
def test_winograd_filters_on_every_core_equal_one_thread(C, FN, turned, dtype):
    """The training passes' filter transform (``winograd_filters_parallel``: whole tiles of filters a
    block, staged writes) writes every value of packed, and the same bits as ``winograd_filters`` on
    one thread, whatever the count of filters, channels and blocks."""
    rng = np.random.default_rng(C * FN + turned)
    Wmat = rng.standard_normal((FN, C * 9)).astype(dtype)
    one, every = np.full(16 * FN * C, np.nan, dtype), np.full(16 * FN * C, np.nan, dtype)
    conv_kernels.winograd_filters(Wmat, C, one, turned)
    conv_kernels.winograd_filters_parallel(Wmat, C, every, turned)
    assert not np.isnan(one).any()
    assert np.array_equal(one, every)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("geometry", WINOGRAD_GEOMETRIES)
def test_winograd_weight_gradient_equals_the_reference(geometry, dtype):
    """conv.winograd_weight_gradient (the gradient tiles' transform, the 16 products over two images'
    tiles, the transform back to 3×3) against the reference's dW, from gradient planes with rows as
    long as the output's and longer, set then added; everything around the gradients, its work and
    its part start as NaN: nothing past a plane's OH × OW gradients may be read, nothing stale used."""
    C, H, W, FN, pad = geometry
    rng = np.random.default_rng(C * H + W + FN + pad + 1)
    x, Wt = rng.standard_normal((2, C, H, W)), rng.standard_normal((FN, C, 3, 3))
    ref = reference.Convolution(Wt, np.zeros(FN), 1, pad)
    dout = rng.standard_normal(ref.forward(x).shape)
    ref.backward(dout)
    expected = ref.dW.transpose(2, 3, 0, 1).reshape(-1)  # part's order: tap, filter, channel
    N, _, OH, OW = dout.shape
    itemsize = np.dtype(dtype).itemsize
    TY, TX, _ = conv_kernels._winograd_tiles_of(OH, OW, itemsize)
    Tp, v_stride, _ = conv_kernels._winograd_layout(C, FN, N * TY * TX, itemsize)
    Hq, Wp = conv_kernels._padded_plane(H, W, 3, pad)
    for row in (OW, OW + 3):
        work = np.full(conv_kernels._winograd_dw_size(C, FN, N * TY * TX, itemsize), np.nan, dtype)
        for n in range(N):
            xp = np.full(conv_kernels.padded_size(C, H, W, 3, pad), np.nan, dtype)
            conv_kernels._pad_image(x[n].astype(dtype).ravel(), C, H, W, pad, Hq, Wp, xp)
            conv_kernels.winograd_inputs(xp, (0, Hq * Wp, Wp, 0), C, OH, OW, 1, work, v_stride, Tp, n * TY * TX)
        g0, g_plane = 3, OH * row + 7
        g_image = FN * g_plane + 5
        g = np.full(g0 + N * g_image, np.nan, dtype)
        for n in range(N):
            for f in range(FN):
                at = g0 + n * g_image + f * g_plane
                g[at : at + OH * row].reshape(OH, row)[:, :OW] = dout[n, f]
        part = np.full(9 * FN * C, np.nan, dtype)
        for first, times in ((True, 1), (False, 2)):
            conv_kernels.winograd_weight_gradient(g, (g0, g_plane, row, g_image), FN, C, OH, OW, N, work, part, first)
            assert_matches_reference(part, times * expected, dtype)


def test_which_weight_gradients_run_by_winograd():
    """The weight tiles' dW by Winograd's transform for 3×3 filters at stride 1 and pad ≤ 2 with 16+
    channels and filters: DeepConvNet's conv2 to conv6, accurate-conv's 14×14 layer; not its first
    layers (one channel), nor what the forward's transform does not take."""
    for C, H, W, FN, pad in [(16, 28, 28, 16, 1), (16, 14, 14, 32, 1), (32, 14, 14, 32, 2), (32, 8, 8, 64, 1),
                             (64, 8, 8, 64, 1), (32, 14, 14, 64, 1), (16, 5, 6, 16, 0)]:  # fmt: skip
        for itemsize in (4, 8):
            assert conv_kernels.dw_by_winograd(C, H, W, FN, 3, 3, 1, pad, itemsize)
    for C, H, W, FN, FH, FW, stride, pad in [(1, 28, 28, 16, 3, 3, 1, 1), (15, 8, 8, 16, 3, 3, 1, 1),
                                             (16, 8, 8, 15, 3, 3, 1, 1), (32, 8, 8, 32, 3, 3, 2, 1),
                                             (32, 8, 8, 32, 5, 5, 1, 2), (32, 8, 8, 32, 3, 3, 1, 3)]:  # fmt: skip
        assert not conv_kernels.dw_by_winograd(C, H, W, FN, FH, FW, stride, pad, 4)


def test_which_convolutions_run_by_winograd():
    """3×3 at stride 1, pad ≤ 2, 16+ channels and filters; with fewer than 32 channels, tiles that fill
    their vectors (float32: 16 a vector; float64: 8)."""
    taken = [(16, 28, 28, 16, 1), (16, 14, 14, 32, 2), (32, 14, 14, 64, 1), (32, 8, 8, 64, 1), (64, 8, 8, 64, 0),
             (16, 8, 8, 16, 1)]  # fmt: skip
    for C, H, W, FN, pad in taken:
        for itemsize in (4, 8):
            assert conv_kernels.uses_winograd(C, H, W, FN, 3, 3, 1, pad, itemsize)
    assert not conv_kernels.uses_winograd(16, 14, 14, 32, 3, 3, 1, 1, 4)  # 49 tiles as 64
    assert conv_kernels.uses_winograd(16, 14, 14, 32, 3, 3, 1, 1, 8) == (_simd.VECTOR_BYTES == 32)  # as 52, or 56
    for geometry in [(15, 8, 8, 16, 3, 3, 1, 1), (16, 8, 8, 15, 3, 3, 1, 1), (32, 8, 8, 32, 3, 3, 1, 3),
                     (32, 8, 8, 32, 3, 3, 2, 1), (32, 8, 8, 32, 5, 5, 1, 2), (32, 8, 8, 32, 3, 2, 1, 1)]:  # fmt: skip
        assert not conv_kernels.uses_winograd(geometry[0], geometry[1], geometry[2], geometry[3], *geometry[4:], 4)


def test_which_input_gradients_run_by_winograd():
    """The weight tiles' dx by Winograd's transform where the forward's rule takes the convolution of the
    output gradient (FN channels) into the input's C planes and the tiles of the images taken together
    (conv.dx_images: a sweep's, or one image's on shifted copies) fill their vectors: DeepConvNet's
    conv2 to conv6 and accurate-conv's 14×14 layer (five images' 245 tiles as 256 in float32 on
    AVX-512); not a 5×6 plane on shifted copies (9 tiles as 16, or 12), nor what the forward refuses."""
    for C, H, W, FN, pad in [(16, 28, 28, 16, 1), (16, 14, 14, 32, 1), (32, 14, 14, 32, 2), (32, 8, 8, 64, 1),
                             (64, 8, 8, 64, 1), (32, 14, 14, 64, 1)]:  # fmt: skip
        for itemsize in (4, 8):
            assert conv_kernels.dx_by_winograd(C, H, W, FN, 3, 3, 1, pad, itemsize)
    for itemsize in (4, 8):
        assert conv_kernels.dx_images(5, 6, 3, 3, 1, itemsize) == 1
        assert not conv_kernels.dx_by_winograd(32, 5, 6, 32, 3, 3, 1, 1, itemsize)
    for C, H, W, FN, FH, FW, stride in [(15, 8, 8, 16, 3, 3, 1), (32, 8, 8, 15, 3, 3, 1), (32, 8, 8, 32, 3, 3, 2),
                                        (32, 8, 8, 32, 5, 5, 1)]:  # fmt: skip
        assert not conv_kernels.dx_by_winograd(C, H, W, FN, FH, FW, stride, 1, 4)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("pool", [(2, 2, 2), (3, 3, 1), (2, 3, 1), (3, 2, 3)])
@pytest.mark.parametrize("size", [(2, 2), (6, 70), (13, 9)])
def test_the_test_time_pool_equals_the_pool_with_winners(pool, size, dtype):
    """max_pool_planes (no winners; the book's 2×2 windows a vector of outputs at a time, the last
    vector masked) gives the training-time kernel's values, NaN and infinities included, over an
    image and over a wider plane of rows (a convolution's wide output), writing nothing else."""
    ph, pw, stride = pool
    H, W = size
    if H < ph or W < pw:
        pytest.skip("the window does not fit")
    H, W = H - (H - ph) % stride, W - (W - pw) % stride  # whole windows
    OH, OW = (H - ph) // stride + 1, (W - pw) // stride + 1
    rng = np.random.default_rng(H * W + ph)
    x = rng.standard_normal((3, 2, H, W)).astype(dtype)
    flat = x.reshape(-1)
    flat[::29], flat[::31], flat[5::37] = np.inf, -np.inf, np.nan
    x[1] = rng.integers(-1, 2, (2, H, W))  # ties, and -0.0 next to 0.0
    x[1, 0, 0, :2] = -0.0, 0.0
    expected, winners = np.empty((3, 2, OH, OW), dtype), np.empty((3, 2, OH, OW), np.int64)
    kernels.pool_forward_unchecked(x, expected, winners, ph, pw, stride, 0)  # pool_forward refuses NaN
    rows = W + 3  # the planes of a wider buffer: 3 unused columns per row, 1 row and 5 values between planes
    wide = np.full((3, 2 * ((H + 1) * rows + 5)), 7.0, dtype)
    for n in range(3):
        for c in range(2):
            start = c * ((H + 1) * rows + 5)
            wide[n, start : start + H * rows].reshape(H, rows)[:, :W] = x[n, c]
    for src, plane, row in ((x.reshape(3, -1), H * W, W), (wide, (H + 1) * rows + 5, rows)):
        out = np.full((3, 2 * OH * OW + 40), 5.0, dtype)
        for n in range(3):
            pool_kernels.max_pool_planes(src[n], plane, row, 2, ph, pw, stride, OH, OW, out[n])
        np.testing.assert_array_equal(out[:, : 2 * OH * OW], expected.reshape(3, -1))
        numbers = ~np.isnan(expected.reshape(3, -1))
        assert (np.signbit(out[:, : 2 * OH * OW])[numbers] == np.signbit(expected.reshape(3, -1))[numbers]).all()
        assert (out[:, 2 * OH * OW :] == 5).all()


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("size", [(2, 2), (6, 40), (10, 14)])
def test_the_book_pool_s_vector_kernels_equal_the_general_ones(size, dtype):
    """2×2 windows at stride 2 (``_simd.pool_row_winners``, ``unpool_row``): the same outputs,
    winners (the first largest, the first NaN) and input gradient (times ReLU's derivative) as
    the general loops, which a window size of 0 in the backward's geometry selects."""
    H, W = size
    N, C, OH, OW = 3, 2, H // 2, W // 2
    rng = np.random.default_rng(H + W)
    x = rng.standard_normal((N, C * H * W)).astype(dtype)
    x[1] = rng.integers(-1, 2, C * H * W)  # ties
    x[2, ::7], x[2, 3::11], x[2, 1] = np.nan, np.inf, np.nan
    geometry = (C, H, W, 2, 2, 2, 0, OH, OW)
    out, winners = np.empty((N, C * OH * OW), dtype), np.empty((N, C * OH * OW), np.int64)
    pool_kernels.pool_forward_rows(x, out, winners, C, H, W, 2, 2, 2, 0)
    expected, where = direct_pool(x.reshape(N, C, H, W).astype(np.float64), 2, 2, 2, 0)  # argmax: the first NaN
    np.testing.assert_array_equal(out, expected.reshape(N, -1).astype(dtype))
    flat_where = [c * H * W + r * W + q for (_, c, _, _), (r, q) in sorted(where.items())]
    np.testing.assert_array_equal(winners.reshape(-1), flat_where)
    dout = rng.standard_normal(out.shape).astype(dtype)
    dx, dx_general = np.full(x.shape, 9, dtype), np.full(x.shape, 9, dtype)
    pool_kernels.pool_backward_rows(dout, winners, dx, x, RELU, geometry)
    pool_kernels.pool_backward_rows(dout, winners, dx_general, x, RELU, (0,) * 9)
    np.testing.assert_array_equal(dx, dx_general)


def test_pool_shows_nan_and_keeps_infinity():
    x = np.zeros((1, 1, 4, 4), np.float32)
    x[0, 0, 0, 1], x[0, 0, 2, 2], x[0, 0, 3, 3] = np.nan, np.inf, -np.inf
    out, winners = np.empty((1, 1, 2, 2), np.float32), np.empty((1, 1, 2, 2), np.int64)
    kernels.pool_forward_unchecked(x, out, winners, 2, 2, 2, 0)
    assert np.isnan(out[0, 0, 0, 0]) and winners[0, 0, 0, 0] == 1
    assert out[0, 0, 1, 1] == np.inf and winners[0, 0, 1, 1] == 10


@pytest.mark.parametrize("call,words", [
    (lambda: kernels.conv_forward(np.ones((2, 3, 5, 5)), np.ones((4, 2, 3, 3)), np.ones(4), np.ones((2, 4, 3, 3))),
     "must have the input's channels"),
    (lambda: kernels.conv_forward(np.ones((2, 1, 5, 5)), np.ones((4, 1, 3, 3)), np.ones(4), np.ones((2, 4, 3, 3)),
                                  stride=2, pad=0), "the output (or dout) must have shape"),
    (lambda: kernels.conv_forward(np.ones((2, 1, 6, 6)), np.ones((4, 1, 3, 3)), np.ones(4), np.ones((2, 4, 2, 2)),
                                  stride=2), "must be a multiple of the stride"),
    (lambda: kernels.conv_forward(np.ones((2, 1, 2, 2)), np.ones((4, 1, 3, 3)), np.ones(4), np.ones((2, 4, 1, 1))),
     "the window does not fit"),
    (lambda: kernels.conv_forward(np.full((1, 1, 3, 3), np.nan), np.ones((1, 1, 3, 3)), np.ones(1),
                                  np.ones((1, 1, 1, 1))), "argument 'x' contains NaN"),
    (lambda: kernels.pool_forward(np.ones((1, 1, 5, 5)), np.ones((1, 1, 2, 2)), np.ones((1, 1, 2, 2), np.int64)),
     "must be a multiple of the stride"),
    (lambda: kernels.pool_backward(np.ones((1, 1, 2, 2)), np.full((1, 1, 2, 2), 99), np.ones((1, 1, 4, 4))),
     "a winner lies outside its image"),
])  # fmt: skip
def test_bad_geometry_and_values_are_value_errors_naming_the_sizes(call, words):
    with pytest.raises(ValueError) as info:
        call()
    assert words in str(info.value)


def test_bad_kinds_are_type_errors():
    with pytest.raises(ValueError, match="must be 4-D"):
        kernels.conv_forward(np.ones((2, 25)), np.ones((4, 1, 5, 5)), np.ones(4), np.ones((2, 4, 1, 1)))
    with pytest.raises(TypeError, match="share a dtype"):
        kernels.conv_forward(
            np.ones((1, 1, 3, 3), np.float32), np.ones((1, 1, 3, 3)), np.ones(1), np.ones((1, 1, 1, 1))
        )
    with pytest.raises(TypeError, match="must be int64"):
        kernels.pool_forward(np.ones((1, 1, 2, 2)), np.ones((1, 1, 1, 1)), np.ones((1, 1, 1, 1), np.int32))


def test_kernels_from_njit_code():
    @njit
    def conv_then_pool(x, W, b, out, pooled, winners):
        kernels.conv_forward(x, W, b, out, 1, 0, True)
        kernels.pool_forward(out, pooled, winners, 2, 2, 2, 0)
        return pooled.sum()

    rng = np.random.default_rng(0)
    x, W, b = rng.standard_normal((2, 1, 6, 6)), rng.standard_normal((3, 1, 3, 3)), np.zeros(3)
    out, pooled, winners = np.empty((2, 3, 4, 4)), np.empty((2, 3, 2, 2)), np.empty((2, 3, 2, 2), np.int64)
    total = conv_then_pool(x, W, b, out, pooled, winners)
    ref = reference.Pooling(2, 2).forward(np.maximum(reference.Convolution(W, b).forward(x), 0))
    assert total == pytest.approx(ref.sum(), rel=1e-12)
    with pytest.raises(ValueError, match="channels"):
        conv_then_pool(x, rng.standard_normal((3, 2, 3, 3)), b, out, pooled, winners)


@pytest.mark.parametrize("channels,filters", [(1, 3), (8, 9)])  # backward: unfolded windows, weight tiles
def test_unchecked_kernels_with_scratch_sized_by_the_helpers(channels, filters):
    @njit
    def forward_backward(x, W, b, dout, out, dW, db, dx):
        N, C, H, Wd = x.shape
        FN, _, FH, FW = W.shape
        blocks = kernels.conv_blocks(N, C * FH * FW, out.shape[2] * out.shape[3], FN)
        size = kernels.conv_scratch_size(C, H, Wd, FN, FH, FW, 1, 1)
        col, dcol = np.empty((blocks, size)), np.empty((blocks, size))
        kernels.conv_forward_unchecked(x, W, b, out, col, 1, 1, 0)
        kernels.conv_backward_unchecked(x, W, dout, dW, db, dx, col, dcol, 1, 1)

    rng = np.random.default_rng(channels)
    x, W, b = rng.standard_normal((9, channels, 7, 6)), rng.standard_normal((filters, channels, 3, 3)), np.ones(filters)
    out, dout = np.empty((9, filters, 7, 6)), rng.standard_normal((9, filters, 7, 6))
    dW, db, dx = np.empty_like(W), np.empty(filters), np.empty_like(x)
    forward_backward(x, W, b, dout, out, dW, db, dx)
    ref = reference.Convolution(W, b, 1, 1)
    np.testing.assert_allclose(out, ref.forward(x), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, ref.backward(dout), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dW, ref.dW, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db, ref.db, rtol=1e-12, atol=1e-12)


# -- SimpleConvNet ---------------------------------------------------------------------------------

NETS = [((1, 12, 12), {"filter_num": 4, "filter_size": 5, "pad": 0, "stride": 1}, 1),
        ((3, 11, 11), {"filter_num": 3, "filter_size": 3, "pad": 1, "stride": 2}, 1),
        ((2, 8, 8), {"filter_num": 5, "filter_size": 3, "pad": 2, "stride": 1}, 6)]  # fmt: skip


def twin_nets(input_dim, conv_param, dtype=np.float64, hidden=7, classes=4, std=0.3):
    net = SimpleConvNet(input_dim, conv_param, hidden, classes, std, dtype=dtype, seed=5)
    ref = reference.SimpleConvNet(input_dim, conv_param, hidden, classes, std, seed=5)
    return net, ref


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("input_dim,conv_param,batch", NETS)
def test_simple_convnet_equals_the_reference(input_dim, conv_param, batch, dtype):
    rng = np.random.default_rng(batch)
    net, ref = twin_nets(input_dim, conv_param, dtype)
    x, t = rng.standard_normal((batch, *input_dim)), rng.integers(0, 4, batch)
    for key in ref.params:
        assert_matches_reference(net.params[key], ref.params[key], dtype)
    assert_matches_reference(net.predict(x.astype(dtype)), ref.predict(x), dtype)
    assert_matches_reference(net.predict(x.reshape(batch, -1).astype(dtype)), ref.predict(x), dtype)  # flat rows
    assert net.loss(x, t) == pytest.approx(ref.loss(x, t), rel=1e-5 if dtype == np.float32 else 1e-12)
    grads, ref_grads = net.gradient(x, t), ref.gradient(x, t)
    for key in ref_grads:
        assert_matches_reference(grads[key], ref_grads[key], dtype, np.abs(ref_grads[key]).max() + 1e-12)
    hot = net.gradient(x, np.eye(4)[t])
    assert all(np.array_equal(hot[k], grads[k]) for k in grads)
    assert net.accuracy(x, t, batch_size=1) == ref.accuracy(x, t)


@pytest.mark.parametrize("input_dim,conv_param,batch", NETS[:2])
def test_simple_convnet_gradcheck_float64(input_dim, conv_param, batch):
    rng = np.random.default_rng(3)
    net, _ = twin_nets(input_dim, conv_param)
    x, t = rng.standard_normal((batch, *input_dim)), rng.integers(0, 4, batch)
    report = compare_gradients(net.gradient(x, t), net.numerical_gradient(x, t), threshold=1e-5)
    assert report.passed, str(report)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("make_optimizer", [lambda: optim.SGD(0.1), lambda: optim.Adam(0.01)])
def test_the_books_loop_ends_where_steps_ends(make_optimizer, dtype):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((40, 2 * 8 * 8)).astype(dtype)
    t, batches = rng.integers(0, 4, 40), rng.integers(0, 40, (4, 10))
    fused, looped = twin_nets((2, 8, 8), NETS[2][1], dtype)[0], twin_nets((2, 8, 8), NETS[2][1], dtype)[0]
    fused.steps(x, t, batches, make_optimizer())
    opt = make_optimizer()
    for b in batches:
        opt.update(looped.params, looped.gradient(x[b], t[b]))
    assert fused._flat.tobytes() == looped._flat.tobytes()


def test_steps_follow_the_reference_in_float64():
    rng = np.random.default_rng(4)
    net, ref = twin_nets((1, 12, 12), NETS[0][1])
    x, t = rng.standard_normal((30, 144)), rng.integers(0, 4, 30)
    batches = rng.integers(0, 30, (5, 8))
    losses = net.steps(x, t, batches, optim.Momentum(0.05))
    opt = reference.Momentum(0.05)
    for s, b in enumerate(batches):
        grads = ref.gradient(x[b].reshape(-1, 1, 12, 12), t[b])
        assert losses[s] == pytest.approx(ref.last_layer.loss, rel=1e-10)
        opt.update(ref.params, grads)
    for key in ref.params:
        np.testing.assert_allclose(net.params[key], ref.params[key], rtol=1e-9, atol=1e-12, err_msg=key)
    images = x[:8].reshape(-1, 1, 12, 12)
    before = ref.loss(images, t[:8])
    assert net.step(images, t[:8], 0.01) == pytest.approx(before, rel=1e-10)  # the loss before the update
    assert net.loss(images, t[:8]) != pytest.approx(before, rel=1e-10)
    assert net.step_indices(x, t, np.arange(5), optim.SGD(0.01)) > 0


def test_bitwise_identical_with_1_2_and_8_threads():
    code = (
        "import numpy as np; from fastnet import SimpleConvNet, optim\n"
        "rng = np.random.default_rng(5); x = rng.random((200, 784)).astype(np.float32)\n"
        "t = rng.integers(0, 10, 200); b = rng.integers(0, 200, (3, 50))\n"
        "net = SimpleConvNet(conv_param={'filter_num': 6, 'filter_size': 5, 'pad': 0, 'stride': 1}, hidden_size=20,"
        " seed=2)\n"
        "print(net.steps(x, t, b, optim.Adam()).tolist(), net._flat.tobytes().hex()[:4000],"
        " net.predict(x[:7]).tobytes().hex())\n"
        "from fastnet import DeepConvNet; import hashlib\n"  # its convs after the first: weight tiles
        "cps = [{'filter_num': n, 'filter_size': 3, 'pad': p, 'stride': 1} for n, p in zip((8, 8, 9, 9, 10, 10),"
        " (1, 1, 1, 2, 1, 1))]\n"
        "deep = DeepConvNet((1, 12, 12), *cps, hidden_size=6, output_size=10, seed=3); xs = x[:, :144].copy()\n"
        "print(deep.steps(xs, t, b, optim.Adam()).tolist(), hashlib.sha256(deep._flat.tobytes()).hexdigest(),"
        " deep.predict(xs[:7]).tobytes().hex())"
    )
    outputs = set()
    for threads in ("1", "2", "8"):
        env = {**os.environ, "NUMBA_NUM_THREADS": threads, "FASTNET_BLOCKS": "4"}
        run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        outputs.add(run.stdout)
    assert len(outputs) == 1 and outputs.pop()


@pytest.mark.parametrize("kwargs,words", [
    ({"input_dim": (1, 28)}, "input_dim must be (channels, height, width)"),
    ({"input_dim": (1, 3, 3)}, "does not fit its 3×3 input"),
    ({"conv_param": {"filter_num": 30, "filter_size": 4, "pad": 0, "stride": 1}}, "layer 2 (pool 2×2"),
    ({"conv_param": {"filter_num": 30, "filter_size": 5, "pad": 0, "stride": 2}}, "multiple of the stride"),
    ({"conv_param": {"filter_num": 0}}, "filter_num'] must be a positive integer"),
    ({"conv_param": {"size": 3}}, "conv_param must be a dict with keys"),
    ({"hidden_size": -1}, "hidden_size must be a positive integer"),
    ({"weight_init_std": float("nan")}, "weight_init_std must be a finite number"),
])  # fmt: skip
def test_bad_constructor_arguments(kwargs, words):
    with pytest.raises(ValueError) as info:
        SimpleConvNet(**kwargs)
    assert words in str(info.value)


def test_bad_inputs_name_the_problem():
    net = SimpleConvNet((1, 12, 12), NETS[0][1], 7, 4, seed=0)
    t = np.zeros(2, np.int64)
    for x, words in [(np.ones((2, 2, 12, 12)), "images x must have shape (N, 1, 12, 12)"),
                     (np.ones((2, 143)), "x must have shape (N, 144) or images (N, 1, 12, 12)"),
                     (np.ones((2, 1, 12)), "x must have shape (N, 144)")]:  # fmt: skip
        with pytest.raises(ValueError) as info:
            net.predict(x)
        assert words in str(info.value)
    bad = np.ones((2, 144), np.float32)
    bad[1, 3] = np.nan
    with pytest.raises(ValueError, match=r"x contains NaN or infinity \(row 1\)"):
        net.predict(bad)
    with pytest.raises(ValueError, match="NaN or infinity in row"):
        net.steps(bad, t, np.array([[0, 1]]), 0.1)
    with pytest.raises(ValueError, match="labels must lie in"):
        net.loss(np.ones((2, 144)), np.array([0, 4]))
    with pytest.raises(ValueError, match="labels must lie in"):
        net.steps(np.ones((2, 144), np.float32), np.array([0, 4]), np.array([[0, 1]]), 0.1)
    before = net._flat.copy()
    with pytest.raises(ValueError, match="batch index lies outside"):
        net.steps(np.ones((2, 144), np.float32), t, np.array([[0, 2]]), 0.1)
    assert np.array_equal(before, net._flat)


def test_every_work_split_equals_the_reference():
    """The kernels and a SimpleConvNet step with 1, 3 and 5 blocks per parallel loop (FASTNET_BLOCKS),
    each in a process of its own, against the reference in float64."""
    code = (
        "import numpy as np; from fastnet import SimpleConvNet, kernels, optim, reference\n"
        "rng = np.random.default_rng(0); x = rng.standard_normal((7, 3, 11, 11))\n"
        "W = rng.standard_normal((4, 3, 3, 3))\n"
        "b = rng.standard_normal(4); out = np.empty((7, 4, 6, 6)); kernels.conv_forward(x, W, b, out, 2, 1)\n"
        "ref = reference.Convolution(W, b, 2, 1); assert np.allclose(out, ref.forward(x), rtol=1e-12, atol=1e-12)\n"
        "dout = rng.standard_normal(out.shape); dW, db, dx = np.empty_like(W), np.empty(4), np.empty_like(x)\n"
        "kernels.conv_backward(x, W, dout, dW, db, dx, 2, 1); rdx = ref.backward(dout)\n"
        "assert np.allclose(dW, ref.dW, rtol=1e-12) and np.allclose(db, ref.db) and np.allclose(dx, rdx, atol=1e-12)\n"
        "W = rng.standard_normal((8, 9, 3, 3)); b = rng.standard_normal(8); x9 = rng.standard_normal((7, 9, 6, 5))\n"
        "out = np.empty((7, 8, 6, 5)); kernels.conv_forward(x9, W, b, out, 1, 1)\n"
        "ref = reference.Convolution(W, b, 1, 1)\n"
        "assert np.allclose(out, ref.forward(x9), rtol=1e-12, atol=1e-12)  # weight tiles\n"
        "dout = rng.standard_normal(out.shape); dW, db, dx = np.empty_like(W), np.empty(8), np.empty_like(x9)\n"
        "kernels.conv_backward(x9, W, dout, dW, db, dx, 1, 1); rdx = ref.backward(dout)\n"
        "assert np.allclose(dW, ref.dW, rtol=1e-12) and np.allclose(db, ref.db) and np.allclose(dx, rdx, atol=1e-12)\n"
        "cp = {'filter_num': 3, 'filter_size': 3, 'pad': 1, 'stride': 2}\n"
        "net = SimpleConvNet((3, 11, 11), cp, 5, 4, 0.3, dtype=np.float64, seed=1)\n"
        "twin = reference.SimpleConvNet((3, 11, 11), cp, 5, 4, 0.3, seed=1); t = rng.integers(0, 4, 7)\n"
        "net.step(x, t, optim.SGD(0.1)); reference.SGD(0.1).update(twin.params, twin.gradient(x, t))\n"
        "assert all(np.allclose(net.params[k], twin.params[k], rtol=1e-12, atol=1e-14) for k in twin.params)\n"
        "print('ok')"
    )
    for blocks in ("1", "3", "5"):
        env = {**os.environ, "FASTNET_BLOCKS": blocks}
        run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr
