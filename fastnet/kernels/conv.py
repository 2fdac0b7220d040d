"""Convolution (chapter 7): forward (+ bias, + ReLU) next to its backward (dW, db, dx).

Images are NCHW, filters (FN, C, FH, FW), outputs (N, FN, OH, OW), OH = (H + 2·pad − FH) /
stride + 1; reference twin: ``fastnet.reference.Convolution``. Each image takes one of four
routes, chosen by the shapes (``uses_direct``, ``uses_winograd`` for the forward, ``uses_weight_tiles`` for
the backward):

* **direct tiles** (stride 1, the forward and the weight tiles' dx): no unfolding. With the
  image zero-padded into planes of Wp columns (``_padded_plane``: W + pad, the zeros between two
  rows padding both), filter tap (fy, fx) reads every output pixel's input at one fixed offset
  fy·Wp + fx, so a "wide" output of OH × Wp pixels (its last Wp − OW columns discarded) is, pixel
  run by pixel run, a sum of weights times runs of the padded image. ``_simd.conv_tile`` computes
  it for a tile of filters × consecutive wide pixels held in vector registers, the bias and ReLU
  added before the tile is stored::

    forward   wide = Σ_c Σ_taps w[:, c, tap] ⊗ xp_c[tap offset:]      then cut to OW columns

  Where the Wp − OW extra columns are a large share of a row (8×8 planes padded by 1: 80 wide
  pixels for 64), the tiles run instead on FW copies of the padded image, copy fx shifted left by
  fx columns and cut to OW (``shift_image``): tap (fy, fx) then reads copy fx at offset fy·OW,
  and the output has no extra column (``uses_shifted``, ``shifted_tiles``; the same sums).

* **weight tiles** (the backward at stride 1 with 8+ filters, and 8+ input channels where dx is
  wanted): the output gradient widened with zeros to the wide output's Wp columns (dwide), then
  dW[:, c, tap] = dwide·xp_c[tap offset:]ᵀ, a ``_simd.weight_tile`` of filters × (channel, tap)
  sums in vector registers at a time, over several images in one sweep::

    backward  dW_tap = Σ_n dwide_n·xp_n[tap offset:]ᵀ (or by Winograd's transform, below:
                  ``dw_by_winograd``), db = Σ dout
              dx: direct tiles over dwide with the filters turned by 180° (``flipped_filters``),
                  or Winograd's transform of them (below; ``dx_by_winograd``)

  Where the forward runs on shifted copies, so do the weight tiles: the output gradient in rows of
  OW (no column to widen), the input as its shifted copies (``gradient_layout``); dx then widens
  each image's gradient for its tiles.

* **unfolded windows** (any stride; the backward of thin layers), with BLAS: the windows are
  unfolded into ``col`` (K = C·FH·FW rows, P = OH·OW columns: the transposed im2col, so that one
  product with the filters, (FN×K)·(K×P), writes the output in NCHW order directly)::

    forward   out_n = W·col_n + b, ReLU in the same pass over out_n
    backward  [dW db] = Σ_n dout_n·[col_n; 1]ᵀ (a row of ones under col: the bias gradient comes
              out of the same product), dcol_n = Wᵀ·dout_n → dx_n (col2im)

  The unfolded block is FH·FW times the image, written and read once per pass; the tiles read the
  padded image in place (docs/PERFORMANCE.md has the measurements).

* **Winograd's F(2×2, 3×3)** (the forward of 3×3 stride-1 layers of 16+ channels and filters,
  ``uses_winograd``, and by the same rule the weight tiles' dx, ``dx_by_winograd``): a 2×2 block
  of outputs (a "tile") depends on a 4×4 patch d of each input channel, and Winograd's minimal
  filtering (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016) computes it
  with 16 multiplications per channel and filter, not 36::

    forward   Y = Aᵀ·[Σ_c U_c ⊙ V_c]·A,   V_c = Bᵀ·d_c·B (``_simd.winograd_input_row``),
              U_c = G·g_c·Gᵀ (``winograd_filters``)

  Over an image, value ξ of the 16 is a product M_ξ (filters × tiles) = U_ξ (filters × channels) ·
  V_ξ (channels × tiles): 16 1×1 convolutions run by the direct tiles, then the output transform
  (``_simd.winograd_output_row``, the bias and ReLU added there) writes the tiles' own layout, so
  the pool, its winners and the backward (which keeps the tiles) read it as theirs. dx is the
  same sum over the widened output gradient with the turned filters (``winograd_planes`` serves
  both), written straight into dx's planes. dW is the same algorithm turned around (F(3×3, 2×2),
  ``winograd_weight_gradient``): a 2×2 tile e of the output gradient and the 4×4 patch d under it
  give their share of dW[f, c] as Gᵀ·[U ⊙ V]·G, U = A·e·Aᵀ, V = Bᵀ·d·B (the forward's), so the 16
  sums over all the tiles of a sweep's images are 16 products of filters × tiles by tiles ×
  channels, run by the weight tiles with one tap. The coefficients are 0, ±1 and ±½: float32's
  error stays near the direct tiles'.

A stride-1 convolution with a 2×2 pool at stride 2 above it and its backward by weight tiles runs
the pool in its own training pass (``conv_forward_rows`` with winners, ``schedule.pools_in_training``): the
pool reads each image's wide output where the tiles left it and records its winners as indices
into it; the backward takes the pool's output gradient and sends it to those winners straight in
the widened gradient planes (``conv_backward_rows``' ``pool``). The convolution's own output and
its gradient, four times the pool's, are never written or read.

A parallel loop runs blocks of images (``partition``); each block works in its own slice of the
scratch ``col`` and ``dcol`` (``conv_scratch_size`` values each). dx_n is written by the one
iteration that owns image n. dW and db are summed per block into partials, which are then
added in block order: the same bits whatever the number of threads.
"""

import numpy as np
from numba import njit, prange

from ._blas import AS_IS, TRANSPOSED, gemm
from ._simd import (
    FILTERS_PER_TILE,
    PLUS_BIAS,
    PLUS_BIAS_RELU,
    SUMS,
    TILE_SLACK,
    WEIGHT_TILE_COLUMNS,
    WEIGHT_TILE_FILTERS,
    conv_tile,
    copy_run,
    pool_row_winners,
    run_sum,
    tile_pixels,
    unpool_row,
    weight_tile,
    winograd_gradient_row,
    winograd_input_row,
    winograd_output_row,
)
from .activations import IDENTITY, RELU, activation_backward, activation_forward
from .partition import block_bounds, max_blocks, num_blocks

# how many fewer pixels (a share of the shifted ones) the shifted copies must compute to be taken
# (``uses_shifted``): their copying and the cut of their output cost the rest
SHIFTED_GAIN = 0.1
# below this many input channels or filters, Winograd's transforms cost more than the products they save
WINOGRAD_MIN_CHANNELS = 16
# with fewer than twice that many channels, the most Winograd's tiles may be rounded up to whole vectors
# (a share of them): the products are short per tile, and their rounding, not the transforms, decides
WINOGRAD_ROUNDING = 0.1


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


WEIGHT_TILES_MIN_CHANNELS = 8  # below this many filters, or input channels for dx, the tiles are too thin
WEIGHT_TILES_MIN_COLUMNS = 16  # below this many weights per filter, widening the gradient costs more than it saves


@njit(cache=True)
def uses_weight_tiles(C, FN, FH, FW, stride, with_dx):
    """Whether a convolution's backward runs on the padded image and the widened output gradient
    (weight tiles, and direct tiles for dx), else on unfolded windows: stride 1, at least
    WEIGHT_TILES_MIN_CHANNELS filters (a weight tile's rows) and as many input channels (the dx tiles'
    filters), or, without dx, WEIGHT_TILES_MIN_COLUMNS weights per filter (a one-channel 5×5 first
    layer, not a 3×3 one)."""
    if stride != 1 or FN < WEIGHT_TILES_MIN_CHANNELS:
        return False
    return C >= WEIGHT_TILES_MIN_CHANNELS or (not with_dx and C * FH * FW >= WEIGHT_TILES_MIN_COLUMNS)


@njit(cache=True)
def uses_direct(stride):
    """Whether a convolution's forward runs as direct tiles (``_direct_forward_image``): stride 1;
    else on unfolded windows."""
    return stride == 1


@njit(cache=True)
def _padded_plane(H, W, FW, pad):
    """(Hq, Wp): rows and columns of an image plane zero-padded for a convolution of FW columns at
    stride 1, the image's row y from (y + pad)·Wp + pad on. The zeros between two rows (Wp − W, at
    least pad) serve as the right padding of one and the left of the next, so a row is W + pad
    long (or OW, if that is longer: a wide output row holds an output row), not W + 2·pad; pad
    rows of zeros above the image, pad + 1 below it (the spare row, and more for filters wider
    than a row): every tap's offset read of OH·Wp values stays inside the plane."""
    Wp = max(W + pad, W + 2 * pad - FW + 1)
    return H + 2 * pad + 1 + (FW - 1) // Wp, Wp


