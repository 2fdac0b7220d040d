"""How every parallel loop splits its work: a fixed number of blocks, by the shapes only.

Each block owns the output rows (or the output tile) it writes, and the number
of blocks depends only on the array shapes and on ``max_blocks()``, the most
blocks any loop uses, fixed for the process (``fastnet._cores.select_blocks``:
the cores Numba is configured for, or ``FASTNET_BLOCKS``). Never on how many
threads run them: that is what makes results bitwise identical with 1 thread
or many. (The test-time pass, whose images do not depend on each other, hands
them out in turns to whichever block is free, ``fetch_add``: the turns are still
fixed by the shapes, only who computes them varies.) ``max_blocks()`` is read
at run time, not frozen into the compiled code, so a cache built on one machine
stays right on another.
"""

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from .. import _cores

_cores.select_blocks()  # binds the symbol max_blocks() reads, before anything compiles or loads

MIN_BLOCK = 8  # rows (or columns) per block at least
WORK_PER_BLOCK = 1 << 19  # multiply-adds per block at least, so that each BLAS call pays off


@intrinsic
def max_blocks(typingctx):
    """The most blocks a parallel loop splits into (compiled code only): the int64 behind the
    symbol ``fastnet_max_blocks``, which ``fastnet._cores`` binds once per process."""

    def codegen(context, builder, signature, args):
        module = builder.module
        cell = module.globals.get("fastnet_max_blocks")
        if cell is None:
            cell = ir.GlobalVariable(module, ir.IntType(64), name="fastnet_max_blocks")
            cell.linkage = "external"
        return builder.load(cell)

    return types.int64(), codegen


@njit(cache=True)
def num_blocks(n, work=0):
    """How many blocks a parallel loop over ``n`` rows uses: at most ``max_blocks()``, each with
    at least MIN_BLOCK rows and, for a matrix product of ``work`` multiply-adds (0: none), at
    least WORK_PER_BLOCK of them."""
    nb = min(max_blocks(), n // MIN_BLOCK)
    if work != 0:
        nb = min(nb, work // WORK_PER_BLOCK)
    return max(nb, 1)


@njit(cache=True)
def block_bounds(n, nblocks, k):
    """Rows ``[start, stop)`` of block ``k`` out of ``nblocks`` over ``n`` rows."""
    return k * n // nblocks, (k + 1) * n // nblocks


@njit(cache=True)
def product_split(M, K, N):
    """(row blocks, column blocks) of the M×N output of an (M,K) @ (K,N) product.

    As many blocks as the work supports (``num_blocks``), arranged to re-pack
    little: a block re-reads (and BLAS re-packs) the left operand's rows of
    its row range and the right operand's columns of its column range, so the
    grid costs about ``col_blocks·M + row_blocks·N`` (times K). Each block
    keeps at least MIN_BLOCK rows and columns (unless it has them all). Ties go
    to more row blocks.
    """
    total = num_blocks(max(M, N), M * K * N)
    best_rows, best_cols, best_cost = 1, 1, M + N
    for rows in range(1, total + 1):
        cols = total // rows
        if (rows > 1 and M // rows < MIN_BLOCK) or (cols > 1 and N // cols < MIN_BLOCK):
            continue
        cost = cols * M + rows * N
        better = rows * cols > best_rows * best_cols or (rows * cols == best_rows * best_cols and cost <= best_cost)
        if better:
            best_rows, best_cols, best_cost = rows, cols, cost
    return best_rows, best_cols


@njit(cache=True)
def product_block(M, N, split, k):
    """Rows [r0, r1) and columns [c0, c1) of block k of an M×N output split as ``split``
    = (row blocks, column blocks), blocks numbered row by row."""
    row_blocks, col_blocks = split
    r0, r1 = block_bounds(M, row_blocks, k // col_blocks)
    c0, c1 = block_bounds(N, col_blocks, k % col_blocks)
    return r0, r1, c0, c1


@intrinsic
def fetch_add(typingctx, counter, value):
    """counter[0] += value, atomically; returns what counter[0] held before (compiled code only;
    ``counter`` a one-dimensional int64 array). Lets the blocks of a parallel loop take its items
    in turn, whoever is free first, where each item's result does not depend on which block
    computes it (``schedule.test_forward_by_rows``). Numba's parallel passes do not see it write
    ``counter``: they may move a read of ``counter`` after the loop to before it, so read it only
    through ``fetch_add``, or from the caller."""
    if not (isinstance(counter, types.Array) and counter.dtype == types.int64 and counter.ndim == 1):
        return None

    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        amount = context.cast(builder, args[1], signature.args[1], types.int64)
        return builder.atomic_rmw("add", cgutils.gep(builder, array.data, 0), amount, "monotonic")

    return types.int64(counter, value), codegen
