"""Fused Numba kernels for the two-layer network, and their checked entry points.

Every kernel takes its inputs and its output buffers, writes the outputs and
returns them (or the scalar loss). Shapes: ``B`` batch rows, ``D`` inputs, ``H``
hidden units, ``C`` classes. All float arrays of one call share one dtype,
float32 or float64; labels are integer class indices.

Two names per kernel:

* ``affine_relu_forward`` etc. are **checked**. Called from Python they check
  dtypes, ``ndim``, C-contiguity and writability in Python, then shapes, label
  range and output aliasing in compiled code, before touching any data, and
  raise ``TypeError`` / ``ValueError`` naming the argument. They are also
  callable from your own ``@njit`` functions (through ``numba.extending.overload``),
  with the same checks.
* ``affine_relu_forward_unchecked`` etc. are the raw ``@njit(parallel=True)``
  kernels. They trust their arguments: a wrong shape or label reads or writes
  outside the arrays. Use them from compiled code that has already checked.

Caching: every compiled function that calls a parallel kernel is itself
``parallel=True``, even without a ``prange``. Numba can crash loading from its
cache a non-parallel cached function that calls a parallel one (numba#8578,
#10184; making the caller parallel avoids it, #4807). If you cache your own
``@njit`` function that calls these kernels, give it ``parallel=True`` too.

How the work is split: every parallel loop runs over a fixed number of blocks
that depends only on the array shapes (``num_blocks``), never on the thread
count, and each block owns the output rows it writes. Scalar sums run in a fixed
serial order. So results are bitwise identical with 1 thread or many. The matrix
products inside a block call BLAS directly (``blas_gemm``: MKL's or SciPy's
OpenBLAS's sgemm/dgemm, one thread per call, chosen in ``fastnet._cores``), on a
block of rows or of columns read in place, with the SGD update fused in
through BLAS's alpha and beta. The training step is ``train_step`` (checked)
over ``train_step_unchecked``; ``train_steps`` runs many steps in one call,
prefetching each next batch's rows (``prefetch_row``).
The network's forward pass is ``forward_unchecked`` (``predict``) and
``correct_count_unchecked`` (``accuracy``).
"""
import warnings

import numpy as np
from llvmlite import ir
from numba import njit, prange
from numba.core import cgutils, types
from numba.extending import intrinsic, overload

from . import _cores
from ._validate import IN, LABELS, OUT, python_args, typing_problem

_cores.select_blas()  # binds the symbols blas_gemm calls, before anything compiles or loads from cache
_cores.prefer_openmp()

# Our parallel=True wrappers without a prange (see "Caching" above) are parallel
# on purpose; silence Numba's note about them, and only about them.
warnings.filterwarnings("ignore", message=r"(?s).*no transformation for parallel execution was possible"
                                          r".*fastnet[/\\]kernels\.py")

# --------------------------------------------------------------------------
# Work partition
# --------------------------------------------------------------------------

BLOCKS = 2                  # blocks per parallel loop: the cores of the machine this was tuned on
MIN_BLOCK = 8               # rows (or columns) per block at least
WORK_PER_BLOCK = 1 << 20    # multiply-adds per block at least, so each BLAS call pays off


@njit(cache=True)
def num_blocks(n, work=0):
    """How many blocks a parallel loop over ``n`` rows or columns uses.

    It depends on the shapes only, never on the thread count: that is what
    makes results bitwise identical with 1 thread or many. For a matrix product
    of ``work`` multiply-adds: one block if too small to share, else BLOCKS
    (more blocks re-pack the shared operand more often: measured 43 % slower
    with 16 at (1000, 1000); with MKL, 4 blocks instead of 2 for small
    products measured 2-8 % slower at (100, 50), though OpenBLAS had been
    faster with them). Loops without a product (work=0) use BLOCKS.
    """
    if n < 2 * MIN_BLOCK or (work != 0 and work < 2 * WORK_PER_BLOCK):
        return 1
    return BLOCKS


@njit(cache=True)
def block_bounds(n, nblocks, k):
    """Rows ``[start, stop)`` of block ``k`` out of ``nblocks`` over ``n`` rows."""
    return k * n // nblocks, (k + 1) * n // nblocks


# --------------------------------------------------------------------------
# Value checks (compiled; run by every checked entry point before a raw kernel)
# --------------------------------------------------------------------------

@njit(cache=True)
def require(condition, func, message):
    """Raise ``ValueError(func + message)`` unless ``condition`` (the text is built only on failure)."""
    if not condition:
        raise ValueError(func + message)


@njit(cache=True)
def span(a):
    """The byte range [start, stop) of a C-contiguous array (empty for an empty array)."""
    if a.size == 0:
        return (0, 0)
    return (a.ctypes.data, a.ctypes.data + a.nbytes)


@njit(cache=True)
def require_disjoint(func, output_spans, input_spans):
    """No output overlaps an input or another output (spans from ``span``)."""
    for i in range(len(output_spans)):
        o0, o1 = output_spans[i]
        for j in range(len(input_spans)):
            a0, a1 = input_spans[j]
            if o0 < a1 and a0 < o1:
                raise ValueError(func + ": an output array overlaps an input array")
        for j in range(i + 1, len(output_spans)):
            a0, a1 = output_spans[j]
            if o0 < a1 and a0 < o1:
                raise ValueError(func + ": two output arrays overlap")


