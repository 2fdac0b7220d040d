"""BLAS from compiled code: ``gemm`` on blocks of arrays read in place, and a prefetch hint.

The products call the Fortran ``sgemm``/``dgemm`` of the library that
``fastnet._cores`` bound (MKL or SciPy's OpenBLAS, one thread per call) through
the symbols ``fastnet_sgemm``/``fastnet_dgemm`` (``fastnet_*gemm_narrow``, SciPy's
OpenBLAS, for products with few columns): compiled code, and so Numba's
on-disk cache, names only those symbols, and the library can differ from one
process to the next without recompiling. They are bound when this module is
imported, before anything compiles or loads from the cache.
"""

from llvmlite import ir
from numba import njit
from numba.core import cgutils, types
from numba.extending import intrinsic

from .. import _cores

_cores.select_blas()
_cores.prefer_openmp()
_cores.start_threads()  # after prefer_openmp: the pool starts with the layer and spin fastnet asks for

# BLAS's transpose flags: the operand as it is in memory, or transposed.
AS_IS, TRANSPOSED = ord("n"), ord("t")


@intrinsic
def blas_gemm(typingctx, transa, transb, m, n, k, alpha_beta, a, lda, b, ldb, c, ldc):
    """C := alpha op(A) op(B) + beta C in BLAS's column-major terms (compiled code only).

    a, b, c are arrays whose first element is where the matrix starts (views
    such as ``x[:, d0:]`` are fine: only the data pointer and the leading
    dimensions lda/ldb/ldc are used); alpha_beta is an array of the same dtype
    whose first two entries are alpha and beta. transa/transb are ``AS_IS`` or
    ``TRANSPOSED``. Called directly so that a block of rows can be multiplied
    without a copy, and an update fused in through alpha and beta. Calls the backend's
    sgemm/dgemm (``fastnet_sgemm``/``fastnet_dgemm``).
    """
    return _gemm_call(("fastnet_sgemm", "fastnet_dgemm"), (transa, transb, m, n, k, alpha_beta, a, lda, b, ldb, c, ldc))


@intrinsic
def blas_gemm_narrow(typingctx, transa, transb, m, n, k, alpha_beta, a, lda, b, ldb, c, ldc):
    """``blas_gemm`` through SciPy's OpenBLAS whatever the backend (``fastnet_sgemm_narrow``/
    ``fastnet_dgemm_narrow``), for products with few columns (``gemm``)."""
    symbols = ("fastnet_sgemm_narrow", "fastnet_dgemm_narrow")
    return _gemm_call(symbols, (transa, transb, m, n, k, alpha_beta, a, lda, b, ldb, c, ldc))


def _gemm_call(symbols, operand_types):
    """The signature and code of a call to the Fortran gemm named ``symbols`` (sgemm's, dgemm's);
    ``operand_types``: the types of gemm's twelve operands, (transa, ..., c, ldc)."""
    symbol = {types.float32: symbols[0], types.float64: symbols[1]}[operand_types[10].dtype]

    def codegen(context, builder, signature, args):
        i8, i32 = ir.IntType(8), ir.IntType(32)

        def by_reference(value, llvm_type):  # Fortran takes every argument by address
            slot = cgutils.alloca_once(builder, llvm_type)  # in the entry block: no stack growth in loops
            builder.store(builder.trunc(value, llvm_type), slot)
            return slot

        def data(position):
            return context.make_array(signature.args[position])(context, builder, args[position]).data

        transa, transb, m, n, k, _, _, lda, _, ldb, _, ldc = args
        alpha = data(5)
        call_args = [
            by_reference(transa, i8),
            by_reference(transb, i8),
            by_reference(m, i32),
            by_reference(n, i32),
            by_reference(k, i32),
            alpha,
            data(6),
            by_reference(lda, i32),
            data(8),
            by_reference(ldb, i32),
            cgutils.gep_inbounds(builder, alpha, 1),
            data(10),
            by_reference(ldc, i32),
        ]
        func_type = ir.FunctionType(ir.VoidType(), [arg.type for arg in call_args])
        builder.call(cgutils.get_or_insert_function(builder.module, func_type, symbol), call_args)
        return context.get_dummy_value()

    return types.void(*operand_types), codegen


NARROW = 16  # products with fewer output columns than this call blas_gemm_narrow


@njit(cache=True)
def gemm(trans_a, trans_b, M, N, K, alpha_beta, A, lda, B, ldb, C, ldc):
    """Row-major C (M×N, leading dim ldc) := alpha op(A) op(B) + beta C.

    A and B are row-major with leading dims lda, ldb; trans_a/trans_b are
    ``AS_IS`` or ``TRANSPOSED``. A row-major matrix is the transpose of the same
    memory read column-major, so this is BLAS's Cᵀ = op(B)ᵀ op(A)ᵀ. A product with fewer than
    NARROW columns (BLAS's m) goes to OpenBLAS whatever the backend: MKL's small-m kernels are
    the slow ones on AMD CPUs.
    """
    if N < NARROW:
        blas_gemm_narrow(trans_b, trans_a, N, M, K, alpha_beta, B, ldb, A, lda, C, ldc)
    else:
        blas_gemm(trans_b, trans_a, N, M, K, alpha_beta, B, ldb, A, lda, C, ldc)


@intrinsic
def prefetch_row(typingctx, X, row):
    """Ask the cache to fetch row ``row`` of the 2-D array X ahead of use (compiled code only).

    A hint (LLVM's ``llvm.prefetch``, one per 64-byte line): it never faults and
    never changes a result. The training steps use it to fetch the next batch's
    rows while this batch's weight update runs.
    """

    def codegen(context, builder, signature, args):
        i8p, i32, i64 = ir.IntType(8).as_pointer(), ir.IntType(32), ir.IntType(64)
        array = context.make_array(signature.args[0])(context, builder, args[0])
        row_stride = builder.extract_value(array.strides, 0)
        start = builder.gep(builder.bitcast(array.data, i8p), [builder.mul(args[1], row_stride)])
        itemsize = ir.Constant(i64, context.get_abi_sizeof(context.get_data_type(signature.args[0].dtype)))
        row_bytes = builder.mul(builder.extract_value(array.shape, 1), itemsize)
        prefetch = builder.module.declare_intrinsic(  # named for this LLVM's pointer types
            "llvm.prefetch", [i8p], ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        )
        read, keep_in_l2, data = ir.Constant(i32, 0), ir.Constant(i32, 2), ir.Constant(i32, 1)
        with cgutils.for_range_slice(builder, ir.Constant(i64, 0), row_bytes, ir.Constant(i64, 64)) as (offset, _):
            builder.call(prefetch, [builder.gep(start, [offset]), read, keep_in_l2, data])
        return context.get_dummy_value()

    return types.void(X, types.int64), codegen