@njit(cache=True)
def conv_scratch_size(C, H, W, FN, FH, FW, stride, pad):
    """Values of ``col`` (and of ``dcol``) one block of images needs."""
    OH, OW = output_size(H, FH, stride, pad), output_size(W, FW, stride, pad)
    unfolded = (C * FH * FW + 1) * OH * OW  # the unfolded windows and the row of ones
    if stride != 1:
        return unfolded
    Hq, Wp = _padded_plane(H, W, FW, pad)
    # the padded image (and the tiles' reads past it), then the wide output rounded up to whole tiles,
    # or the shifted copies and their output, or the output and Winograd's V and M (``tiles_output``):
    # the direct forward's; as much as the
    # weight tiles' backward needs (the padded image and the wide output's gradient)
    output = FN * -(-OH * Wp // TILE_SLACK) * TILE_SLACK
    if uses_shifted(H, W, FH, FW, pad, 4) or uses_shifted(H, W, FH, FW, pad, 8):
        output = max(output, shifted_size(C, H, W, FH, FW, pad) + FN * -(-OH * OW // TILE_SLACK) * TILE_SLACK)
    if uses_winograd(C, H, W, FN, FH, FW, stride, pad, 4) or uses_winograd(C, H, W, FN, FH, FW, stride, pad, 8):
        output = max(output, FN * -(-OH * Wp // TILE_SLACK) * TILE_SLACK + winograd_size(C, H, W, FN, pad, 4))
    direct = padded_size(C, H, W, FW, pad) + output
    if not uses_weight_tiles(C, FN, FH, FW, stride, True):  # the backward with dx, at least, on unfolded windows
        direct = max(direct, unfolded)
    if not uses_weight_tiles(C, FN, FH, FW, stride, False):
        return direct
    # the backward's padded images, their output gradient planes and a wide input gradient, for float32's
    # tiles: the most pixels, as TILE_SLACK
    Lg, M = _gradient_planes(C, H, W, FN, FH, FW, pad, 4)
    sweep = sweep_images(H, W, FH, FW, pad, 4)
    dxw = C * M  # the wide input gradient, or Winograd's V and M (``dx_by_winograd``)
    for itemsize in (4, 8):
        if dx_by_winograd(C, H, W, FN, FH, FW, stride, pad, itemsize):
            TY, TX, _ = _winograd_tiles_of(H, W, itemsize)
            tiles = dx_images(H, W, FH, FW, pad, itemsize) * TY * TX
            dxw = max(dxw, _winograd_vm_size(FN, C, tiles, itemsize))
    work = 0  # dW by Winograd's (``winograd_weight_gradient``), after the gradient planes
    for itemsize in (4, 8):
        if dw_by_winograd(C, H, W, FN, FH, FW, stride, pad, itemsize):
            TY, TX, _ = _winograd_tiles_of(OH, OW, itemsize)
            work = max(work, _winograd_dw_size(C, FN, sweep_images(H, W, FH, FW, pad, itemsize) * TY * TX, itemsize))
    backward = max(sweep * padded_size(C, H, W, FW, pad), sweep * FN * Lg + max(dxw, work))
    if uses_shifted(H, W, FH, FW, pad, 4) or uses_shifted(H, W, FH, FW, pad, 8):  # ``gradient_layout``'s
        backward = max(backward, sweep * shifted_size(C, H, W, FH, FW, pad) + padded_size(C, H, W, FW, pad),
                       sweep * FN * shifted_pixels(OH, OW, 4) + max(FN * Lg + dxw, work))  # fmt: skip
    return max(direct, backward)


@njit(cache=True, error_model="numpy")
def _add_bias(src, dst, bias, activation):
    """dst = activation(src + bias), element by element (src may be dst)."""
    if activation == RELU:
        for i in range(dst.shape[0]):
            v = src[i] + bias
            dst[i] = v
            if v < 0:  # not "v > 0 else 0": NaN must stay NaN
                dst[i] = 0
    else:
        for i in range(dst.shape[0]):
            dst[i] = src[i] + bias
        activation_forward(activation, dst)


@njit(cache=True)
def direct_filters(Wmat, C, FH, FW, packed):
    """packed (FN·C·FH·FW, flat) = the filters as the direct tiles read them: the n filters of a
    tile (n = ``_tile_filters``) from f0·K on, (c, fy, fx) by (c, fy, fx), the tile's n innermost."""
    FN, K = Wmat.shape
    f0 = 0
    while f0 < FN:
        n = _tile_filters(FN - f0)
        for f in range(n):
            for j in range(K):
                packed[f0 * K + j * n + f] = Wmat[f0 + f, j]
        f0 += n


@njit(cache=True)
def _tile_filters(left):
    """Filters in the next tile when ``left`` remain: FILTERS_PER_TILE, else 4, 2 or 1."""
    if FILTERS_PER_TILE <= left:
        return FILTERS_PER_TILE
    n = 4
    while n > left:
        n //= 2
    return n


@njit(cache=True)
def padded_size(C, H, W, FW, pad):
    """Values of an image zero-padded for direct tiles: C planes of ``_padded_plane`` and the
    tiles' reads past the last one."""
    Hq, Wp = _padded_plane(H, W, FW, pad)
    return C * Hq * Wp + TILE_SLACK


@njit(cache=True)
def _pad_image(x, C, H, W, pad, Hq, Wp, xp):
    """xp (``padded_size`` values) = image x (C·H·W, flat) with ``pad`` zeros around it: the rows
    copied, ``zero_border`` around them."""
    for c in range(C):
        for y in range(H):
            copy_run(x, (c * H + y) * W, xp, c * Hq * Wp + (y + pad) * Wp + pad, W)
    zero_border(xp, C, H, W, pad, Hq, Wp)


@njit(cache=True)
def zero_border(xp, C, H, W, pad, Hq, Wp):
    """Zeros in every value of the padded planes xp outside the image's rows (C planes of Hq×Wp,
    the image's H rows of W from row and column ``pad`` on), and in the TILE_SLACK values after
    the planes: what a layer that wrote the image's rows there leaves to make it a padded image."""
    for c in range(C):
        top = c * Hq * Wp
        for i in range(top, top + pad * Wp + pad):
            xp[i] = 0
        for y in range(H - 1):  # the right padding of row y and the left of row y + 1
            right = top + (y + pad) * Wp + pad + W
            for i in range(right, right + Wp - W):
                xp[i] = 0
        for i in range(top + (pad + H - 1) * Wp + pad + W, top + Hq * Wp):
            xp[i] = 0
    for i in range(C * Hq * Wp, C * Hq * Wp + TILE_SLACK):
        xp[i] = 0


@njit(cache=True)
def _tiles(src, start, C, plane, packed, out, out_off, out_stride, FN, N, FH, FW, Wp, column, pixels, bias, epilogue):
    """out[out_off + f·out_stride + p] = Σ_{c, fy, fx} w[f, c, fy, fx] · src[c·plane + start + p + fy·Wp + fx·column]
    for f < FN, p < N (a whole number of ``pixels`` // 2: the last tile of each row of tiles may be
    half one), the filters w as ``direct_filters`` packs them; + bias[f] and ReLU as ``epilogue``
    says (``_simd.conv_tile``)."""
    K = C * FH * FW
    f0 = 0
    while f0 < FN:
        n = _tile_filters(FN - f0)
        for p in range(0, N, pixels):
            _tile(src, start + p, packed, f0 * K, out, out_off + f0 * out_stride + p, out_stride, C, plane, FH, FW,
                  Wp, column, n, 2 if p + pixels <= N else 1, bias, f0, epilogue)  # fmt: skip
        f0 += n


@njit(cache=True, inline="always")  # one call per tile is a measurable share of a one-channel tile
def _tile(src, i, packed, w_off, out, o, N, C, plane, FH, FW, Wp, column, filters, vectors, bias, f0, epilogue):
    """One ``_simd.conv_tile`` of ``filters`` filters and ``vectors`` vectors of pixels, as literals:
    one compiled tile per count."""
    if vectors == 2:
        if filters == FILTERS_PER_TILE:
            conv_tile(src, i, packed, w_off, out, o, N, C, plane, FH, FW, Wp, column, FILTERS_PER_TILE, 2, bias, f0,
                      epilogue)  # fmt: skip
        elif filters == 4:
            conv_tile(src, i, packed, w_off, out, o, N, C, plane, FH, FW, Wp, column, 4, 2, bias, f0, epilogue)
        elif filters == 2:
            conv_tile(src, i, packed, w_off, out, o, N, C, plane, FH, FW, Wp, column, 2, 2, bias, f0, epilogue)
        else:
            conv_tile(src, i, packed, w_off, out, o, N, C, plane, FH, FW, Wp, column, 1, 2, bias, f0, epilogue)
    elif filters == FILTERS_PER_TILE:
        conv_tile(src, i, packed, w_off, out, o, N, C, plane, FH, FW, Wp, column, FILTERS_PER_TILE, 1, bias, f0,
                  epilogue)  # fmt: skip
    elif filters == 4:
        conv_tile(src, i, packed, w_off, out, o, N, C, plane, FH, FW, Wp, column, 4, 1, bias, f0, epilogue)
    elif filters == 2:
        conv_tile(src, i, packed, w_off, out, o, N, C, plane, FH, FW, Wp, column, 2, 1, bias, f0, epilogue)
    else:
        conv_tile(src, i, packed, w_off, out, o, N, C, plane, FH, FW, Wp, column, 1, 1, bias, f0, epilogue)


@njit(cache=True)
def wide_pixels(OH, Wp, itemsize):
    """Pixels of each plane of a direct convolution's wide output: its OH rows of Wp, rounded up to
    whole vectors (a row of tiles may end in half a tile)."""
    vector = tile_pixels(itemsize) // 2
    return -(-OH * Wp // vector) * vector


@njit(cache=True, error_model="numpy")
def direct_tiles(xp, packed, b, out, out_off, out_stride, geometry, activation):
    """A stride-1 convolution's wide output from its padded input xp (``padded_size`` values, zero
    around the image): plane f, from out_off + f·out_stride on, ``wide_pixels`` pixels — OH rows
    of Wp, pixel (oy, ox) = conv(x) + b[f] for ox < OW (the rest are sums over the padding: not
    outputs) — with ReLU applied for ``activation`` RELU (another activation is left to the
    caller); packed the filters as ``direct_filters`` lays them out."""
    C, H, W, FH, FW, _, pad = geometry
    Hq, Wp = _padded_plane(H, W, FW, pad)
    pixels = tile_pixels(xp.itemsize)
    N = wide_pixels(output_size(H, FH, 1, pad), Wp, xp.itemsize)
    _tiles(xp, 0, C, Hq * Wp, packed, out, out_off, out_stride, b.shape[0], N, FH, FW, Wp, 1, pixels, b,
           PLUS_BIAS_RELU if activation == RELU else PLUS_BIAS)  # fmt: skip


@njit(cache=True)
def cut_wide(wide, N, Wp, FN, OH, OW, out, out_off, out_plane, out_row):
    """The OW first pixels of each of the OH rows of Wp of each of the FN planes (N apart) of a wide
    output, into out: plane f's row oy from out_off + f·out_plane + oy·out_row on."""
    for f in range(FN):
        for oy in range(OH):
            copy_run(wide, f * N + oy * Wp, out, out_off + f * out_plane + oy * out_row, OW)


@njit(cache=True)
def shifted_pixels(OH, OW, itemsize):
    """Pixels of each plane of a direct convolution's output from ``shifted_tiles``: its OH·OW,
    rounded up to whole vectors."""
    vector = tile_pixels(itemsize) // 2
    return -(-OH * OW // vector) * vector


@njit(cache=True)
def uses_shifted(H, W, FH, FW, pad, itemsize):
    """Whether a stride-1 convolution's direct tiles run on shifted copies of its padded image
    (``shift_image``, ``shifted_tiles``) rather than on the padded image itself: where the wide
    output's Wp − OW extra columns a row, and its rounding up to whole vectors, cost more than
    SHIFTED_GAIN of the pixels (an 8×8 plane padded by 1: 80 wide pixels, 64 shifted)."""
    OH, OW = output_size(H, FH, 1, pad), output_size(W, FW, 1, pad)
    _, Wp = _padded_plane(H, W, FW, pad)
    return wide_pixels(OH, Wp, itemsize) > (1 + SHIFTED_GAIN) * shifted_pixels(OH, OW, itemsize)


@njit(cache=True)
def shifted_size(C, H, W, FH, FW, pad):
    """Values of an image's shifted copies (``shift_image``) and the tiles' reads past them."""
    return C * FW * (H + 2 * pad) * output_size(W, FW, 1, pad) + TILE_SLACK


@njit(cache=True)
def shift_image(xp, C, H, W, FW, pad, xs):
    """xs (``shifted_size`` values) = FW copies of each channel of the padded image xp
    (``padded_size`` values), copy fx its H + 2·pad padded rows of OW columns from column fx on:
    channel c's copy fx from (c·FW + fx)·(H + 2·pad)·OW on. Tap (fy, fx) then reads every output
    pixel's input at one fixed offset, fy·OW in copy fx, with no column between two output rows
    (``shifted_tiles``): the tiles compute OH·OW pixels, not OH·Wp."""
    Hq, Wp = _padded_plane(H, W, FW, pad)
    R, OW = H + 2 * pad, output_size(W, FW, 1, pad)
    for c in range(C):
        for fx in range(FW):
            for r in range(R):
                copy_run(xp, c * Hq * Wp + r * Wp + fx, xs, ((c * FW + fx) * R + r) * OW, OW)
    for i in range(C * FW * R * OW, C * FW * R * OW + TILE_SLACK):
        xs[i] = 0


@njit(cache=True, error_model="numpy")
def shifted_tiles(xs, packed, b, out, out_off, out_stride, geometry, activation):
    """``direct_tiles`` on the shifted copies xs of the image (``shift_image``): plane f, from
    out_off + f·out_stride on, ``shifted_pixels`` pixels — OH rows of OW, conv(x) + b[f] (the
    rest, past OH·OW, not outputs) — with ReLU applied for ``activation`` RELU. The same sums,
    in the same order, as ``direct_tiles``: a wide output of rows OW long."""
    C, H, W, FH, FW, _, pad = geometry
    R, OH, OW = H + 2 * pad, output_size(H, FH, 1, pad), output_size(W, FW, 1, pad)
    N = shifted_pixels(OH, OW, xs.itemsize)
    _tiles(xs, 0, C, FW * R * OW, packed, out, out_off, out_stride, b.shape[0], N, FH, FW, OW, R * OW,
           tile_pixels(xs.itemsize), b, PLUS_BIAS_RELU if activation == RELU else PLUS_BIAS)  # fmt: skip


@njit(cache=True, error_model="numpy")
def tiles_output(xp, packed, b, scratch, geometry, activation):
    """(wide, N, row): a stride-1 convolution's output from its padded image xp by direct tiles,
    in scratch (``conv_scratch_size`` values, less the padded image's): plane f from f·N on, OH
    rows ``row`` apart, the first OW pixels of each the output, conv(x) + b[f], with ReLU applied
    for ``activation`` RELU. By shifted copies (``shifted_tiles``, rows OW long) where
    ``uses_shifted``, else on xp itself (``direct_tiles``, rows Wp long); by Winograd's transform
    where ``uses_winograd`` (``winograd_tiles``, packed then its filters), in the same layout, which
    the pool's winners index and the backward reads (``gradient_layout``)."""
    C, H, W, FH, FW, _, pad = geometry
    OH, OW = output_size(H, FH, 1, pad), output_size(W, FW, 1, pad)
    _, Wp = _padded_plane(H, W, FW, pad)
    shifted = uses_shifted(H, W, FH, FW, pad, xp.itemsize)
    if uses_winograd(C, H, W, b.shape[0], FH, FW, 1, pad, xp.itemsize):
        N, row = (shifted_pixels(OH, OW, xp.itemsize), OW) if shifted else (wide_pixels(OH, Wp, xp.itemsize), Wp)
        winograd_tiles(xp, packed, b, scratch, N, row, scratch[b.shape[0] * N :], geometry, activation)
        return scratch, N, row
    if shifted:
        size = shifted_size(C, H, W, FH, FW, pad)
        xs, wide, N = scratch[:size], scratch[size:], shifted_pixels(OH, OW, xp.itemsize)
        shift_image(xp, C, H, W, FW, pad, xs)
        shifted_tiles(xs, packed, b, wide, 0, N, geometry, activation)
        return wide, N, OW
    N = wide_pixels(OH, Wp, xp.itemsize)
    direct_tiles(xp, packed, b, scratch, 0, N, geometry, activation)
    return scratch, N, Wp


@njit(cache=True)
def uses_winograd(C, H, W, FN, FH, FW, stride, pad, itemsize):
    """Whether a convolution's forward runs by Winograd's F(2×2, 3×3): 3×3 filters at stride 1,
    pad at most 2 (the patches' reads stay within the padded image), at least WINOGRAD_MIN_CHANNELS
    filters and input channels, and where those are fewer than twice that, tiles that need little
    rounding up to whole vectors (16→32 channels on 14×14: 49 tiles computed as 64, no faster than
    the direct tiles; 16→16 on 28×28: 196 as 208, faster)."""
    if FH != 3 or FW != 3 or stride != 1 or pad > 2 or C < WINOGRAD_MIN_CHANNELS or FN < WINOGRAD_MIN_CHANNELS:
        return False
    TY, TX, Tp = _winograd_tiles_of(output_size(H, 3, 1, pad), output_size(W, 3, 1, pad), itemsize)
    return C >= 2 * WINOGRAD_MIN_CHANNELS or Tp <= (1 + WINOGRAD_ROUNDING) * TY * TX


@njit(cache=True)
def _winograd_tiles_of(OH, OW, itemsize):
    """(TY, TX, Tp): rows and columns of the 2×2 tiles of an OH × OW output, and their number TY·TX
    rounded up to whole vectors."""
    TY, TX = (OH + 1) // 2, (OW + 1) // 2
    vector = tile_pixels(itemsize) // 2
    return TY, TX, -(-TY * TX // vector) * vector


@njit(cache=True)
def winograd_size(C, H, W, FN, pad, itemsize):
    """Values of scratch ``winograd_tiles`` needs (its V and M) for a 3×3 convolution of C channels
    on H×W, FN filters, padded by ``pad``."""
    TY, TX, _ = _winograd_tiles_of(output_size(H, 3, 1, pad), output_size(W, 3, 1, pad), itemsize)
    return _winograd_vm_size(C, FN, TY * TX, itemsize)


@njit(cache=True)
def _winograd_vm_size(C, FN, tiles, itemsize):
    """Values of V and M for ``tiles`` tiles (of one or more images) of C channels and FN filters."""
    _, v_stride, m_stride = _winograd_layout(C, FN, tiles, itemsize)
    return 16 * (v_stride + m_stride)


@njit(cache=True)
def _winograd_layout(C, FN, tiles, itemsize):
    """(Tp, v_stride, m_stride): ``tiles`` tiles rounded up to whole vectors, and the values from one
    ξ's planes to the next in V (C planes of Tp tiles) and in M (FN planes), a vector apart."""
    vector = tile_pixels(itemsize) // 2
    Tp = -(-tiles // vector) * vector
    return Tp, C * Tp + vector, FN * Tp + vector


@njit(cache=True)
def winograd_filters(Wmat, C, packed, turned):
    """packed (16·FN·C values) = U_ξ = G·g·Gᵀ of every filter g, computed in float64: for ξ < 16,
    from ξ·FN·C on, U_ξ (filters × channels) as ``conv.direct_filters`` packs the filters of a 1×1
    convolution (a tile's n filters innermost). G = [[1, 0, 0], [½, ½, ½], [½, −½, ½], [0, 0, 1]].
    The filters are Wmat's (FN, C·9), or with ``turned`` those of the input gradient (C filters of FN
    channels, w'[c, f] = w[f, c] turned by 180°, as ``flipped_filters``). One thread; the training
    passes run ``winograd_filters_parallel``, once a call."""
    _winograd_filter_range(Wmat, C, packed, turned, 0, C if turned else Wmat.shape[0])


@njit(parallel=True, cache=True)
def winograd_filters_parallel(Wmat, C, packed, turned):
    """``winograd_filters`` by whole tiles of filters on every core (each filter's U is computed
    alone: the same values whatever the split)."""
    filters = C if turned else Wmat.shape[0]
    tiles = -(-filters // FILTERS_PER_TILE)
    nb = min(max_blocks(), tiles)
    for k in prange(nb):
        t0, t1 = block_bounds(tiles, nb, k)
        _winograd_filter_range(Wmat, C, packed, turned, t0 * FILTERS_PER_TILE, min(t1 * FILTERS_PER_TILE, filters))


# Channels whose U go through a staging buffer at a time: the 16 blocks of packed lie FN·C values
# apart (16 KB for 64 → 64), so writing each filter's 16 values straight there sends 16 streams to
# one set of the L1 cache; staged, each block gets runs of STAGED_CHANNELS·n values at once.
STAGED_CHANNELS = 8


@njit(cache=True)
def _winograd_filter_range(Wmat, C, packed, turned, f_start, f_stop):
    """``winograd_filters`` for the tiles of filters that start in [f_start, f_stop): f_start a tile's
    first filter, f_stop one too or the last filter's end."""
    FN = Wmat.shape[0]
    filters, channels = (C, FN) if turned else (FN, C)
    u = np.empty(16)  # one filter's U
    stage = np.empty(16 * STAGED_CHANNELS * FILTERS_PER_TILE)  # block ξ's values from ξ·(its size) on
    run = STAGED_CHANNELS * FILTERS_PER_TILE
    f0 = f_start
    while f0 < f_stop:
        n = _tile_filters(filters - f0)
        for c0 in range(0, channels, STAGED_CHANNELS):
            c1 = min(c0 + STAGED_CHANNELS, channels)
            for c in range(c0, c1):
                for f in range(n):
                    for j in range(3):  # G·g, column j (row a of it in u[4a:4a + 3]), then (G·g)·Gᵀ row by row
                        if turned:  # g[r, j] = w[c, f0 + f, 2 − r, 2 − j]
                            g0 = np.float64(Wmat[c, (f0 + f) * 9 + 8 - j])
                            g1 = np.float64(Wmat[c, (f0 + f) * 9 + 5 - j])
                            g2 = np.float64(Wmat[c, (f0 + f) * 9 + 2 - j])
                        else:
                            g0 = np.float64(Wmat[f0 + f, c * 9 + j])
                            g1 = np.float64(Wmat[f0 + f, c * 9 + 3 + j])
                            g2 = np.float64(Wmat[f0 + f, c * 9 + 6 + j])
                        u[j], u[4 + j], u[8 + j], u[12 + j] = g0, 0.5 * (g0 + g1 + g2), 0.5 * (g0 - g1 + g2), g2
                    for a in range(4):
                        r0, r1, r2 = u[4 * a], u[4 * a + 1], u[4 * a + 2]
                        u[4 * a + 1], u[4 * a + 2], u[4 * a + 3] = 0.5 * (r0 + r1 + r2), 0.5 * (r0 - r1 + r2), r2
                    for xi in range(16):
                        stage[xi * run + (c - c0) * n + f] = u[xi]
            at = f0 * channels + c0 * n  # where these channels' values start in each block
            for xi in range(16):
                block = packed[xi * filters * channels + at : xi * filters * channels + at + (c1 - c0) * n]
                for i in range(block.shape[0]):
                    block[i] = stage[xi * run + i]
        f0 += n


@njit(cache=True)
def taps_size(C, FN, FH, FW):
    """Values of the forward's packed filters (``conv_forward_rows``' taps): the filters' own number,
    or Winograd's 16 for each 3×3 filter (``winograd_filters``)."""
    return FN * C * (16 if FH == 3 and FW == 3 else FH * FW)


@njit(cache=True, error_model="numpy")
def winograd_tiles(xp, packed, b, out, N, row, scratch, geometry, activation):
    """A 3×3 stride-1 convolution's output from its padded image xp (``padded_size`` values) by
    Winograd's F(2×2, 3×3): plane f from out[f·N] on, OH rows ``row`` (≥ OW) apart, conv(x) + b[f],
    ReLU applied for ``activation`` RELU; nothing else of out written. packed: the transformed
    filters (``winograd_filters``); scratch: ``winograd_size`` values for V and M."""
    C, H, W, _, _, _, pad = geometry
    Hq, Wp = _padded_plane(H, W, 3, pad)
    epilogue = PLUS_BIAS_RELU if activation == RELU else PLUS_BIAS
    winograd_planes(xp, (0, Hq * Wp, Wp, 0), C, packed, b, b.shape[0], out, (0, N, row, 0), output_size(H, 3, 1, pad),
                    output_size(W, 3, 1, pad), 1, scratch, epilogue)  # fmt: skip


@njit(cache=True, error_model="numpy")
def winograd_planes(src, src_layout, C, packed, b, FN, out, out_layout, OH, OW, images, scratch, epilogue):
    """For each of ``images`` images i, out[o0 + i·o_image + f·o_plane + y·o_row + x] = Σ_c Σ_(ry, rx)
    g_fc[ry, rx] · src[s0 + i·s_image + c·s_plane + (y + ry)·s_row + x + rx] (+ b[f], ReLU'd, for
    ``epilogue`` PLUS_BIAS, PLUS_BIAS_RELU; SUMS: b not read) for f < FN, y < OH, x < OW, by
    Winograd's F(2×2, 3×3), the tiles of all the images in the same products (filling their vectors
    where one image's would not); nothing else of out written. src_layout = (s0, s_plane, s_row,
    s_image), out_layout = (o0, o_plane, o_row, o_image). The src read: C planes, rows 0 to
    2·⌈OH/2⌉ + 1 and columns 0 to 2·⌈OW/2⌉ + 1 of each (finite: past the outputs', they reach only
    the outputs not written). packed: the filters g transformed (``winograd_filters``); scratch: V
    (16 × C tiles) and M (16 × FN tiles), ``_winograd_vm_size`` values."""
    s0, s_plane, s_row, s_image = src_layout
    o0, o_plane, o_row, o_image = out_layout
    TY, TX, _ = _winograd_tiles_of(OH, OW, src.itemsize)
    T = TY * TX  # an image's tiles; image i's from i·T on
    Tp, v_stride, m_stride = _winograd_layout(C, FN, images * T, src.itemsize)
    V, M = scratch[: 16 * v_stride], scratch[16 * v_stride : 16 * (v_stride + m_stride)]
    winograd_inputs(src, src_layout, C, OH, OW, images, V, v_stride, Tp, 0)
    _zero_past(V, v_stride, C, Tp, images * T)
    pixels = tile_pixels(src.itemsize)
    for xi in range(16):
        _tiles(V, xi * v_stride, C, Tp, packed[xi * FN * C :], M, xi * m_stride, Tp, FN, Tp, 1, 1, 0, 0, pixels, b,
               SUMS)  # fmt: skip
    for i in range(images):
        for f in range(FN):
            for ty in range(TY):  # an odd OH: the last row of tiles gives one row of outputs
                winograd_output_row(M, f * Tp + i * T + ty * TX, m_stride, TX, b, f, out,
                                    o0 + i * o_image + f * o_plane + 2 * ty * o_row, o_row, OW, min(2, OH - 2 * ty),
                                    epilogue)  # fmt: skip


@njit(cache=True)
def winograd_inputs(src, src_layout, C, OH, OW, images, V, v_stride, Tp, t0):
    """V[ξ·v_stride + c·Tp + t0 + i·T + t] = (Bᵀ·d·B)[ξ // 4, ξ % 4] of tile t's 4×4 patch d of channel c
    of image i (< ``images``), for the 2×2 tiles (T of them, rows first) of an OH × OW output:
    Winograd's input transform (``_simd.winograd_input_row``) of the patches of src read as
    ``winograd_planes`` reads them (src_layout = (s0, s_plane, s_row, s_image))."""
    s0, s_plane, s_row, s_image = src_layout
    TY, TX, _ = _winograd_tiles_of(OH, OW, src.itemsize)
    for c in range(C):
        for i in range(images):
            for ty in range(TY):  # tile (ty, tx)'s patch: rows 2ty to 2ty + 3, columns 2tx to 2tx + 3
                winograd_input_row(src, s0 + i * s_image + c * s_plane + 2 * ty * s_row, s_row, V,
                                   c * Tp + t0 + (i * TY + ty) * TX, v_stride, TX)  # fmt: skip


@njit(cache=True)
def _zero_past(V, v_stride, planes, Tp, used):
    """Zeros after the first ``used`` tiles of each of the 16 × ``planes`` planes of Tp tiles: the
    products read whole vectors, so no stale value (a subnormal, a NaN) may lie past the tiles."""
    for xi in range(16):
        for c in range(planes):
            for t in range(used, Tp):
                V[xi * v_stride + c * Tp + t] = 0


@njit(cache=True)
def dw_by_winograd(C, H, W, FN, FH, FW, stride, pad, itemsize):
    """Whether the weight tiles' weight gradient (``_weight_tile_backward_images``) runs by
    Winograd's transform (``winograd_weight_gradient``): 3×3 filters at stride 1 and pad at most 2
    (the forward's patches), at least WINOGRAD_MIN_CHANNELS input channels and filters: each of the
    16 products is a filters × channels tile of sums."""
    return FH == 3 and FW == 3 and stride == 1 and pad <= 2 and min(C, FN) >= WINOGRAD_MIN_CHANNELS


@njit(cache=True)
def _winograd_dw_size(C, FN, tiles, itemsize):
    """Values ``winograd_weight_gradient``'s work needs for ``tiles`` tiles: V (as ``winograd_planes``'),
    U in the place of its M, and the 16 products (FN × C each)."""
    return _winograd_vm_size(C, FN, tiles, itemsize) + 16 * FN * C


@njit(cache=True)
def winograd_weight_gradient(g, g_layout, FN, C, OH, OW, images, work, part, first):
    """part[(t·FN + f)·C + c] (+)= dW[f, c, t // 3, t % 3] (= when ``first``) of a 3×3 stride-1
    convolution by Winograd's F(2×2, 3×3) turned around (F(3×3, 2×2)): for each 2×2 tile e of the
    output gradient of filter f and the 4×4 input patch d of channel c under it,
    dW[f, c] = Gᵀ·[Σ_tiles U ⊙ V]·G, U = A·e·Aᵀ (``_simd.winograd_gradient_row``), V = Bᵀ·d·B (the
    forward's; G, A, B as there): the 16 sums over the tiles of all the images are 16 products of
    filters × tiles by tiles × channels (``_weight_tiles`` with one tap), 2.25 times fewer
    multiplications than dW's 9 taps. g: the output gradients, filter f of image i from
    g0 + i·g_image + f·g_plane on, rows g_row apart (g_layout = (g0, g_plane, g_row, g_image));
    work: ``_winograd_dw_size`` values, its V (C planes of Tp tiles per ξ, image i's from i·T on:
    ``winograd_inputs``) already written by the caller."""
    g0, g_plane, g_row, g_image = g_layout
    TY, TX, _ = _winograd_tiles_of(OH, OW, g.itemsize)
    T = TY * TX
    Tp, v_stride, u_stride = _winograd_layout(C, FN, images * T, g.itemsize)
    vector = tile_pixels(g.itemsize) // 2
    V, U = work[: 16 * v_stride], work[16 * v_stride : 16 * (v_stride + u_stride)]
    M = work[16 * (v_stride + u_stride) : 16 * (v_stride + u_stride) + 16 * FN * C]
    for i in range(images):
        for f in range(FN):
            for ty in range(TY):  # an odd OH: the last row of tiles has one row of gradients
                top = g0 + i * g_image + f * g_plane + 2 * ty * g_row
                winograd_gradient_row(g, top, g_row, OW, min(2, OH - 2 * ty), U, f * Tp + (i * TY + ty) * TX, u_stride,
                                      TX)  # fmt: skip
    _zero_past(V, v_stride, C, Tp, images * T)
    _zero_past(U, u_stride, FN, Tp, images * T)
    for xi in range(16):
        _weight_tiles(U, xi * u_stride, Tp, FN, V[xi * v_stride :], C, Tp, 1, 1, 0, 0, Tp // vector, 1, 0, 0,
                      M[xi * FN * C : (xi + 1) * FN * C], True)  # fmt: skip
    # dW's taps = Gᵀ·M·G for each filter and channel j = f·C + c, whose 16 sums M[ξ] lie n apart, as do
    # its 9 taps in part (scalar code, the compiler cannot rule out that M and part overlap: once a sweep,
    # small beside the products' sums over every tile)
    n = FN * C
    if first:
        part[: 9 * n] = 0
    for j in range(n):
        t00, t10, t20 = _g_transposed(M[j], M[4 * n + j], M[8 * n + j], M[12 * n + j])  # Gᵀ·M, column by column
        t01, t11, t21 = _g_transposed(M[n + j], M[5 * n + j], M[9 * n + j], M[13 * n + j])
        t02, t12, t22 = _g_transposed(M[2 * n + j], M[6 * n + j], M[10 * n + j], M[14 * n + j])
        t03, t13, t23 = _g_transposed(M[3 * n + j], M[7 * n + j], M[11 * n + j], M[15 * n + j])
        _add_g_row(part, 0, n, j, t00, t01, t02, t03)  # row k of (Gᵀ·M)·G: taps 3k to 3k + 2
        _add_g_row(part, 3 * n, n, j, t10, t11, t12, t13)
        _add_g_row(part, 6 * n, n, j, t20, t21, t22, t23)


@njit(cache=True, inline="always")
def _add_g_row(part, at, n, j, r0, r1, r2, r3):
    """part[at + j], part[at + n + j], part[at + 2n + j] += (r0, r1, r2, r3)·G."""
    w0, w1, w2 = _g_transposed(r0, r1, r2, r3)
    part[at + j] += w0
    part[at + n + j] += w1
    part[at + 2 * n + j] += w2


@njit(cache=True, inline="always")
def _g_transposed(m0, m1, m2, m3):
    """Gᵀ·(m0, m1, m2, m3) of F(2×2, 3×3), Gᵀ = [[1, ½, ½, 0], [0, ½, −½, 0], [0, ½, ½, 1]]."""
    half = 0.5 * (m1 + m2)
    return m0 + half, 0.5 * (m1 - m2), half + m3


@njit(cache=True, error_model="numpy")
def _direct_forward_image(x, packed, b, out, winners, scratch, geometry, activation):
    """One image by direct tiles (stride 1): out (FN·OH·OW, flat) = activation(conv(x) + b); packed
    the filters as ``direct_filters`` lays them out, scratch ``conv_scratch_size`` values. The
    image is padded into scratch, the tiles write their output after it (``tiles_output``: the
    bias added and ReLU applied in registers), which is then cut to OW columns (another
    activation applied there). With ``winners`` (not empty; ``activation`` ReLU or none) the
    tiles' output is pooled by 2×2 windows at stride 2 where the tiles left it instead: out
    (FN·(OH // 2)·(OW // 2)) the pool's output, winners (as many) where each came from, as an
    index into the tiles' output (plane f from f·N on, rows ``row`` apart: ``tiles_output``'s
    layout, wide rows or the shifted copies' rows of OW): what ``_weight_tile_backward_images``
    sends the pool's gradient back to. The convolution's own output is then never written."""
    C, H, W, FH, FW, _, pad = geometry
    OH, OW = output_size(H, FH, 1, pad), output_size(W, FW, 1, pad)
    FN = b.shape[0]
    Hq, Wp = _padded_plane(H, W, FW, pad)
    size = padded_size(C, H, W, FW, pad)
    xp, rest = scratch[:size], scratch[size:]
    _pad_image(x, C, H, W, pad, Hq, Wp, xp)
    wide, N, row = tiles_output(xp, packed, b, rest, geometry, activation)
    if winners.shape[0] > 0:
        OHp, OWp = OH // 2, OW // 2
        for f in range(FN):
            for oy in range(OHp):
                top = f * N + 2 * oy * row
                pool_row_winners(wide, top, top + row, out, winners, (f * OHp + oy) * OWp, OWp)
        return
    cut_wide(wide, N, row, FN, OH, OW, out, 0, OH * OW, OW)
    if activation != RELU and activation != IDENTITY:
        activation_forward(activation, out)


@njit(cache=True)
def _gradient_planes(C, H, W, FN, FH, FW, pad, itemsize):
    """(Lg, M) of the backward by weight tiles: each filter's output gradient is held in a plane
    of Lg values, the wide gradient starting at S = (FH − 1)·Wp + FW − 1 (zeros before and after it),
    and the input gradient is computed for M wide pixels from the padded image's first unpadded row."""
    Hq, Wp = _padded_plane(H, W, FW, pad)
    M = wide_pixels(H, Wp, itemsize)  # whole vectors: the last tile of a row of tiles may be half one
    OH = output_size(H, FH, 1, pad)
    # the weight tiles read whole vectors, past the wide gradient's end
    Lg = max(pad * Wp + M, wide_pixels(OH, Wp, itemsize)) + (FH - 1) * Wp + FW - 1
    if FH == 3 and FW == 3:  # dx by Winograd (``dx_by_winograd``): its 4×4 patches from the row and column pad on
        Lg = max(Lg, pad * Wp + pad + (2 * ((H + 1) // 2) + 2) * Wp + 2 * ((W + 1) // 2) + 2)
    return Lg, M


@njit(cache=True)
def dx_by_winograd(C, H, W, FN, FH, FW, stride, pad, itemsize):
    """Whether the weight tiles' input gradient (``_weight_tile_backward_images``) runs by Winograd's
    transform: a 3×3 convolution of the FN output gradient planes into C planes of H × W, where the
    forward's rule (``uses_winograd``) takes that convolution and the tiles of the images it takes
    together (``dx_images``) need little rounding up to whole vectors, whatever the channels (one
    14×14 image's 49 tiles as 64: no faster than the direct tiles with 32 or 64 channels, slower
    with 16 filters; five images' 245 as 256 are)."""
    if not uses_winograd(FN, H, W, C, FH, FW, stride, 1, itemsize):
        return False
    TY, TX, _ = _winograd_tiles_of(H, W, itemsize)
    vector = tile_pixels(itemsize) // 2
    tiles = dx_images(H, W, FH, FW, pad, itemsize) * TY * TX
    return -(-tiles // vector) * vector <= (1 + WINOGRAD_ROUNDING) * tiles


@njit(cache=True)
def dx_images(H, W, FH, FW, pad, itemsize):
    """Images whose dx by Winograd's transform runs in one call: a sweep of the weight tiles
    (``sweep_images``), whose gradient planes lie one after the other; one where each image's is
    widened from shifted rows into the same planes first (``uses_shifted``)."""
    return 1 if uses_shifted(H, W, FH, FW, pad, itemsize) else sweep_images(H, W, FH, FW, pad, itemsize)


@njit(cache=True)
def flipped_filters(Wmat, C, FH, FW, packed):
    """packed = the filters of the input gradient as ``direct_filters`` lays them out: for each
    input channel c, the FN filters' (c) planes turned by 180°: w'[c, f, ry, rx] = w[f, c, FH − 1 − ry,
    FW − 1 − rx]."""
    FN, K = Wmat.shape
    T = FH * FW
    c0 = 0
    while c0 < C:
        n = _tile_filters(C - c0)
        for c in range(n):
            for f in range(FN):
                for t in range(T):
                    packed[c0 * FN * T + (f * T + t) * n + c] = Wmat[f, (c0 + c) * T + T - 1 - t]
        c0 += n


SWEEP_VECTORS = 64  # vectors of pixels a weight tile's sums run over, at least: images enough to make them


@njit(cache=True)
def sweep_images(H, W, FH, FW, pad, itemsize):
    """Images whose gradients the weight tiles take in one sweep: enough that
    each tile's sums run over SWEEP_VECTORS vectors of pixels, so that adding up its vectors' lanes
    at the end is a small part of its work (float32, 3×3, pad 1: 2 for a 28×28 image, 16 for 7×7)."""
    vectors = wide_pixels(output_size(H, FH, 1, pad), _padded_plane(H, W, FW, pad)[1], itemsize) // (
        tile_pixels(itemsize) // 2
    )
    return -(-SWEEP_VECTORS // vectors)


@njit(cache=True)
def gradient_layout(geometry, itemsize):
    """(N, row, S, L, xsize, plane, column) of the backward by weight tiles, as the forward's
    ``tiles_output`` laid out the output: its gradient planes of L values, N pixels from S on, rows
    ``row`` apart (zeros around them), and the images the weight tiles read, xsize values each,
    channel planes ``plane`` apart, tap (fy, fx) at fy·row + fx·column. Wide rows on the padded
    image: S = (FH − 1)·Wp + FW − 1, L = ``_gradient_planes``' Lg (the zeros around the rows are the
    input gradient's padding); on its shifted copies (``uses_shifted``): rows of OW from 0 on."""
    C, H, W, FH, FW, _, pad = geometry
    OH, OW = output_size(H, FH, 1, pad), output_size(W, FW, 1, pad)
    Hq, Wp = _padded_plane(H, W, FW, pad)
    if uses_shifted(H, W, FH, FW, pad, itemsize):
        N, R = shifted_pixels(OH, OW, itemsize), H + 2 * pad
        return N, OW, 0, N, shifted_size(C, H, W, FH, FW, pad), FW * R * OW, R * OW
    Lg, _ = _gradient_planes(C, H, W, 0, FH, FW, pad, itemsize)
    return wide_pixels(OH, Wp, itemsize), Wp, (FH - 1) * Wp + FW - 1, Lg, padded_size(C, H, W, FW, pad), Hq * Wp, 1


@njit(cache=True)
def _weight_tile_backward_images(x, n0, n1, taps, dout, scratch, dscratch, part, first, geometry, dx, below, pool):
    """Images n0 to n1 − 1's share of the gradients by weight tiles (at most ``sweep_images``):
    part ((FH·FW, FN, C) tap by tap, then FN bias entries) (+)= their dW and db (= when ``first``);
    with dx (rows), dx[n] = the input gradient ⊙ act'(below), by direct tiles over the output
    gradient with the filters turned by 180° (``flipped_filters``, in ``taps``). x, dout, dx: a
    row per image. ``pool`` = (winners, pooled, act): for a convolution pooled in its forward
    (``_direct_forward_image`` with winners), dout is the pool's output gradient: times
    act'(pooled) (the winner's own value: the one input of its window with a gradient; in place),
    it goes straight to the winners in the gradient planes (``_simd.unpool_row``).

    Each image is padded into ``scratch`` (and copied into its shifted copies, ``uses_shifted``)
    and its output gradient laid out as the forward's output (``gradient_layout``), in planes of
    L values per filter in ``dscratch``, one image after the other; the weight tiles then sum over
    all of them (``_weight_tiles``), or where ``dw_by_winograd`` takes the layer, each image's padded
    patches are transformed as it is padded and ``winograd_weight_gradient`` sums the tiles. Padded
    input pixel q's gradient is Σ_f Σ_(ry, rx) w'[c, f, ry, rx] · g_f[q + ry·Wp + rx] over wide
    planes g (``_gradient_planes``; copied from the shifted rows where those were used): the
    forward's direct sum, read from g."""
    C, H, W, FH, FW, _, pad = geometry
    winners, pooled, act = pool
    OH, OW = output_size(H, FH, 1, pad), output_size(W, FW, 1, pad)
    OHd, OWd = (OH // 2, OW // 2) if winners.shape[0] > 0 else (OH, OW)  # dout's planes
    FN = dout.shape[1] // (OHd * OWd)
    Hq, Wp = _padded_plane(H, W, FW, pad)
    N, row, S, L, xsize, plane, column = gradient_layout(geometry, x.itemsize)
    shifted = column != 1
    K = C * FH * FW
    gsize = FN * L
    images = n1 - n0
    # dW by Winograd: each image's patches transformed as it is padded (no image kept for weight tiles),
    # into the work after the gradient planes (which dx uses after it)
    dw_winograd = dw_by_winograd(C, H, W, FN, FH, FW, 1, pad, x.itemsize)
    work = dscratch[images * gsize :]
    TY, TX, _ = _winograd_tiles_of(OH, OW, x.itemsize)
    Tp, v_stride, _ = _winograd_layout(C, FN, images * TY * TX, x.itemsize)
    # the rows written below cover a shifted plane's first OH·OW values (the pool's windows tile the
    # output: ``records`` refuses a pool that does not): zeros only after them
    for i in range(images):
        if dw_winograd:
            xp = scratch[: padded_size(C, H, W, FW, pad)]
            _pad_image(x[n0 + i], C, H, W, pad, Hq, Wp, xp)
            winograd_inputs(xp, (0, Hq * Wp, Wp, 0), C, OH, OW, 1, work, v_stride, Tp, i * TY * TX)
        elif shifted:
            xp = scratch[images * xsize : images * xsize + padded_size(C, H, W, FW, pad)]
            _pad_image(x[n0 + i], C, H, W, pad, Hq, Wp, xp)
            shift_image(xp, C, H, W, FW, pad, scratch[i * xsize : (i + 1) * xsize])
        else:
            _pad_image(x[n0 + i], C, H, W, pad, Hq, Wp, scratch[i * xsize : (i + 1) * xsize])
        g, grad = dscratch[i * gsize : (i + 1) * gsize], dout[n0 + i]
        if shifted:
            for f in range(FN):
                for j in range(f * L + OH * OW, (f + 1) * L):
                    g[j] = 0
        else:  # zeros first (a memset), then dout's rows: writing each value once, the zeros between
            for j in range(gsize):  # the rows, measured slower
                g[j] = 0
        if winners.shape[0] > 0:
            activation_backward(act, grad, pooled[n0 + i])
        for f in range(FN):
            for oy in range(OHd):
                if winners.shape[0] > 0:  # the winners index the forward's output: plane f from f·N on
                    top = f * N + 2 * oy * row
                    unpool_row(grad, winners[n0 + i], (f * OHd + oy) * OWd, OWd, g, top, top + row, f * (L - N) + S)
                else:
                    copy_run(grad, (f * OH + oy) * OW, g, f * L + S + oy * row, OW)
            total = run_sum(grad, f * OHd * OWd, OHd * OWd)
            part[FN * K + f] = total if first and i == 0 else part[FN * K + f] + total
    if dw_winograd:
        winograd_weight_gradient(dscratch, (S, L, row, gsize), FN, C, OH, OW, images, work, part, first)
    else:
        vectors = N // (tile_pixels(x.itemsize) // 2)
        _weight_tiles(dscratch, S, L, FN, scratch, C, plane, FH, FW, row, column, vectors, images, gsize, xsize, part,
                      first)  # fmt: skip
    if dx.shape[0] == 0:
        return
    Lg, M = _gradient_planes(C, H, W, FN, FH, FW, pad, x.itemsize)
    Sw = (FH - 1) * Wp + FW - 1
    wide = dscratch[images * gsize : images * gsize + (FN * Lg if shifted else 0)]
    dxw = dscratch[images * gsize + wide.shape[0] :]  # the wide input gradient, or Winograd's V and M
    winograd = dx_by_winograd(C, H, W, FN, FH, FW, 1, pad, x.itemsize)
    if winograd and not shifted:  # the sweep's images at once: their gradient planes lie one after the other
        dx_rows = dx.reshape(dx.size)
        winograd_planes(dscratch, (pad * Wp + pad, Lg, Wp, gsize), FN, taps, dout[n0], C, dx_rows,
                        (n0 * C * H * W, H * W, W, C * H * W), H, W, images, dxw, SUMS)  # fmt: skip
        for n in range(n0, n1):
            activation_backward(below, dx[n], x[n])
        return
    for i in range(images):
        g, n = dscratch[i * gsize : (i + 1) * gsize], n0 + i
        if shifted:  # the planes widened: rows of Wp, the zeros around them the input gradient's padding
            for j in range(FN * Lg):
                wide[j] = 0
            for f in range(FN):
                for oy in range(OH):
                    copy_run(g, f * L + oy * OW, wide, f * Lg + Sw + oy * Wp, OW)
            g = wide
        if winograd:  # on shifted copies, an image at a time: straight into dx's planes, from g's row and column pad on
            winograd_planes(g, (pad * Wp + pad, Lg, Wp, 0), FN, taps, dout[n], C, dx[n], (0, H * W, W, 0), H, W, 1,
                            dxw, SUMS)  # fmt: skip
            activation_backward(below, dx[n], x[n])
            continue
        _tiles(g, pad * Wp, FN, Lg, taps, dxw, 0, M, C, M, FH, FW, Wp, 1, tile_pixels(x.itemsize), dout[n], SUMS)
        for c in range(C):
            for y in range(H):
                src = dxw[c * M + y * Wp + pad : c * M + y * Wp + pad + W]
                dst, inp = dx[n, (c * H + y) * W : (c * H + y + 1) * W], x[n, (c * H + y) * W : (c * H + y + 1) * W]
                for j in range(W):
                    dst[j] = src[j]
                activation_backward(below, dst, inp)


@njit(cache=True)
def _weight_tiles(g, g_off, Lg, FN, xp, C, plane, FH, FW, Wp, column, vectors, images, g_image, x_image, part, first):
    """part[(t·FN + f)·C + c] (+)= Σ_i Σ_p g[i·g_image + f·Lg + g_off + p] · xp[i·x_image + c·plane
    + (t // FW)·Wp + (t % FW)·column + p] over ``images`` images and ``vectors`` vectors of pixels p
    (= when ``first``): a stride-1 convolution's weight gradient, tap by tap, from the output
    gradients g and the padded inputs xp (or their shifted copies: ``gradient_layout``), a
    ``_simd.weight_tile`` at a time: 4 filters × 6 columns, or on AVX-512 5 × 5 where that computes
    fewer sums past dW's edges (a tile's rows and columns past them are computed, not stored): 30
    filters × 25 columns (SimpleConvNet's 5×5) fill 5 × 5 tiles, not 4 × 6."""
    K = C * FH * FW
    if WEIGHT_TILE_FILTERS == 4 and _tiled(FN, 5) * _tiled(K, 5) < _tiled(FN, 4) * _tiled(K, 6):
        for f0 in range(0, FN, 5):
            for j0 in range(0, K, 5):
                weight_tile(g, g_off, Lg, FN, f0, xp, 0, C, plane, FH, FW, Wp, column, j0, vectors, images, g_image,
                            x_image, part, first, 5, 5)  # fmt: skip
        return
    nf, nj = WEIGHT_TILE_FILTERS, WEIGHT_TILE_COLUMNS
    for f0 in range(0, FN, nf):
        for j0 in range(0, K, nj):
            weight_tile(g, g_off, Lg, FN, f0, xp, 0, C, plane, FH, FW, Wp, column, j0, vectors, images, g_image,
                        x_image, part, first, nf, nj)  # fmt: skip


@njit(cache=True)
def _tiled(n, tile):
    """n rounded up to whole tiles."""
    return -(-n // tile) * tile


@njit(cache=True)
def _unfold_image(x, geometry, col):
    """col[(c·FH + fy)·FW + fx, oy·OW + ox] = x[c, oy·stride − pad + fy, ox·stride − pad + fx]
    (0 outside the image), for one image x (C·H·W values, flat); then one more row of ones, so
    that the weight-gradient product also sums dout over the pixels: the bias gradient."""
    C, H, W, FH, FW, stride, pad = geometry
    OH, OW = output_size(H, FH, stride, pad), output_size(W, FW, stride, pad)
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
def _fold_image(dcol, geometry, dx, x, below):
    """dx (C·H·W, flat) = col2im(dcol): each window's entries added back at the pixels it covers;
    times act'(below) read from x (the layer below's output, this layer's input)."""
    C, H, W, FH, FW, stride, pad = geometry
    OH, OW = output_size(H, FH, stride, pad), output_size(W, FW, stride, pad)
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
    activation_backward(below, dx[: C * H * W], x[: C * H * W])


@njit(cache=True, error_model="numpy")
def _conv_forward_image(x, Wmat, b, out, col, geometry, activation, one_zero):
    """One image: out (FN·P, flat) = activation(Wmat·col + b); x its C·H·W inputs (flat)."""
    FN, K = Wmat.shape
    P = out.shape[0] // FN
    _unfold_image(x, geometry, col)
    gemm(AS_IS, AS_IS, FN, P, K, one_zero, Wmat, K, col, P, out, P)
    for f in range(FN):
        row = out[f * P : (f + 1) * P]
        _add_bias(row, row, b[f], activation)


@njit(cache=True)
def _conv_backward_image(x, Wmat, dout, col, dcol, part, first, geometry, dx, below, alphas):
    """One image's share of the gradients: part (FN, K + 1) (+)= dout·[col; 1]ᵀ (= when ``first``):
    dW in its first K columns, db in the last; with dx (len > 0), dx = col2im(Wᵀ·dout) ⊙ act'(below)."""
    FN, K = Wmat.shape
    P = dout.shape[0] // FN
    one_zero, one_one = alphas
    _unfold_image(x, geometry, col)
    gemm(AS_IS, TRANSPOSED, FN, K + 1, P, one_zero if first else one_one, dout, P, col, P, part, K + 1)
    if dx.shape[0] > 0:
        gemm(TRANSPOSED, AS_IS, K, P, FN, one_zero, Wmat, K, dout, P, dcol, P)
        _fold_image(dcol, geometry, dx, x, below)


@njit(cache=True)
def _sum_partials(parts, nb, geometry, tiled, dW, db, acc):
    """dW (FN·K), db (FN) = Σ_{k < nb} of the blocks' FN·(K + 1) partials, in block order (float64
    accumulators in ``acc``, FN·(K + 1) of them). A partial is (FN, K + 1), dW's rows with db as
    a last column, or, ``tiled`` (by weight tiles), (FH·FW, FN, C) tap by tap and then db."""
    C, _, _, FH, FW, _, _ = geometry
    FN = db.shape[0]
    K = C * FH * FW
    n = FN * (K + 1)
    for j in range(n):
        acc[j] = 0.0
    for k in range(nb):
        part = parts[k]
        for j in range(n):
            acc[j] += part[j]
    for f in range(FN):
        if tiled:
            for c in range(C):
                for t in range(FH * FW):
                    dW[f * K + c * FH * FW + t] = acc[(t * FN + f) * C + c]
            db[f] = acc[FN * K + f]
        else:
            for j in range(K):
                dW[f * K + j] = acc[f * (K + 1) + j]
            db[f] = acc[f * (K + 1) + K]


@njit(parallel=True, cache=True)
def conv_forward_rows(x, Wflat, b, out, winners, col, taps, geometry, activation, alphas):
    """The forward of a batch held as rows: x (N, C·H·W), out (N, FN·OH·OW), Wflat (FN·C·FH·FW,)
    the filters flat; ``geometry`` = (C, H, W, FH, FW, stride, pad); scratch: col (blocks,
    ``conv_scratch_size``) with ``conv_blocks`` blocks at least, taps (``taps_size``) for the
    direct tiles' packed filters (or Winograd's); ``alphas``: BLAS's (1, 0) and (1, 1). ``winners`` (N, …, int64)
    for a stride-1 convolution (ReLU or none) whose 2×2 pool at stride 2 runs in the same pass
    (``_direct_forward_image``): out is then the pool's output (N, FN·(OH // 2)·(OW // 2)) and
    winners (as out) its indices into each image's wide output, for ``conv_backward_rows``'
    ``pool``; else winners with no rows. Unchecked."""
    C, H, W, FH, FW, stride, pad = geometry
    N = x.shape[0]
    FN = b.shape[0]
    K = C * FH * FW
    OH, OW = output_size(H, FH, stride, pad), output_size(W, FW, stride, pad)
    Wmat = Wflat[: FN * K].reshape((FN, K))
    nb = conv_blocks(N, K, OH * OW, FN)
    if uses_winograd(C, H, W, FN, FH, FW, stride, pad, x.itemsize):
        winograd_filters_parallel(Wmat, C, taps, False)
    elif uses_direct(stride):
        direct_filters(Wmat, C, FH, FW, taps)
    for k in prange(nb):
        n0, n1 = block_bounds(N, nb, k)
        conv_forward_images(x, Wmat, taps, b, out, winners, col[k], geometry, activation, alphas, n0, n1)
    return out


@njit(cache=True)
def conv_forward_images(x, Wmat, taps, b, out, winners, scratch, geometry, activation, alphas, n0, n1):
    """Images n0:n1 of x (rows) into out, one at a time, each by its route (``uses_direct``):
    Wmat (FN, K) the filters, taps their direct tiles' order (``direct_filters``), scratch one
    block's ``conv_scratch_size`` values, winners as ``conv_forward_rows``' (pooled by the
    direct route only). ``conv_forward_rows``' block, and the test-time pass's."""
    C, _, _, _, _, stride, _ = geometry
    direct = uses_direct(stride)
    pooled = winners.shape[0] > 0
    for n in range(n0, n1):
        if direct:
            won = winners[n] if pooled else winners.reshape(winners.size)[:0]
            _direct_forward_image(x[n], taps, b, out[n], won, scratch, geometry, activation)
        else:
            _conv_forward_image(x[n], Wmat, b, out[n], scratch, geometry, activation, alphas[0])


@njit(parallel=True, cache=True)
def conv_backward_rows(x, Wflat, dout, dW, db, dx, scratch, geometry, below, alphas, pool):
    """The backward of a batch held as rows: x (N, C·H·W) the forward's input, dout (N, FN·P);
    writes dW (FN·K,), db (FN,) and, if dx has rows, dx (N, C·H·W) ⊙ act'(below). ``scratch`` =
    (col, dcol (blocks, ``conv_scratch_size``), taps (FN·K), parts (blocks, FN·(K + 1)), acc
    float64 (FN·(K + 1))); ``geometry`` and ``alphas`` as ``conv_forward_rows``'. ``pool`` =
    (winners, pooled, act): for a convolution whose forward pooled (``conv_forward_rows`` with winners; by
    weight tiles only: ``uses_weight_tiles``), its winners and output and the convolution's activation,
    dout then the pool's output gradient (changed in place); else winners with no rows. Unchecked."""
    C, H, W, FH, FW, stride, pad = geometry
    col, dcol, taps, parts, acc = scratch
    N = x.shape[0]
    FN = db.shape[0]
    K = C * FH * FW
    OH, OW = output_size(H, FH, stride, pad), output_size(W, FW, stride, pad)
    Wmat = Wflat[: FN * K].reshape((FN, K))
    nb = conv_blocks(N, K, OH * OW, FN)
    with_dx = dx.shape[0] > 0
    tiled = uses_weight_tiles(C, FN, FH, FW, stride, with_dx)
    if tiled and with_dx and dx_by_winograd(C, H, W, FN, FH, FW, stride, pad, x.itemsize):
        winograd_filters_parallel(Wmat, C, taps, True)
    elif tiled and with_dx:
        flipped_filters(Wmat, C, FH, FW, taps)
    sweep = sweep_images(H, W, FH, FW, pad, x.itemsize) if tiled else 1
    for k in prange(nb):
        n0, n1 = block_bounds(N, nb, k)
        if tiled:
            for m in range(n0, n1, sweep):
                _weight_tile_backward_images(x, m, min(m + sweep, n1), taps, dout, col[k], dcol[k], parts[k],
                                             m == n0, geometry, dx, below, pool)  # fmt: skip
            continue
        for n in range(n0, n1):
            dx_n = dx[n] if with_dx else dx.reshape(dx.size)[:0]
            part = parts[k, : FN * (K + 1)].reshape((FN, K + 1))
            _conv_backward_image(x[n], Wmat, dout[n], col[k], dcol[k], part, n == n0, geometry, dx_n, below, alphas)
    _sum_partials(parts, nb, geometry, tiled, dW, db, acc)
    return dW, db, dx


@njit(cache=True)
def no_pool(winners, values):
    """``conv_backward_rows``' ``pool`` for a convolution not pooled in its forward: views with
    no rows of the two buffers given (int64 and the network's dtype), no allocation."""
    return no_winners(winners), values[:0].reshape((0, 0)), IDENTITY


@njit(cache=True)
def no_winners(winners):
    """``conv_forward_rows``' ``winners`` for a convolution not pooled in its pass: a view with no
    rows of an int64 buffer."""
    return winners[:0].reshape((0, 0))


@njit(parallel=True, cache=True)
def conv_forward_unchecked(x, W, b, out, col, stride, pad, activation):
    """out = activation(conv(x, W) + b): x (N, C, H, W), W (FN, C, FH, FW), b (FN,), out (N, FN,
    OH, OW), col scratch (``conv_blocks`` rows at least, ``conv_scratch_size`` values each),
    activation 0 (none) or 1 (ReLU). Unchecked."""
    N, C, H, Wd = x.shape
    FN, _, FH, FW = W.shape
    one_zero, one_one = np.zeros(2, x.dtype), np.ones(2, x.dtype)
    one_zero[0] = 1
    taps = np.empty(taps_size(C, FN, FH, FW), x.dtype)
    conv_forward_rows(x.reshape((N, C * H * Wd)), W.reshape(W.size), b, out.reshape((N, out.size // max(N, 1))),
                      no_winners(np.empty(0, np.int64)), col, taps, (C, H, Wd, FH, FW, stride, pad), activation,
                      (one_zero, one_one))  # fmt: skip
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
    taps = np.empty(taps_size(C, FN, FH, FW), x.dtype)  # the turned filters, or Winograd's
    rows = dx.reshape((dx.shape[0], C * H * Wd))
    conv_backward_rows(x.reshape((N, C * H * Wd)), W.reshape(W.size), dout.reshape((N, dout.size // max(N, 1))),
                       dW.reshape(W.size), db, rows, (col, dcol, taps, parts, acc), (C, H, Wd, FH, FW, stride, pad),
                       IDENTITY, (one_zero, one_one), no_pool(np.empty(0, np.int64), taps))  # fmt: skip
    return dW, db, dx