@njit(cache=True)
def require_finite(func, name, a):
    """Raise unless every entry of the C-contiguous float array ``a`` is finite.

    v - v is 0 for a finite v and NaN for NaN or ±inf, and NaN != 0; OR-ing
    the flags (unlike summing floats) vectorises without fastmath. (No fastmath
    anywhere in fastnet, so the NaN test cannot be optimised away; a test
    checks that.)
    """
    flat = a.reshape(a.size)
    bad = False
    for i in range(flat.size):
        bad |= flat[i] - flat[i] != 0
    if bad:
        raise ValueError(func + ": " + name + " contains NaN or infinity")


@njit(cache=True)
def require_labels(func, t, num_classes):
    """Every label lies in [0, num_classes)."""
    for i in range(t.shape[0]):
        if t[i] < 0 or t[i] >= num_classes:
            raise ValueError(func + ": labels must lie in [0, C), C = number of classes; "
                             "(position, label, C) =", i, t[i], num_classes)


# --------------------------------------------------------------------------
# BLAS: general matrix product on sub-blocks, with alpha and beta
# --------------------------------------------------------------------------

@intrinsic
def blas_gemm(typingctx, transa, transb, m, n, k, alpha_beta, a, lda, b, ldb, c, ldc):
    """C := alpha op(A) op(B) + beta C in BLAS's column-major terms (compiled code only).

    The Fortran ``sgemm``/``dgemm`` of the library ``fastnet._cores`` chose,
    called through the symbol ``fastnet_sgemm``/``fastnet_dgemm``. a, b, c are
    arrays whose first element is where the matrix starts (views such as
    ``x[:, d0:]`` are fine: only the data pointer and the leading dimensions
    lda/ldb/ldc are used); alpha_beta is an array of the same dtype whose first
    two entries are alpha and beta. transa/transb are ``ord('n')`` or
    ``ord('t')``. Called directly so a block of rows can be multiplied without
    a copy and an update fused in.
    """
    symbol = {types.float32: "fastnet_sgemm", types.float64: "fastnet_dgemm"}[c.dtype]

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
        call_args = [by_reference(transa, i8), by_reference(transb, i8), by_reference(m, i32),
                     by_reference(n, i32), by_reference(k, i32), alpha, data(6), by_reference(lda, i32),
                     data(8), by_reference(ldb, i32), cgutils.gep_inbounds(builder, alpha, 1), data(10),
                     by_reference(ldc, i32)]
        func_type = ir.FunctionType(ir.VoidType(), [arg.type for arg in call_args])
        builder.call(cgutils.get_or_insert_function(builder.module, func_type, symbol), call_args)
        return context.get_dummy_value()

    return types.void(transa, transb, m, n, k, alpha_beta, a, lda, b, ldb, c, ldc), codegen


@njit(cache=True)
def gemm(trans_a, trans_b, M, N, K, alpha_beta, A, lda, B, ldb, C, ldc):
    """Row-major C (M×N, leading dim ldc) := alpha op(A) op(B) + beta C.

    A and B are row-major with leading dims lda, ldb; trans_a/trans_b are
    ``ord('n')`` or ``ord('t')``. A row-major matrix is the transpose of the
    same memory read column-major, so this is BLAS's Cᵀ = op(B)ᵀ op(A)ᵀ.
    """
    blas_gemm(trans_b, trans_a, N, M, K, alpha_beta, B, ldb, A, lda, C, ldc)


N, T = ord("n"), ord("t")


@intrinsic
def prefetch_row(typingctx, X, row):
    """Ask the cache to fetch row ``row`` of the 2-D array X ahead of use (compiled code only).

    A hint (LLVM's ``llvm.prefetch``, one per 64-byte line): it never faults and
    never changes a result. The training steps use it to fetch the next batch's
    rows while this batch's weight update runs (measured: the gather of a
    100-row MNIST batch 24 -> 16 µs, the step 3-4 % faster).
    """
    def codegen(context, builder, signature, args):
        i8p, i32, i64 = ir.IntType(8).as_pointer(), ir.IntType(32), ir.IntType(64)
        array = context.make_array(signature.args[0])(context, builder, args[0])
        row_stride = builder.extract_value(array.strides, 0)
        start = builder.gep(builder.bitcast(array.data, i8p), [builder.mul(args[1], row_stride)])
        itemsize = ir.Constant(i64, context.get_abi_sizeof(context.get_data_type(signature.args[0].dtype)))
        row_bytes = builder.mul(builder.extract_value(array.shape, 1), itemsize)
        prefetch = builder.module.declare_intrinsic(  # named for this LLVM's pointer types
            "llvm.prefetch", [i8p], ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]))
        read, keep_in_l2, data = ir.Constant(i32, 0), ir.Constant(i32, 2), ir.Constant(i32, 1)
        with cgutils.for_range_slice(builder, ir.Constant(i64, 0), row_bytes, ir.Constant(i64, 64)) as (offset, _):
            builder.call(prefetch, [builder.gep(start, [offset]), read, keep_in_l2, data])
        return context.get_dummy_value()

    return types.void(X, types.int64), codegen


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


@njit(cache=True)
def _affine_block(x, W, b, out, alpha_beta, by_columns, nb, k, relu):
    """Block k of out = x @ W + b (then max(., 0) if relu), by rows or by columns.

    alpha_beta[0:2] must hold (1, 0).
    """
    B, D = x.shape
    H = W.shape[1]
    r0, r1, h0, h1 = product_block(B, H, by_columns, nb, k)
    if r1 <= r0 or h1 <= h0:
        return
    gemm(N, N, r1 - r0, h1 - h0, D, alpha_beta, x[r0:], D, W[:, h0:], H, out[r0:, h0:], H)
    for i in range(r0, r1):
        for j in range(h0, h1):
            v = out[i, j] + b[j]
            out[i, j] = v
            if relu and v < 0:
                out[i, j] = 0  # a store, so the literal cannot widen v's type


