"""Winograd's F(2×2, 3×3): a 3×3 stride-1 convolution at test time in 2.25× fewer multiplications.

A 2×2 block of a 3×3 convolution's outputs (a "tile") depends on a 4×4 patch d of each input
channel. Winograd's minimal filtering computes it as

    Y = Aᵀ·[Σ_c U_c ⊙ V_c]·A,   V_c = Bᵀ·d_c·B (the patch transformed),   U_c = G·g_c·Gᵀ (the filter)

with 16 products per channel and filter where the direct sum takes 36 (Lavin & Gray, "Fast
Algorithms for Convolutional Neural Networks", 2016). Over a whole image, value ξ of the 16 is a
product of matrices: M_ξ (filters × tiles) = U_ξ (filters × channels) · V_ξ (channels × tiles). So
the convolution becomes an input transform (``_simd.winograd_input_row``), 16 such products, each
one 1×1 convolution run by the direct tiles (``conv._tiles``: the same register-tiled kernel, one
tap), and an output transform (``_simd.winograd_output_row``, the bias and ReLU added there). The
transforms' coefficients are 0, ±1 and ±½, so float32's error stays at the direct sum's order (the
reference-twin tests hold it to the same tolerance).

Only at test time (``schedule.test_image``), for the layers ``uses_winograd`` takes: the training
passes keep the direct tiles, whose forward the backward's pool winners and bitwise twin tests are
built on. The layout inside one image's scratch (``winograd_output``): V as 16 blocks of C planes
of Tp tiles (T tiles, rounded up to whole vectors), M as 16 blocks of FN planes, each block a vector
longer than its planes, so the transforms' 16 streams do not fall into one cache set; the output
as planes of 2·TY rows of 2·TX pixels, the first OH rows' first OW pixels the convolution's output
(``conv.tiles_output``'s (out, N, row) contract, so the pool and the cut read it as the tiles').
"""

import numpy as np
from numba import njit

from ._simd import PLUS_BIAS, PLUS_BIAS_RELU, SUMS, tile_pixels, winograd_input_row, winograd_output_row
from .activations import RELU
from .conv import _padded_plane, _tiles, direct_filters, output_size

# below this many input channels or filters, the transforms cost more than the products they save
WINOGRAD_MIN_CHANNELS = 16
# with fewer than twice that many channels, the most the tiles may be rounded up to whole vectors (a
# share of them): the products are short per tile, and their rounding, not the transforms, decides
WINOGRAD_ROUNDING = 0.1


@njit(cache=True)
def uses_winograd(C, H, W, FN, FH, FW, stride, pad, itemsize):
    """Whether a convolution runs by Winograd's F(2×2, 3×3) at test time: 3×3 filters at stride 1,
    pad at most 2 (the patches' reads stay within the padded image), at least WINOGRAD_MIN_CHANNELS
    filters and input channels, and where those are fewer than twice that, tiles that need little
    rounding up to whole vectors (16→32 channels on 14×14: 49 tiles computed as 64, no faster than
    the direct tiles; 16→16 on 28×28: 196 as 208, faster)."""
    if FH != 3 or FW != 3 or stride != 1 or pad > 2 or C < WINOGRAD_MIN_CHANNELS or FN < WINOGRAD_MIN_CHANNELS:
        return False
    TY, TX, Tp = _tiles_of(H, W, pad, itemsize)
    return C >= 2 * WINOGRAD_MIN_CHANNELS or Tp <= (1 + WINOGRAD_ROUNDING) * TY * TX


