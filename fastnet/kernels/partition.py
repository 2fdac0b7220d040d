"""How every parallel loop splits its work: a fixed number of blocks, by the shapes only.

Each block owns the output rows (or columns) it writes, and the number of
blocks depends only on the array shapes, never on how many threads run them:
that is what makes results bitwise identical with 1 thread or many.
"""

from numba import njit

BLOCKS = 2  # blocks per parallel loop at most
MIN_BLOCK = 8  # rows (or columns) per block at least
WORK_PER_BLOCK = 1 << 20  # multiply-adds per block at least, so that each BLAS call pays off


@njit(cache=True)
def num_blocks(n, work=0):
    """How many blocks a parallel loop over ``n`` rows or columns uses.

    For a matrix product of ``work`` multiply-adds: one block if it is too small
    to share, else BLOCKS. More blocks than cores cost more than they give: each
    block re-packs the operand the blocks share. Loops without a product
    (work=0) use BLOCKS once each block gets MIN_BLOCK rows.
    """
    if n < 2 * MIN_BLOCK or (work != 0 and work < 2 * WORK_PER_BLOCK):
        return 1
    return BLOCKS


@njit(cache=True)
def block_bounds(n, nblocks, k):
    """Rows ``[start, stop)`` of block ``k`` out of ``nblocks`` over ``n`` rows."""
    return k * n // nblocks, (k + 1) * n // nblocks


@njit(cache=True)
def product_split(M, K, N):
    """(split over columns?, number of blocks) for an (M,K) @ (K,N) product.

    A row block re-reads (and BLAS re-packs) all of the right operand, a column
    block all of the left one: split the way that repeats the smaller one.
    """
    by_columns = M < N
    return by_columns, num_blocks(N if by_columns else M, M * K * N)


@njit(cache=True)
def product_block(M, N, by_columns, nb, k):
    """Rows [r0, r1) and columns [c0, c1) of block k of an M×N output."""
    r0, r1, c0, c1 = 0, M, 0, N
    if by_columns:
        c0, c1 = block_bounds(N, nb, k)
    else:
        r0, r1 = block_bounds(M, nb, k)
    return r0, r1, c0, c1