@njit(cache=True)
def _weight_grad_block(x, dout, alpha_beta, out, by_columns, nb, k):
    """Block k of out := alpha * x.T @ dout + beta * out (alpha, beta = alpha_beta[0:2]).

    With alpha = -lr and beta = 1 on out = W this is the SGD update itself.
    """
    B, D = x.shape
    H = dout.shape[1]
    d0, d1, h0, h1 = product_block(D, H, by_columns, nb, k)
    if d1 > d0 and h1 > h0:
        gemm(T, N, d1 - d0, h1 - h0, B, alpha_beta, x[:, d0:], D, dout[:, h0:], H, out[d0:, h0:], H)


# --------------------------------------------------------------------------
# Row-range building blocks (serial; the kernels run them inside prange)
# --------------------------------------------------------------------------

@njit(cache=True)
def _relu_input_grad_rows(dout, W, h, dh, r0, r1, alpha_beta):
    """dh[r0:r1] = (dout[r0:r1] @ W.T) * [h[r0:r1] > 0]: affine backward with the ReLU mask fused.

    alpha_beta[0:2] must hold (1, 0).
    """
    if r1 <= r0:
        return
    H, C = W.shape
    gemm(N, T, r1 - r0, H, C, alpha_beta, dout[r0:], C, W, C, dh[r0:], H)
    for i in range(r0, r1):
        for j in range(dh.shape[1]):
            if not h[i, j] > 0:
                dh[i, j] = 0


@njit(cache=True)
def _row_max(z, i):
    """max_j z[i, j]: the shift that keeps exp from overflowing."""
    m = z[i, 0]
    for j in range(1, z.shape[1]):
        if z[i, j] > m:
            m = z[i, j]
    return m


@njit(cache=True)
def _softmax_ce_row(z, t, dz, i, inv_batch):
    """Row ``i``: dz[i] = (softmax(z[i]) - onehot(t[i])) / B; returns -log softmax(z[i])[t[i]] (float64)."""
    C = z.shape[1]
    m = _row_max(z, i)
    total = 0.0
    for j in range(C):
        e = np.exp(z[i, j] - m)
        dz[i, j] = e
        total += e
    scale = inv_batch / total
    for j in range(C):
        dz[i, j] = dz[i, j] * scale
    dz[i, t[i]] -= inv_batch
    return np.log(total) + m - z[i, t[i]]


@njit(cache=True)
def _column_sums(a, out, acc):
    """out[j] = sum_i a[i, j], each column summed in row order in float64.

    acc is float64 scratch with at least a.shape[1] entries. Walking the rows
    (not the columns) reads the array in memory order, so the loop vectorises.
    """
    n = a.shape[1]
    for j in range(n):
        acc[j] = 0.0
    for i in range(a.shape[0]):
        for j in range(n):
            acc[j] += a[i, j]
    for j in range(n):
        out[j] = acc[j]


@njit(cache=True)
def _sgd_vector(param, grad, lr):
    """param -= lr * grad for 1-D arrays (flatten 2-D ones with reshape: a view)."""
    for j in range(param.shape[0]):
        param[j] -= lr * grad[j]


# --------------------------------------------------------------------------
# Raw kernels (unchecked)
# --------------------------------------------------------------------------

@njit(parallel=True, cache=True)
def _affine_forward(x, W, b, out, relu):
    B, D = x.shape
    by_columns, nb = product_split(B, D, W.shape[1])
    one_zero = np.zeros(2, x.dtype)
    one_zero[0] = 1
    for k in prange(nb):
        _affine_block(x, W, b, out, one_zero, by_columns, nb, k, relu)
    return out


@njit(parallel=True, cache=True)  # see "Caching" in the module docstring
def affine_relu_forward_unchecked(x, W, b, out):
    """out = max(x @ W + b, 0). x (B,D), W (D,H), b (H,), out (B,H). Unchecked."""
    return _affine_forward(x, W, b, out, True)


@njit(parallel=True, cache=True)  # see "Caching" in the module docstring
def affine_forward_unchecked(x, W, b, out):
    """out = x @ W + b. x (B,D), W (D,H), b (H,), out (B,H). Unchecked."""
    return _affine_forward(x, W, b, out, False)


@njit(parallel=True, cache=True)
def softmax_cross_entropy_unchecked(z, t, dz):
    """Mean cross-entropy of logits z (B,C) against labels t (B,); writes dz. Unchecked.

    loss = -(1/B) sum_i log softmax(z_i)[t_i], by log-sum-exp with the row max
    subtracted; dz = (softmax(z) - onehot(t)) / B. Returns the loss as float64.
    """
    B = z.shape[0]
    inv_batch = 1.0 / B
    row_loss = np.empty(B)
    for i in prange(B):
        row_loss[i] = _softmax_ce_row(z, t, dz, i, inv_batch)
    loss = 0.0
    for i in range(B):  # fixed order, so the loss does not depend on the thread count
        loss += row_loss[i]
    return loss * inv_batch


@njit(parallel=True, cache=True)
def affine_relu_backward_unchecked(dout, h, W, dW, db, dh):
    """Backward through ``out = h @ W + b`` where h = relu(.) came from the layer below. Unchecked.

    dout (B,C) upstream gradient, h (B,H) the layer's input (a ReLU output),
    W (H,C). Writes dW = h.T @ dout (H,C), db = sum_rows(dout) (C,) and
    dh = (dout @ W.T) * [h > 0] (B,H): the gradient at the ReLU's *input*.
    """
    B, C = dout.shape
    H = W.shape[0]
    one_zero = np.zeros(2, dout.dtype)
    one_zero[0] = 1
    nb = num_blocks(B)
    for k in prange(nb):
        r0, r1 = block_bounds(B, nb, k)
        _relu_input_grad_rows(dout, W, h, dh, r0, r1, one_zero)
    gemm(T, N, H, C, B, one_zero, h, H, dout, C, dW, C)
    _column_sums(dout, db, np.empty(db.shape[0]))
    return dW, db, dh