@njit(cache=True)
def _tiles_of(H, W, pad, itemsize):
    """(TY, TX, Tp): rows and columns of 2×2 output tiles, and their number TY·TX rounded up to
    whole vectors."""
    TY, TX = (output_size(H, 3, 1, pad) + 1) // 2, (output_size(W, 3, 1, pad) + 1) // 2
    vector = tile_pixels(itemsize) // 2
    return TY, TX, -(-TY * TX // vector) * vector


@njit(cache=True)
def winograd_size(C, H, W, FN, pad, itemsize):
    """Values of scratch ``winograd_output`` needs (V, M and the output) for a 3×3 convolution of C
    channels on H×W, FN filters, padded by ``pad``."""
    TY, TX, Tp = _tiles_of(H, W, pad, itemsize)
    vector = tile_pixels(itemsize) // 2
    return 16 * (C * Tp + vector) + 16 * (FN * Tp + vector) + FN * 4 * TY * TX


@njit(cache=True)
def winograd_filters(Wmat, C, packed):
    """packed (16·FN·C values) = U_ξ = G·g·Gᵀ of every filter g (Wmat (FN, C·9)), computed in
    float64: for ξ < 16, from ξ·FN·C on, U_ξ (FN × C) as ``conv.direct_filters`` packs the filters
    of a 1×1 convolution. G = [[1, 0, 0], [½, ½, ½], [½, −½, ½], [0, 0, 1]]."""
    FN = Wmat.shape[0]
    U = np.empty((16, FN, C))
    Gg = np.empty((4, 3))
    for f in range(FN):
        for c in range(C):
            g = Wmat[f, c * 9 : c * 9 + 9].astype(np.float64).reshape((3, 3))
            for j in range(3):  # G·g, column by column
                Gg[0, j] = g[0, j]
                Gg[1, j] = 0.5 * (g[0, j] + g[1, j] + g[2, j])
                Gg[2, j] = 0.5 * (g[0, j] - g[1, j] + g[2, j])
                Gg[3, j] = g[2, j]
            for a in range(4):  # (G·g)·Gᵀ, row by row
                U[4 * a, f, c] = Gg[a, 0]
                U[4 * a + 1, f, c] = 0.5 * (Gg[a, 0] + Gg[a, 1] + Gg[a, 2])
                U[4 * a + 2, f, c] = 0.5 * (Gg[a, 0] - Gg[a, 1] + Gg[a, 2])
                U[4 * a + 3, f, c] = Gg[a, 2]
    for xi in range(16):
        direct_filters(U[xi].astype(Wmat.dtype), C, 1, 1, packed[xi * FN * C :])


@njit(cache=True, error_model="numpy")
def winograd_output(xp, packed, b, scratch, geometry, activation):
    """(out, N, row) as ``conv.tiles_output`` gives them, by Winograd's F(2×2, 3×3): a 3×3
    stride-1 convolution's output from its padded image xp (``conv.padded_size`` values), in
    scratch (``winograd_size`` values): plane f from f·N on, OH rows ``row`` apart, the first OW
    pixels of each conv(x) + b[f], ReLU applied for ``activation`` RELU; packed the transformed
    filters (``winograd_filters``)."""
    C, H, W, _, _, _, pad = geometry
    FN = b.shape[0]
    Hq, Wp = _padded_plane(H, W, 3, pad)
    TY, TX, Tp = _tiles_of(H, W, pad, xp.itemsize)
    vector = tile_pixels(xp.itemsize) // 2
    v_stride, m_stride = C * Tp + vector, FN * Tp + vector
    V, M = scratch[: 16 * v_stride], scratch[16 * v_stride : 16 * (v_stride + m_stride)]
    out = scratch[16 * (v_stride + m_stride) :]
    for c in range(C):
        for ty in range(TY):  # tile (ty, tx)'s patch: padded rows 2ty to 2ty + 3, columns 2tx to 2tx + 3
            winograd_input_row(xp, c * Hq * Wp + 2 * ty * Wp, Wp, V, c * Tp + ty * TX, v_stride, TX)
        for xi in range(16):  # the products read whole vectors: no stale value (a subnormal, say) past the tiles
            for t in range(TY * TX, Tp):
                V[xi * v_stride + c * Tp + t] = 0
    pixels = tile_pixels(xp.itemsize)
    for xi in range(16):
        _tiles(V, xi * v_stride, C, Tp, packed[xi * FN * C :], M, xi * m_stride, Tp, FN, Tp, 1, 1, 0, 0, pixels, b,
               SUMS)  # fmt: skip
    row = 2 * TX
    N = 2 * TY * row
    epilogue = PLUS_BIAS_RELU if activation == RELU else PLUS_BIAS
    for f in range(FN):
        for ty in range(TY):
            winograd_output_row(M, f * Tp + ty * TX, m_stride, TX, b, f, out, f * N + 2 * ty * row, row, epilogue)
    return out, N, row