@njit(parallel=True, cache=True)
def affine_backward_params_unchecked(x, dout, dW, db):
    """Parameter gradients of ``out = x @ W + b`` with no input gradient (the first layer). Unchecked.

    x (B,D) the layer input, dout (B,H) the upstream gradient. Writes
    dW = x.T @ dout (D,H) and db = sum_rows(dout) (H,). Each block of dW is
    one BLAS call reading x and dout in place.
    """
    B, D = x.shape
    by_columns, nb = product_split(D, B, dout.shape[1])
    one_zero = np.zeros(2, x.dtype)
    one_zero[0] = 1
    for k in prange(nb):
        _weight_grad_block(x, dout, one_zero, dW, by_columns, nb, k)
    _column_sums(dout, db, np.empty(db.shape[0]))
    return dW, db


@njit(parallel=True, cache=True)
def sgd_update_unchecked(param, grad, lr):
    """param -= lr * grad, in place, for 1-D or 2-D arrays of one shape. Unchecked."""
    flat_p = param.reshape(param.size)
    flat_g = grad.reshape(grad.size)
    n = flat_p.size
    nb = num_blocks(n)
    for k in prange(nb):
        r0, r1 = block_bounds(n, nb, k)
        _sgd_vector(flat_p[r0:r1], flat_g[r0:r1], lr)
    return param


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


ROWS_PER_PASS = 512  # rows a forward block takes through both layers at a time (see forward_unchecked)


@njit(cache=True)
def _forward_pass(x, params, hid, z, one_zero):
    """z = relu(x W1 + b1) W2 + b2 for a few rows, serially (one_zero[0:2] = (1, 0)).

    hid (rows, H) is scratch: it holds the hidden activations *transposed*,
    (H, rows), because BLAS runs faster with the rows as its long dimension
    (measured with MKL at hidden 50: 171-225 vs 148-205 GFLOP/s).
    """
    W1, b1, W2, b2 = params
    n, D = x.shape
    H, C = W2.shape
    if n == 0:
        return
    hid_t = hid.reshape(H, n)
    gemm(T, T, H, n, D, one_zero, W1, H, x, D, hid_t, n)
    for h in range(H):
        for i in range(n):
            v = hid_t[h, i] + b1[h]
            hid_t[h, i] = v
            if v < 0:  # not "v > 0 else 0": NaN must stay NaN
                hid_t[h, i] = 0
    gemm(T, N, n, C, H, one_zero, hid_t, n, W2, C, z, C)
    for i in range(n):
        for c in range(C):
            z[i, c] += b2[c]


@njit(cache=True)
def _forward_rows(x, params, hid, z, one_zero, r0, r1):
    """z[r0:r1] for rows r0:r1 of x, ROWS_PER_PASS rows at a time (``_forward_pass``)."""
    for s in range(r0, r1, ROWS_PER_PASS):
        e = min(s + ROWS_PER_PASS, r1)
        _forward_pass(x[s:e], params, hid[s:e], z[s:e], one_zero)


@njit(parallel=True, cache=True)
def forward_unchecked(x, params, hid, z):
    """Logits of the whole network, z = relu(x W1 + b1) W2 + b2. Unchecked.

    params = (W1, b1, W2, b2); x (B,D), hid (B,H) scratch, z (B,C). When
    layer 1 splits by rows (B >= H), each row block goes through both layers
    ROWS_PER_PASS rows at a time (``_forward_pass``), so layer 2 reads hidden
    rows still in cache (measured: accuracy on the 60,000 MNIST training
    images 41 ms instead of 48 ms at H=50; 34-36 ms once the passes kept the
    hidden activations transposed).
    """
    W1, b1, W2, b2 = params
    B, D = x.shape
    one_zero = np.zeros(2, x.dtype)
    one_zero[0] = 1
    by_columns, nb = product_split(B, D, W1.shape[1])
    if by_columns:
        for k in prange(nb):
            _affine_block(x, W1, b1, hid, one_zero, True, nb, k, True)
        nr = num_blocks(B, B * W2.shape[0] * W2.shape[1])
        for k in prange(nr):
            _affine_block(hid, W2, b2, z, one_zero, False, nr, k, False)
    else:
        for k in prange(nb):
            r0, r1 = block_bounds(B, nb, k)
            _forward_rows(x, params, hid, z, one_zero, r0, r1)
    return z


@njit(cache=True)
def _count_correct(z, t):
    """How many rows' first largest logit is at t (as np.argmax); -1 if a logit is not finite."""
    count = 0
    bad = False
    for i in range(z.shape[0]):
        best = 0
        for j in range(z.shape[1]):
            bad |= z[i, j] - z[i, j] != 0
            if z[i, j] > z[i, best]:
                best = j
        count += best == t[i]
    return -1 if bad else count


@njit(parallel=True, cache=True)
def correct_count_unchecked(x, t, params, hid, z):
    """How many rows of x the network classifies as t; -1 if a logit is not finite. Unchecked.

    The forward pass of ``forward_unchecked`` (same buffers), then a comparison
    of the largest logit: by each row block right after its forward pass, while
    its logits are in cache, when layer 1 splits by rows (measured 3-5 % faster
    accuracy on MNIST than counting afterwards in one thread).
    """
    W1 = params[0]
    B, D = x.shape
    by_columns, nb = product_split(B, D, W1.shape[1])
    if by_columns:
        return _count_correct(forward_unchecked(x, params, hid, z), t)
    one_zero = np.zeros(2, x.dtype)
    one_zero[0] = 1
    counts = np.empty(nb, np.int64)
    for k in prange(nb):
        r0, r1 = block_bounds(B, nb, k)
        _forward_rows(x, params, hid, z, one_zero, r0, r1)
        counts[k] = _count_correct(z[r0:r1], t[r0:r1])
    return -1 if (counts < 0).any() else counts.sum()


MAX_PARTS = BLOCKS  # row blocks of the layer-2 region, at most
# Next-batch bytes a block prefetches at most, a fraction of a core's L2 (2 MB here): 39 KB of
# MNIST codes per block at batch 100 made steps 3-4 % faster (paired medians); 157 KB of MNIST
# floats at batch 100 gained nothing; 392 KB of codes at batch 1000 made steps 2-5 % slower
# (the prefetched rows evict what the W1 update is using).
PREFETCH_BYTES = 1 << 17


@njit(cache=True)
def _layer2_rows(hid, W2, b2, z, t, dz, dhid, row_loss, parts, col_parts, alpha_beta, inv_batch, nb, k):
    """Row block k: z = hid W2 + b2, the softmax-CE row losses and dz, dhid = (dz W2ᵀ)⊙[hid>0];
    and, while these rows are in cache, the block's share of the layer-2 weight gradient,
    parts[k] = hid[r0:r1]ᵀ dz[r0:r1], and of the bias gradients, col_parts[k] = column sums
    of dhid and dz over its rows (float64). alpha_beta[0:2] must hold (1, 0)."""
    B, H = hid.shape
    C = dz.shape[1]
    r0, r1 = block_bounds(B, nb, k)
    _affine_block(hid, W2, b2, z, alpha_beta, False, nb, k, False)
    for i in range(r0, r1):
        row_loss[i] = _softmax_ce_row(z, t, dz, i, inv_batch)
    _relu_input_grad_rows(dz, W2, hid, dhid, r0, r1, alpha_beta)
    if r1 > r0:
        gemm(T, N, H, C, r1 - r0, alpha_beta, hid[r0:], H, dz[r0:], C, parts[k], C)
    else:
        parts[k][:, :] = 0
    for j in range(H + C):
        col_parts[k, j] = 0.0
    for i in range(r0, r1):
        for j in range(H):
            col_parts[k, j] += dhid[i, j]
        for j in range(C):
            col_parts[k, H + j] += dz[i, j]


@njit(cache=True)
def _sum_parts(parts, col_parts, nparts, dW2, db1, db2):
    """dW2, db1, db2 from the row blocks' shares, summed in block order (float64)."""
    H, C = dW2.shape
    for h in range(H):
        for c in range(C):
            s = 0.0
            for k in range(nparts):
                s += parts[k, h, c]
            dW2[h, c] = s
    for j in range(H + C):
        s = 0.0
        for k in range(nparts):
            s += col_parts[k, j]
        if j < H:
            db1[j] = s
        else:
            db2[j - H] = s


@njit(cache=True)
def _prefetch_block(X, rows, nb, k):
    """Prefetch the rows of X that block k of nb will gather from ``rows``, if they fit PREFETCH_BYTES."""
    r0, r1 = block_bounds(rows.shape[0], nb, k)
    if (r1 - r0) * X.shape[1] * X.itemsize <= PREFETCH_BYTES:
        for i in range(r0, r1):
            prefetch_row(X, rows[i])


@njit(parallel=True, cache=True)
def train_step_unchecked(X, T, idx, params, grads, work, lr, x_divisor=1.0, next_idx=None):
    """One minibatch step on rows ``idx`` of (X, T); returns the loss before the update. Unchecked.

    X is float (the net's dtype), or uint8 pixel codes that the step reads as
    code / x_divisor in the net's dtype (a quarter of the memory traffic of the
    gather; ``fastnet.train`` uses it when the codes give back the float data
    bit for bit). x_divisor is ignored for a float X.

    params = (W1, b1, W2, b2) are updated in place by ``-= lr * grad`` unless
    lr == 0 (gradients only: then grads = (dW1, db1, dW2, db2) receive all
    gradients) or the loss is not finite (then nothing is updated, so the
    weights stay the last finite ones). When updating, dW1 is never stored: the
    update is fused into the BLAS call (W1 := W1 - lr * xbᵀ dhid).
    work = (xb, tb, hid, z, dz, dhid, row_loss, row_check, alpha_beta, parts, col_parts)
    are scratch buffers for B = len(idx) rows (see ``fastnet.net.Workspace``).
    Two parallel regions when layer 1 splits by rows (B >= H): gather, both
    layers, softmax-CE and the hidden gradient, row block by row block; then W1
    by blocks. Four when it splits by columns: gather; layer 1; the per-row
    rest; W1. The layer-2 weight gradient and both bias gradients are summed
    per row block inside the per-row region (the rows are in cache there) and
    then over the blocks, in block order.

    next_idx, if given, are the rows the next step will gather: the W1 region
    asks the cache for them (``prefetch_row``) while BLAS updates W1, each
    block for its share (the rows it gathers next, when both loops have the
    same number of blocks), if they fit in PREFETCH_BYTES.
    A hint only: results do not depend on it. (``train_steps_unchecked``
    passes the next batch.)
    """
    W1, b1, W2, b2 = params
    dW1, db1, dW2, db2 = grads
    xb, tb, hid, z, dz, dhid, row_loss, row_check, alpha_beta, parts, col_parts = work
    B = idx.shape[0]
    D = X.shape[1]
    inv_batch = 1.0 / B

    alpha_beta[0] = 1  # (1, 0): plain products
    alpha_beta[1] = 0
    by_columns, nb = product_split(B, D, W1.shape[1])
    if not by_columns:
        # Layer 1 splits by rows: then everything up to the weight gradients is
        # row-local, and one region does it, each block on its own rows.
        for k in prange(nb):
            r0, r1 = block_bounds(B, nb, k)
            _gather_rows(X, T, idx, xb, tb, row_check, r0, r1, x_divisor)
            _affine_block(xb, W1, b1, hid, alpha_beta, False, nb, k, True)
            _layer2_rows(hid, W2, b2, z, tb, dz, dhid, row_loss, parts, col_parts, alpha_beta, inv_batch, nb, k)
        nparts = nb
    else:
        gather_unchecked(X, T, idx, xb, tb, row_check, x_divisor)
        for k in prange(nb):
            _affine_block(xb, W1, b1, hid, alpha_beta, True, nb, k, True)
        nr = num_blocks(B)
        for k in prange(nr):
            _layer2_rows(hid, W2, b2, z, tb, dz, dhid, row_loss, parts, col_parts, alpha_beta, inv_batch, nr, k)
        nparts = nr
    for i in range(B):
        if row_check[i] != 0.0:
            raise ValueError("train_step: x has NaN or infinity in row", idx[i])

    loss = 0.0
    for i in range(B):  # fixed order: the loss does not depend on the thread count
        loss += row_loss[i]
    loss *= inv_batch
    if lr != 0 and not np.isfinite(loss):
        return loss  # diverged: leave the weights as they were, the last finite ones

    if lr != 0:  # W1 := W1 - lr * xbᵀ dhid, in the BLAS call
        alpha_beta[2] = -lr
        alpha_beta[3] = 1
        target = W1
    else:        # dW1 := xbᵀ dhid
        alpha_beta[2] = 1
        alpha_beta[3] = 0
        target = dW1
    by_columns, nd = product_split(D, B, W1.shape[1])
    for k in prange(nd):
        if next_idx is not None:
            _prefetch_block(X, next_idx, nd, k)
        _weight_grad_block(xb, dhid, alpha_beta[2:], target, by_columns, nd, k)

    _sum_parts(parts, col_parts, nparts, dW2, db1, db2)
    if lr != 0:
        _sgd_vector(W2.reshape(W2.size), dW2.reshape(dW2.size), lr)
        _sgd_vector(b2, db2, lr)
        _sgd_vector(b1, db1, lr)
    return loss


# --------------------------------------------------------------------------
# Checked entry points: the same kernels behind argument checks.
# Each has three parts: the Python function (kind checks in Python), its
# overload for @njit callers (kind checks at typing time: a bad kind compiles
# to a ``raise TypeError``), and one compiled ``_checked_*`` function both
# paths call (value checks, then the raw kernel).
# --------------------------------------------------------------------------

_AFFINE_SPEC = [("x", 2, IN), ("W", 2, IN), ("b", 1, IN), ("out", 2, OUT)]


@njit(cache=True)
def _check_affine(func, x, W, b, out):
    require(x.shape[0] > 0 and x.shape[1] > 0 and W.shape[1] > 0, func, ": arrays must not be empty")
    require(W.shape[0] == x.shape[1], func, ": argument 'W' must have x.shape[1] rows (x is (B, D), W is (D, H))")
    require(b.shape[0] == W.shape[1], func, ": argument 'b' must have W.shape[1] entries")
    require(out.shape[0] == x.shape[0] and out.shape[1] == W.shape[1], func,
            ": argument 'out' must have shape (x.shape[0], W.shape[1])")
    require_disjoint(func, (span(out),), (span(x), span(W), span(b)))
    require_finite(func, "argument 'x'", x)
    require_finite(func, "argument 'W'", W)
    require_finite(func, "argument 'b'", b)


@njit(parallel=True, cache=True)  # see "Caching" in the module docstring
def _checked_affine_relu_forward(x, W, b, out):
    _check_affine("affine_relu_forward", x, W, b, out)
    return affine_relu_forward_unchecked(x, W, b, out)


@njit(parallel=True, cache=True)  # see "Caching" in the module docstring
def _checked_affine_forward(x, W, b, out):
    _check_affine("affine_forward", x, W, b, out)
    return affine_forward_unchecked(x, W, b, out)


def affine_relu_forward(x, W, b, out):
    """out[:] = max(x @ W + b, 0); returns ``out``.

    x (B,D), W (D,H), b (H,), out (B,H), all float32 or all float64. Checked.
    """
    x, W, b, out = python_args("affine_relu_forward", _AFFINE_SPEC, (x, W, b, out))
    return _checked_affine_relu_forward(x, W, b, out)


def affine_forward(x, W, b, out):
    """out[:] = x @ W + b; returns ``out``. Shapes as ``affine_relu_forward``. Checked."""
    x, W, b, out = python_args("affine_forward", _AFFINE_SPEC, (x, W, b, out))
    return _checked_affine_forward(x, W, b, out)


@overload(affine_relu_forward)
def _overload_affine_relu_forward(x, W, b, out):
    problem = typing_problem("affine_relu_forward", _AFFINE_SPEC, (x, W, b, out))
    if problem:
        def raise_type_error(x, W, b, out):
            raise TypeError(problem)
        return raise_type_error
    return lambda x, W, b, out: _checked_affine_relu_forward(x, W, b, out)


@overload(affine_forward)
def _overload_affine_forward(x, W, b, out):
    problem = typing_problem("affine_forward", _AFFINE_SPEC, (x, W, b, out))
    if problem:
        def raise_type_error(x, W, b, out):
            raise TypeError(problem)
        return raise_type_error
    return lambda x, W, b, out: _checked_affine_forward(x, W, b, out)


_SOFTMAX_SPEC = [("z", 2, IN), ("t", 1, LABELS), ("dz", 2, OUT)]


@njit(parallel=True, cache=True)  # see "Caching" in the module docstring
def _checked_softmax_cross_entropy(z, t, dz):
    func = "softmax_cross_entropy"
    require(z.shape[0] > 0 and z.shape[1] > 0, func, ": argument 'z' must not be empty")
    require(t.shape[0] == z.shape[0], func, ": argument 't' must have one label per row of z")
    require(dz.shape[0] == z.shape[0] and dz.shape[1] == z.shape[1], func, ": argument 'dz' must have the shape of z")
    require_labels(func, t, z.shape[1])
    require_finite(func, "argument 'z'", z)
    require_disjoint(func, (span(dz),), (span(z), span(t)))
    return softmax_cross_entropy_unchecked(z, t, dz)


def softmax_cross_entropy(z, t, dz):
    """Mean cross-entropy loss of logits z (B,C) against integer labels t (B,); writes dz.

    loss = -(1/B) sum_i log softmax(z_i)[t_i] (stable: row max subtracted,
    log-sum-exp), returned as a float; dz[:] = (softmax(z) - onehot(t)) / B in
    the same pass. Labels must lie in [0, C). Checked.
    """
    z, t, dz = python_args("softmax_cross_entropy", _SOFTMAX_SPEC, (z, t, dz))
    return _checked_softmax_cross_entropy(z, t, dz)


@overload(softmax_cross_entropy)
def _overload_softmax_cross_entropy(z, t, dz):
    problem = typing_problem("softmax_cross_entropy", _SOFTMAX_SPEC, (z, t, dz))
    if problem:
        def raise_type_error(z, t, dz):
            raise TypeError(problem)
        return raise_type_error
    return lambda z, t, dz: _checked_softmax_cross_entropy(z, t, dz)


_RELU_BACKWARD_SPEC = [("dout", 2, IN), ("h", 2, IN), ("W", 2, IN),
                       ("dW", 2, OUT), ("db", 1, OUT), ("dh", 2, OUT)]


@njit(parallel=True, cache=True)  # see "Caching" in the module docstring
def _checked_affine_relu_backward(dout, h, W, dW, db, dh):
    func = "affine_relu_backward"
    B, C = dout.shape
    H = h.shape[1]
    require(B > 0 and C > 0 and H > 0, func, ": arrays must not be empty")
    require(h.shape[0] == B, func, ": argument 'h' must have as many rows as 'dout'")
    require(W.shape[0] == H and W.shape[1] == C, func, ": argument 'W' must have shape (h.shape[1], dout.shape[1])")
    require(dW.shape[0] == H and dW.shape[1] == C, func, ": argument 'dW' must have the shape of W")
    require(db.shape[0] == C, func, ": argument 'db' must have dout.shape[1] entries")
    require(dh.shape[0] == B and dh.shape[1] == H, func, ": argument 'dh' must have the shape of h")
    require_disjoint(func, (span(dW), span(db), span(dh)), (span(dout), span(h), span(W)))
    require_finite(func, "argument 'dout'", dout)
    require_finite(func, "argument 'h'", h)
    require_finite(func, "argument 'W'", W)
    return affine_relu_backward_unchecked(dout, h, W, dW, db, dh)


def affine_relu_backward(dout, h, W, dW, db, dh):
    """Backward of ``out = h @ W + b`` whose input h came out of a ReLU; returns (dW, db, dh).

    dout (B,C), h (B,H), W (H,C) in; dW (H,C) = h.T @ dout, db (C,) = column sums
    of dout, dh (B,H) = (dout @ W.T) * [h > 0] out (the gradient at the ReLU's
    input: the mask is fused). Checked.
    """
    args = python_args("affine_relu_backward", _RELU_BACKWARD_SPEC, (dout, h, W, dW, db, dh))
    return _checked_affine_relu_backward(*args)


@overload(affine_relu_backward)
def _overload_affine_relu_backward(dout, h, W, dW, db, dh):
    problem = typing_problem("affine_relu_backward", _RELU_BACKWARD_SPEC, (dout, h, W, dW, db, dh))
    if problem:
        def raise_type_error(dout, h, W, dW, db, dh):
            raise TypeError(problem)
        return raise_type_error
    return lambda dout, h, W, dW, db, dh: _checked_affine_relu_backward(dout, h, W, dW, db, dh)


_PARAMS_BACKWARD_SPEC = [("x", 2, IN), ("dout", 2, IN), ("dW", 2, OUT), ("db", 1, OUT)]


@njit(parallel=True, cache=True)  # see "Caching" in the module docstring
def _checked_affine_backward_params(x, dout, dW, db):
    func = "affine_backward_params"
    B, D = x.shape
    H = dout.shape[1]
    require(D > 0 and B > 0 and H > 0, func, ": arrays must not be empty")
    require(dout.shape[0] == B, func, ": argument 'dout' must have as many rows as 'x'")
    require(dW.shape[0] == D and dW.shape[1] == H, func, ": argument 'dW' must have shape (x.shape[1], dout.shape[1])")
    require(db.shape[0] == H, func, ": argument 'db' must have dout.shape[1] entries")
    require_disjoint(func, (span(dW), span(db)), (span(x), span(dout)))
    require_finite(func, "argument 'x'", x)
    require_finite(func, "argument 'dout'", dout)
    return affine_backward_params_unchecked(x, dout, dW, db)


def affine_backward_params(x, dout, dW, db):
    """Parameter gradients of the first layer (no input gradient); returns (dW, db).

    x (B,D) the layer input, dout (B,H) the upstream gradient; writes
    dW (D,H) = x.T @ dout and db (H,) = column sums of dout. Checked.
    """
    args = python_args("affine_backward_params", _PARAMS_BACKWARD_SPEC, (x, dout, dW, db))
    return _checked_affine_backward_params(*args)


@overload(affine_backward_params)
def _overload_affine_backward_params(x, dout, dW, db):
    problem = typing_problem("affine_backward_params", _PARAMS_BACKWARD_SPEC, (x, dout, dW, db))
    if problem:
        def raise_type_error(x, dout, dW, db):
            raise TypeError(problem)
        return raise_type_error
    return lambda x, dout, dW, db: _checked_affine_backward_params(x, dout, dW, db)


_SGD_SPEC = [("param", None, OUT), ("grad", None, IN)]


@njit(parallel=True, cache=True)  # see "Caching" in the module docstring
def _checked_sgd_update(param, grad, lr):
    func = "sgd_update"
    require(param.shape == grad.shape, func, ": argument 'grad' must have the shape of 'param'")
    require(np.isfinite(lr), func, ": argument 'lr' must be finite")
    require_disjoint(func, (span(param),), (span(grad),))
    require_finite(func, "argument 'param'", param)
    require_finite(func, "argument 'grad'", grad)
    return sgd_update_unchecked(param, grad, lr)


def sgd_update(param, grad, lr):
    """param -= lr * grad in place (1-D or 2-D, same shape and dtype); returns ``param``. Checked."""
    param, grad = python_args("sgd_update", _SGD_SPEC, (param, grad))
    if isinstance(lr, bool) or not isinstance(lr, (int, float, np.integer, np.floating)):
        raise TypeError(f"sgd_update: argument 'lr' must be a real number, not {type(lr).__name__}")
    return _checked_sgd_update(param, grad, float(lr))


@overload(sgd_update)
def _overload_sgd_update(param, grad, lr):
    problem = typing_problem("sgd_update", _SGD_SPEC, (param, grad))
    if problem is None and not isinstance(lr, (types.Float, types.Integer)):
        problem = f"sgd_update: argument 'lr' must be a real number, not {lr}"
    if problem:
        def raise_type_error(param, grad, lr):
            raise TypeError(problem)
        return raise_type_error
    return lambda param, grad, lr: _checked_sgd_update(param, grad, lr)


@njit(cache=True)
def _check_batches(func, X, T, batches, params, work, lr, x_divisor):
    """What ``train_step`` and ``train_steps`` take from the caller: data, lr, and the indices
    and labels of every batch (the rows of ``batches``), all before the first step."""
    W1, b1, W2, b2 = params
    require(np.isfinite(x_divisor) and x_divisor > 0, func, ": x_divisor must be finite and positive")
    require(X.shape[1] == W1.shape[0], func, ": x must have input_size columns")
    require(T.shape[0] == X.shape[0], func, ": t must have one label per row of x")
    require(batches.shape[1] == work[0].shape[0], func, ": the batch does not match the workspace")
    require(np.isfinite(lr), func, ": lr must be finite")
    for s in range(batches.shape[0]):
        for i in range(batches.shape[1]):
            row = batches[s, i]
            if row < 0 or row >= X.shape[0]:
                raise ValueError(func + ": a batch index lies outside [0, len(x)); (position, index) =", i, row)
            if T[row] < 0 or T[row] >= W2.shape[1]:
                raise ValueError(func + ": labels must lie in [0, C), C = number of classes; (row, label, C) =",
                                 row, T[row], W2.shape[1])


@njit(parallel=True, cache=True)  # see "Caching" in the module docstring
def train_step(X, T, idx, params, grads, work, lr, x_divisor=1.0):
    """``train_step_unchecked`` behind checks of the data, indices and labels.

    The buffers (params, grads, work) are ``TwoLayerNet``'s own, sized by it;
    what comes from the caller (X, T, idx, lr) is checked here.
    """
    _check_batches("train_step", X, T, idx.reshape(1, idx.size), params, work, lr, x_divisor)
    return train_step_unchecked(X, T, idx, params, grads, work, lr, x_divisor)


@njit(parallel=True, cache=True)
def train_steps_unchecked(X, T, batches, params, grads, work, lr, losses, x_divisor=1.0):
    """``train_step_unchecked`` on batches[0], batches[1], ... in turn; losses[s] = step s's loss.

    One call for many steps: the training loop's path, with no return to
    Python between steps. Stops after a step whose loss is not finite (that
    step leaves the weights untouched). Returns the number of steps taken.
    """
    n = batches.shape[0]
    for s in range(n):
        next_idx = batches[s + 1] if s + 1 < n else batches[s][:0]
        losses[s] = train_step_unchecked(X, T, batches[s], params, grads, work, lr, x_divisor, next_idx)
        if not np.isfinite(losses[s]):
            return s + 1
    return n


@njit(parallel=True, cache=True)  # see "Caching" in the module docstring
def train_steps(X, T, batches, params, grads, work, lr, losses, x_divisor=1.0):
    """``train_steps_unchecked`` behind the checks of ``train_step``, for every batch, done first."""
    require(losses.shape[0] >= batches.shape[0], "train_steps", ": losses needs one entry per batch")
    _check_batches("train_steps", X, T, batches, params, work, lr, x_divisor)
    return train_steps_unchecked(X, T, batches, params, grads, work, lr, losses, x_divisor)
