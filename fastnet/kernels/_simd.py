"""The direct convolution's micro-kernel, written in LLVM's vector instructions: ``conv_tile``.

A stride-1 convolution on a zero-padded image held as planes of Wp columns reads, for filter tap
(fy, fx), every output pixel's input at one fixed offset fy·Wp + fx (``conv.py``'s "wide" output:
OH rows of Wp pixels, the last Wp − OW of each discarded). So a run of consecutive wide pixels of
one filter is a sum, over channels and taps, of a weight times a run of consecutive inputs: one
vector load and one fused multiply-add per (channel, tap) and vector (the offset is fy·Wp + fx·column:
``column`` is 1 there, a copy's size on ``conv.shift_image``'s shifted copies). ``conv_tile`` keeps a tile
of ``filters`` × PIXEL_VECTORS such sums in registers for the whole sum, so each loaded input vector
serves every filter of the tile and each broadcast weight every vector: the register-tiled direct
convolution that inference engines run, without BLAS's repacking of the image for every tap.

Numba cannot be asked for those registers from Python-level loops (it keeps a small array's values
in memory, and its loops vectorize over one axis at best), so the tile is emitted as LLVM IR: the
accumulators are stack slots that LLVM promotes to vector registers (checked in the tests by the
result, and by hand with ``inspect_asm``: 16 ``vfmadd231ps`` on zmm registers, no spills, per
channel and tap on AVX-512).

``weight_tile`` is the same idea turned around for the weight gradient: the sum runs over pixels,
not over channels and taps, so a tile holds filters × (channel, tap) vectors of partial sums over
a run of pixels, and adds each vector's lanes once at the end.

``winograd_input_row``, ``winograd_output_row`` and ``winograd_gradient_row`` are Winograd's
transforms (``conv.py``) for a row of 2×2 output tiles, a vector of tiles at a time: the patches'
strided columns are pulled apart by shuffles, which Numba's loops do not vectorize.
"""

import llvmlite.binding as llvm
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils, config
from numba.extending import intrinsic


def _compiles_for_avx512():
    """Whether Numba compiles for a CPU with AVX-512: the host's features, or those it was told to
    compile for (NUMBA_CPU_FEATURES, with NUMBA_CPU_NAME: e.g. ``haswell`` and
    ``+avx,+avx2,+fma,+f16c,+popcnt,+sse4.2`` run the AVX2 tiles on an AVX-512 machine), as Numba
    itself chooses them."""
    if config.CPU_FEATURES is not None:
        return "+avx512f" in config.CPU_FEATURES.split(",")
    return bool(llvm.get_host_cpu_features().get("avx512f", False))


# AVX-512 has 32 vector registers of 64 bytes; AVX2 16 of 32: the tile is sized to fit them with
# room for the loaded inputs and the broadcast weight.
_AVX512 = _compiles_for_avx512()
VECTOR_BYTES = 64 if _AVX512 else 32
FILTERS_PER_TILE = 8 if _AVX512 else 6
PIXEL_VECTORS = 2  # vectors of consecutive wide pixels per tile
TILE_SLACK = PIXEL_VECTORS * VECTOR_BYTES // 4  # the most pixels (float32) one tile reads or writes past a row's end


@njit(cache=True)
def tile_pixels(itemsize):
    """Wide pixels one tile covers, for values of ``itemsize`` bytes."""
    return PIXEL_VECTORS * (VECTOR_BYTES // itemsize)


# what a tile does to its sums before storing them (a literal argument of ``conv_tile``)
SUMS, PLUS_BIAS, PLUS_BIAS_RELU = 0, 1, 2


@intrinsic(prefer_literal=True)
def conv_tile(typingctx, x, x_off, w, w_off, out, out_off, out_stride, C, plane, FH, FW, Wp, column, filters, vectors,
              bias, f0, epilogue):  # fmt: skip
    """out[out_off + f·out_stride + p] = Σ_{c < C, fy < FH, fx < FW}
    w[w_off + ((c·FH + fy)·FW + fx)·filters + f] · x[x_off + c·plane + fy·Wp + fx·column + p]
    (+ bias[f0 + f] for ``epilogue`` PLUS_BIAS, and then ReLU'd for PLUS_BIAS_RELU: values below
    zero become zero, NaN stays NaN; bias is not read for SUMS) for f < ``filters`` (a literal) and
    p < ``vectors`` vectors of pixels (``tile_pixels`` for PIXEL_VECTORS; compiled code only;
    unchecked: every index read or written must lie inside its array). x, w, out, bias: flat
    arrays of one float dtype. ``filters`` and ``vectors``: literals.

    The epilogue is a value (a select per stored vector), not a literal: one compiled tile per
    filter count, not one per count and epilogue."""
    if not isinstance(filters, types.IntegerLiteral) or not isinstance(vectors, types.IntegerLiteral):
        return None
    signature = types.void(x, x_off, w, w_off, out, out_off, out_stride, C, plane, FH, FW, Wp, column, filters, vectors,
                           bias, f0, epilogue)  # fmt: skip

    def codegen(context, builder, sig, args):
        as_i64 = [context.cast(builder, v, t, types.int64) if isinstance(t, types.Integer) else v
                  for v, t in zip(args, sig.args)]  # fmt: skip
        _, x_off, _, w_off, _, out_off, out_stride, C, plane, FH, FW, Wp, column, _, _, _, f0, epilogue = as_i64
        dtype = sig.args[0].dtype
        lanes = VECTOR_BYTES // context.get_abi_sizeof(context.get_data_type(dtype))
        scalar = context.get_data_type(dtype)
        vector = ir.VectorType(scalar, lanes)
        i32, i64 = ir.IntType(32), ir.IntType(64)
        nf, nv = sig.args[13].literal_value, sig.args[14].literal_value

        def data(position):
            return context.make_array(sig.args[position])(context, builder, args[position]).data

        def vector_at(base, index):
            return builder.bitcast(builder.gep(base, [index]), vector.as_pointer())

        xs, ws, outs, biases = data(0), data(2), data(4), data(15)
        fma, zero, acc = _fma_and_sums(builder, vector, dtype, nf, nv)
        splat = ir.Constant(ir.VectorType(i32, lanes), [0] * lanes)
        undef = ir.Constant(vector, ir.Undefined)
        with cgutils.for_range(builder, C) as channel:
            x_c = builder.add(x_off, builder.mul(channel.index, plane))
            w_c = builder.add(w_off, builder.mul(channel.index, builder.mul(builder.mul(FH, FW), ir.Constant(i64, nf))))
            with cgutils.for_range(builder, FH) as row:
                x_r = builder.add(x_c, builder.mul(row.index, Wp))
                w_r = builder.add(w_c, builder.mul(row.index, builder.mul(FW, ir.Constant(i64, nf))))
                x_slot = cgutils.alloca_once_value(builder, x_r)  # tap fx's input, stepped by ``column``: no product
                with cgutils.for_range(builder, FW) as tap:
                    x_t = builder.load(x_slot)
                    builder.store(builder.add(x_t, column), x_slot)
                    w_t = builder.add(w_r, builder.mul(tap.index, ir.Constant(i64, nf)))
                    inputs = [builder.load(vector_at(xs, builder.add(x_t, ir.Constant(i64, p * lanes))), align=4)
                              for p in range(nv)]  # fmt: skip
                    for f in range(nf):
                        weight = builder.load(builder.gep(ws, [builder.add(w_t, ir.Constant(i64, f))]))
                        weights = builder.shuffle_vector(builder.insert_element(undef, weight, ir.Constant(i32, 0)),
                                                         undef, splat)  # fmt: skip
                        for p in range(nv):
                            builder.store(builder.call(fma, [inputs[p], weights, builder.load(acc[f][p])]), acc[f][p])
        with_bias = builder.icmp_signed("!=", epilogue, ir.Constant(i64, SUMS))
        with_relu = builder.icmp_signed("==", epilogue, ir.Constant(i64, PLUS_BIAS_RELU))
        for f in range(nf):
            out_f = builder.add(out_off, builder.mul(ir.Constant(i64, f), out_stride))
            bias_slot = cgutils.alloca_once_value(builder, ir.Constant(scalar, 0))
            with builder.if_then(with_bias):
                builder.store(builder.load(builder.gep(biases, [builder.add(f0, ir.Constant(i64, f))])), bias_slot)
            bias = builder.load(bias_slot)
            bias = builder.shuffle_vector(builder.insert_element(undef, bias, ir.Constant(i32, 0)), undef, splat)
            for p in range(nv):
                value = builder.fadd(builder.load(acc[f][p]), bias)  # + 0 for SUMS: the sums unchanged
                relu = builder.select(builder.fcmp_ordered("<", value, zero), zero, value)  # NaN is not below zero
                value = builder.select(with_relu, relu, value)
                target = vector_at(outs, builder.add(out_f, ir.Constant(i64, p * lanes)))
                builder.store(value, target, align=4)
        return context.get_dummy_value()

    return signature, codegen


# the weight gradient's tile: filters × (channel, tap) columns of sums held in vector registers,
# with room for the filters' loaded gradient vectors and one input vector
WEIGHT_TILE_FILTERS = 4 if _AVX512 else 3
WEIGHT_TILE_COLUMNS = 6 if _AVX512 else 4


@intrinsic(prefer_literal=True)
def weight_tile(typingctx, g, g_off, g_plane, FN, f0, x, x_off, C, plane, FH, FW, Wp, column, j0, vectors, images,
                g_image, x_image, part, first, filters, columns):  # fmt: skip
    """The weight gradient of a stride-1 convolution for a tile of ``filters`` filters f0 + f and
    ``columns`` columns j0 + j (literals) of dW's C·FH·FW, column j0 + j being channel
    c = (j0 + j) // (FH·FW) at tap t = (j0 + j) % (FH·FW)::

        s[f, j] = Σ_{i < images} Σ_{p < vectors·lanes} g[gs(f) + i·g_image + p] · x[xs(j) + i·x_image + p]

    over the wide output gradient g (filter f0 + f's plane from gs(f) = g_off + (f0 + f)·g_plane on)
    and the padded input x (xs(j) = x_off + c·plane + (t // FW)·Wp + (t % FW)·column: ``column`` 1,
    or a copy's size on ``conv.shift_image``'s shifted copies, rows Wp = OW), for ``images``
    images ``g_image`` and ``x_image`` values apart; then part[(t·FN + f0 + f)·C + c] = s[f, j]
    (``first`` true) or += s[f, j], for f0 + f < FN and j0 + j < C·FH·FW only (the tile's other
    rows and columns repeat the last one and are not stored).

    Each sum is a vector of partial sums over the whole run, added up across its lanes (a fixed
    tree) only at the end: per vector of pixels, one load per filter and per column and
    filters × columns fused multiply-adds. Compiled code only; unchecked: every index read must
    lie inside its array. g, x, part: flat arrays of one float dtype; lanes: ``VECTOR_BYTES``."""
    if not isinstance(filters, types.IntegerLiteral) or not isinstance(columns, types.IntegerLiteral):
        return None
    signature = types.void(g, g_off, g_plane, FN, f0, x, x_off, C, plane, FH, FW, Wp, column, j0, vectors, images,
                           g_image, x_image, part, first, filters, columns)  # fmt: skip

    def codegen(context, builder, sig, args):
        v = [context.cast(builder, a, t, types.int64) if isinstance(t, types.Integer) else a
             for a, t in zip(args, sig.args)]  # fmt: skip
        _, g_off, g_plane, FN, f0, _, x_off, C, plane, FH, FW, Wp, column, j0, vectors, images = v[:16]
        g_image, x_image = v[16:18]
        first = context.cast(builder, args[19], sig.args[19], types.boolean)
        dtype = sig.args[0].dtype
        scalar = context.get_data_type(dtype)
        lanes = VECTOR_BYTES // context.get_abi_sizeof(scalar)
        vector = ir.VectorType(scalar, lanes)
        i32, i64 = ir.IntType(32), ir.IntType(64)
        nf, nj = sig.args[20].literal_value, sig.args[21].literal_value

        def const(value):
            return ir.Constant(i64, value)

        def smin(a, b):
            return builder.select(builder.icmp_signed("<", a, b), a, b)

        def data(position):
            return context.make_array(sig.args[position])(context, builder, args[position]).data

        gs_, xs_, parts = data(0), data(5), data(18)
        T = builder.mul(FH, FW)
        K = builder.mul(C, T)
        last_f, last_j = builder.sub(FN, const(1)), builder.sub(K, const(1))
        g_starts = [builder.add(g_off, builder.mul(smin(builder.add(f0, const(f)), last_f), g_plane))
                    for f in range(nf)]  # fmt: skip
        x_starts, targets = [], []
        for j in range(nj):
            index = smin(builder.add(j0, const(j)), last_j)
            c, t = builder.sdiv(index, T), builder.srem(index, T)
            tap = builder.add(builder.mul(builder.sdiv(t, FW), Wp), builder.mul(builder.srem(t, FW), column))
            x_starts.append(builder.add(builder.add(x_off, builder.mul(c, plane)), tap))
            targets.append((builder.mul(t, FN), c))
        fma, _, acc = _fma_and_sums(builder, vector, dtype, nf, nj)

        def vector_at(base, index):
            return builder.bitcast(builder.gep(base, [index]), vector.as_pointer())

        with cgutils.for_range(builder, images) as image:
            g_shift, x_shift = builder.mul(image.index, g_image), builder.mul(image.index, x_image)
            with cgutils.for_range(builder, vectors) as run:
                p = builder.mul(run.index, const(lanes))
                grads = [builder.load(vector_at(gs_, builder.add(builder.add(start, g_shift), p)), align=4)
                         for start in g_starts]  # fmt: skip
                for j in range(nj):
                    inputs = builder.load(vector_at(xs_, builder.add(builder.add(x_starts[j], x_shift), p)), align=4)
                    for f in range(nf):
                        builder.store(builder.call(fma, [grads[f], inputs, builder.load(acc[f][j])]), acc[f][j])
        for f in range(nf):
            for j in range(nj):
                value = builder.extract_element(_lanes_sum(builder, builder.load(acc[f][j])), ir.Constant(i32, 0))
                row, index = builder.add(f0, const(f)), builder.add(j0, const(j))
                valid = builder.and_(builder.icmp_signed("<", row, FN), builder.icmp_signed("<=", index, last_j))
                with builder.if_then(valid):
                    tFN, c = targets[j]
                    slot = builder.gep(parts, [builder.add(builder.mul(builder.add(tFN, row), C), c)])
                    old = builder.load(slot)
                    builder.store(builder.select(first, value, builder.fadd(old, value)), slot)
        return context.get_dummy_value()

    return signature, codegen


@intrinsic
def run_sum(typingctx, src, src_off, n):
    """Σ src[src_off + i] for i < n, in src's dtype: a vector of partial sums, the last vector
    masked, then added up across its lanes (a fixed tree; compiled code only; unchecked)."""
    signature = src.dtype(src, src_off, n)

    def codegen(context, builder, sig, args):
        _, src_off, n = [context.cast(builder, v, t, types.int64) if isinstance(t, types.Integer) else v
                         for v, t in zip(args, sig.args)]  # fmt: skip
        vector, load, _, lane, splat = _masked_ops(context, builder, sig.args[0].dtype)
        lanes, i32 = vector.count, ir.IntType(32)
        srcs = context.make_array(sig.args[0])(context, builder, args[0]).data
        zero = ir.Constant(vector, None)
        acc = cgutils.alloca_once_value(builder, zero)
        chunks = builder.sdiv(builder.add(n, ir.Constant(n.type, lanes - 1)), ir.Constant(n.type, lanes))
        with cgutils.for_range(builder, chunks) as chunk:
            first = builder.mul(chunk.index, ir.Constant(n.type, lanes))
            mask = builder.icmp_signed("<", lane, splat(builder.sub(n, first)))
            at = builder.bitcast(builder.gep(srcs, [builder.add(src_off, first)]), vector.as_pointer())
            value = builder.call(load, [at, ir.Constant(i32, 4), mask, zero])
            builder.store(builder.fadd(builder.load(acc), value), acc)
        return builder.extract_element(_lanes_sum(builder, builder.load(acc)), ir.Constant(i32, 0))

    return signature, codegen


def _fma_and_sums(builder, vector, dtype, rows, columns):
    """(llvm.fma for ``vector``s of ``dtype``, the zero vector, rows × columns stack slots of
    vector sums set to zero): a register tile's accumulators, which LLVM keeps in registers."""
    suffix = f"v{vector.count}{'f32' if dtype == types.float32 else 'f64'}"
    fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vector, [vector] * 3), f"llvm.fma.{suffix}")
    zero = ir.Constant(vector, None)
    sums = [[cgutils.alloca_once_value(builder, zero) for _ in range(columns)] for _ in range(rows)]
    for row in sums:
        for slot in row:
            builder.store(zero, slot)
    return fma, zero, sums


def _lanes_sum(builder, total):
    """A vector whose lane 0 is the sum of ``total``'s lanes: the upper half added onto the lower
    until one lane is left."""
    lanes, width = total.type.count, total.type.count
    while width > 1:
        width //= 2
        order = ir.Constant(ir.VectorType(ir.IntType(32), lanes), [width + k if k < width else k for k in range(lanes)])
        total = builder.fadd(total, builder.shuffle_vector(total, total, order))
    return total


@intrinsic
def pool_row(typingctx, src, top, bottom, out, out_off, n):
    """out[out_off + i] = the max of src[top + 2i], src[top + 2i + 1], src[bottom + 2i] and
    src[bottom + 2i + 1], the first largest in that order (the first NaN if one is NaN), for i < n:
    one output row of a 2×2 pool with stride 2 from input rows starting at ``top`` and ``bottom``
    (compiled code only; unchecked, but nothing past the n windows is read or written: the last
    vectors' loads and stores are masked). src, out: flat arrays of one float dtype.

    A vector of outputs at a time: two vectors of each input row loaded, their even and odd lanes
    pulled apart by shuffles, then three selects; Numba's loops over rows as short as a pool's
    (4–14 outputs) run in scalar code."""
    return types.void(src, top, bottom, out, out_off, n), _pool_row_codegen(False)


@intrinsic
def pool_row_winners(typingctx, src, top, bottom, out, winners, out_off, n):
    """``pool_row``, and winners[out_off + i] = where in src the output came from (an int64 array):
    the training pool's forward, whose winners the backward sends each gradient to."""
    return types.void(src, top, bottom, out, winners, out_off, n), _pool_row_codegen(True)


def _pool_row_codegen(with_winners):
    def codegen(context, builder, sig, args):
        values = [context.cast(builder, v, t, types.int64) if isinstance(t, types.Integer) else v
                  for v, t in zip(args, sig.args)]  # fmt: skip
        top, bottom, out_off, n = values[1], values[2], values[-2], values[-1]
        vector, load, store, _, splat64 = _masked_ops(context, builder, sig.args[0].dtype)
        lanes, i32, i64 = vector.count, ir.IntType(32), ir.IntType(64)
        srcs = context.make_array(sig.args[0])(context, builder, args[0]).data
        outs = context.make_array(sig.args[3])(context, builder, args[3]).data
        zero = ir.Constant(vector, None)
        align = ir.Constant(i32, 4)
        # lane arithmetic in 32 bits (a mask or an offset within a row pair), positions widened to
        # 64 bits once, at the store: half the vector operations of 64-bit lanes
        lane, splat = _lanes(builder, lanes, 32)
        even = ir.Constant(ir.VectorType(i32, lanes), list(range(0, 2 * lanes, 2)))
        odd = ir.Constant(ir.VectorType(i32, lanes), list(range(1, 2 * lanes, 2)))
        row = builder.trunc(builder.sub(bottom, top), i32)  # the window's second row, this far from its first
        # where each candidate lies from its window's top left: (top, left), (top, right), (bottom, left),
        # (bottom, right)
        offsets = [splat(ir.Constant(i32, 0)), splat(ir.Constant(i32, 1)), splat(row),
                   splat(builder.add(row, ir.Constant(i32, 1)))]  # fmt: skip

        def bigger(v, m):  # whether v replaces m: v > m or v NaN (unordered-or-greater), unless m is NaN
            return builder.and_(builder.fcmp_unordered(">", v, m), builder.fcmp_ordered("ord", m, m))

        chunks = builder.sdiv(builder.add(n, ir.Constant(i64, lanes - 1)), ir.Constant(i64, lanes))
        with cgutils.for_range(builder, chunks) as chunk:
            first = builder.mul(chunk.index, ir.Constant(i64, lanes))
            left = splat(builder.trunc(builder.sub(n, first), i32))  # outputs left from this chunk's first on
            inputs = []
            for start in (top, bottom):
                at = builder.add(start, builder.mul(first, ir.Constant(i64, 2)))
                halves = []
                for half in range(2):  # input lane j of this half is window (half·lanes + j) // 2's
                    index = builder.add(lane, splat(ir.Constant(i32, half * lanes)))
                    mask = builder.icmp_signed("<", index, builder.add(left, left))
                    pointer = builder.bitcast(builder.gep(srcs, [builder.add(at, ir.Constant(i64, half * lanes))]),
                                              vector.as_pointer())  # fmt: skip
                    halves.append(builder.call(load, [pointer, align, mask, zero]))
                inputs += [builder.shuffle_vector(halves[0], halves[1], even),
                           builder.shuffle_vector(halves[0], halves[1], odd)]  # fmt: skip
            best, best_at = inputs[0], offsets[0]
            for v, offset in zip(inputs[1:], offsets[1:]):
                take = bigger(v, best)
                best, best_at = builder.select(take, v, best), builder.select(take, offset, best_at)
            mask = builder.icmp_signed("<", lane, left)
            pointer = builder.bitcast(builder.gep(outs, [builder.add(out_off, first)]), vector.as_pointer())
            builder.call(store, [best, pointer, align, mask])
            if with_winners:
                wins = context.make_array(sig.args[4])(context, builder, args[4]).data
                index_vector = ir.VectorType(i64, lanes)
                window = builder.add(builder.add(lane, lane), best_at)  # from the chunk's first window on
                origin = splat64(builder.add(top, builder.mul(first, ir.Constant(i64, 2))))
                where = builder.add(origin, builder.sext(window, index_vector))
                store_index = cgutils.get_or_insert_function(
                    builder.module, ir.FunctionType(ir.VoidType(), [index_vector, index_vector.as_pointer(), i32,
                                                                    mask.type]),
                    f"llvm.masked.store.v{lanes}i64.p0v{lanes}i64")  # fmt: skip
                pointer = builder.bitcast(builder.gep(wins, [builder.add(out_off, first)]), index_vector.as_pointer())
                builder.call(store_index, [where, pointer, ir.Constant(i32, 8), mask])
        return context.get_dummy_value()

    return codegen


def _lanes(builder, lanes, bits):
    """(the lane numbers as a vector of ``lanes`` integers of ``bits`` bits, splat: such an integer
    in every lane)."""
    vector, i32 = ir.VectorType(ir.IntType(bits), lanes), ir.IntType(32)

    def splat(value):
        one = builder.insert_element(ir.Constant(vector, ir.Undefined), value, ir.Constant(i32, 0))
        return builder.shuffle_vector(one, one, ir.Constant(ir.VectorType(i32, lanes), [0] * lanes))

    return ir.Constant(vector, list(range(lanes))), splat


@intrinsic
def unpool_row(typingctx, dout, winners, out_off, n, dx, top, bottom, shift):
    """The backward of ``pool_row_winners`` for one output row: dx[shift + top + 2i + j] and
    dx[shift + bottom + 2i + j] (j = 0, 1) = dout[out_off + i] where winners[out_off + i] is
    top + 2i + j (bottom + 2i + j), else 0, for i < n (compiled code only; unchecked; the last
    vectors masked). Each input of the windows is written once: the zeros and the gradients in one
    pass, a vector at a time. ``shift``: where dx's layout puts the pooled input's values against
    where the winners say they were (0 for the same layout)."""
    signature = types.void(dout, winners, out_off, n, dx, top, bottom, shift)

    def codegen(context, builder, sig, args):
        _, _, out_off, n, _, top, bottom, shift = [context.cast(builder, v, t, types.int64)
                                                   if isinstance(t, types.Integer) else v
                                                   for v, t in zip(args, sig.args)]  # fmt: skip
        vector, load, store, lane, splat = _masked_ops(context, builder, sig.args[0].dtype)
        lanes, i32, i64 = vector.count, ir.IntType(32), ir.IntType(64)
        index_vector = ir.VectorType(i64, lanes)
        load_index = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(index_vector, [index_vector.as_pointer(), i32, ir.VectorType(ir.IntType(1),
                                                                                                          lanes),
                                                           index_vector]),
            f"llvm.masked.load.v{lanes}i64.p0v{lanes}i64")  # fmt: skip
        douts = context.make_array(sig.args[0])(context, builder, args[0]).data
        wins = context.make_array(sig.args[1])(context, builder, args[1]).data
        dxs = context.make_array(sig.args[4])(context, builder, args[4]).data
        zero, align = ir.Constant(vector, None), ir.Constant(i32, 4)
        two = splat(ir.Constant(i64, 2))
        # lanes (0, lanes), (1, lanes + 1), ...: the left and right inputs of each window side by side
        low = ir.Constant(ir.VectorType(i32, lanes), [j // 2 + (j % 2) * lanes for j in range(lanes)])
        high = ir.Constant(ir.VectorType(i32, lanes), [lanes // 2 + j // 2 + (j % 2) * lanes for j in range(lanes)])
        # each winner as an offset (32 bits) from its chunk's first window, against the four inputs' offsets
        lane32, splat32 = _lanes(builder, lanes, 32)
        window = builder.add(lane32, lane32)
        row = splat32(builder.trunc(builder.sub(bottom, top), i32))
        inputs = [window, builder.add(window, splat32(ir.Constant(i32, 1))), builder.add(window, row),
                  builder.add(builder.add(window, row), splat32(ir.Constant(i32, 1)))]  # fmt: skip
        chunks = builder.sdiv(builder.add(n, ir.Constant(i64, lanes - 1)), ir.Constant(i64, lanes))
        with cgutils.for_range(builder, chunks) as chunk:
            first = builder.mul(chunk.index, ir.Constant(i64, lanes))
            left = splat(builder.sub(n, first))
            mask = builder.icmp_signed("<", lane, left)
            at = builder.add(out_off, first)
            grads = builder.call(load, [builder.bitcast(builder.gep(douts, [at]), vector.as_pointer()), align, mask,
                                        zero])  # fmt: skip
            won = builder.call(load_index, [builder.bitcast(builder.gep(wins, [at]), index_vector.as_pointer()),
                                            ir.Constant(i32, 8), mask, ir.Constant(index_vector, None)])  # fmt: skip
            origin = builder.add(top, builder.mul(first, ir.Constant(i64, 2)))
            offset = builder.trunc(builder.sub(won, splat(origin)), ir.VectorType(i32, lanes))  # masked lanes: grads 0
            for k, start in enumerate((top, bottom)):
                row_at = builder.add(start, builder.mul(first, ir.Constant(i64, 2)))
                lefts = builder.select(builder.icmp_signed("==", offset, inputs[2 * k]), grads, zero)
                rights = builder.select(builder.icmp_signed("==", offset, inputs[2 * k + 1]), grads, zero)
                for half, order in enumerate((low, high)):
                    index = builder.add(lane, splat(ir.Constant(i64, half * lanes)))
                    half_mask = builder.icmp_signed("<", index, builder.mul(left, two))
                    at_dx = builder.add(builder.add(row_at, shift), ir.Constant(i64, half * lanes))
                    pointer = builder.bitcast(builder.gep(dxs, [at_dx]), vector.as_pointer())
                    builder.call(store, [builder.shuffle_vector(lefts, rights, order), pointer, align, half_mask])
        return context.get_dummy_value()

    return signature, codegen


def _winograd_b(builder, d0, d1, d2, d3):
    """Bᵀ·(d0, d1, d2, d3) of F(2×2, 3×3): (d0 − d2, d1 + d2, d2 − d1, d1 − d3)."""
    return [builder.fsub(d0, d2), builder.fadd(d1, d2), builder.fsub(d2, d1), builder.fsub(d1, d3)]


def _winograd_a(builder, m0, m1, m2, m3):
    """Aᵀ·(m0, m1, m2, m3) of F(2×2, 3×3): (m0 + m1 + m2, m1 − m2 − m3)."""
    return [builder.fadd(builder.fadd(m0, m1), m2), builder.fsub(builder.fsub(m1, m2), m3)]


def _masked_run(builder, ops, base, at, count, limit):
    """``count`` consecutive vectors from base[at] on, the values at or past ``limit`` (an i64 vector
    of one count from at) not read: zeros (ops: ``_masked_ops``' vector type, masked load, lanes, splat)."""
    vector, load, lane, splat = ops
    lanes, i32, i64 = vector.count, ir.IntType(32), ir.IntType(64)
    loaded = []
    for h in range(count):
        mask = builder.icmp_signed("<", builder.add(lane, splat(ir.Constant(i64, h * lanes))), limit)
        pointer = builder.gep(base, [builder.add(at, ir.Constant(i64, h * lanes))])
        pointer = builder.bitcast(pointer, vector.as_pointer())
        loaded.append(builder.call(load, [pointer, ir.Constant(i32, 4), mask, ir.Constant(vector, None)]))
    return loaded


def _int64_args(context, builder, sig, args):
    """An intrinsic's arguments, its integers cast to int64."""
    return [context.cast(builder, v, t, types.int64) if isinstance(t, types.Integer) else v
            for v, t in zip(args, sig.args)]  # fmt: skip


@intrinsic
def winograd_input_row(typingctx, src, top, row, v, v_off, v_stride, n):
    """v[v_off + ξ·v_stride + i] = (Bᵀ·d_i·B)[ξ // 4, ξ % 4] for ξ < 16 and i < n: Winograd
    F(2×2, 3×3)'s input transform of a row of n tiles, tile i's 4×4 patch d_i the values
    src[top + r·row + 2i + j] (r, j < 4), Bᵀ = [[1, 0, −1, 0], [0, 1, 1, 0], [0, −1, 1, 0],
    [0, 1, 0, −1]] (compiled code only; unchecked; nothing read past column 2n + 1 of a patch row,
    nothing written past the n tiles: the last vectors masked). src, v: flat arrays of one float
    dtype.

    A vector of tiles at a time: three vectors of each patch row loaded, the patches' four columns
    (2i, 2i + 1, 2i + 2, 2i + 3 for tile i) pulled apart by shuffles, then Bᵀ over the rows and B
    over the columns as vector adds; Numba's loops over such strided patches run in scalar code."""
    signature = types.void(src, top, row, v, v_off, v_stride, n)

    def codegen(context, builder, sig, args):
        _, top, row, _, v_off, v_stride, n = _int64_args(context, builder, sig, args)
        vector, load, store, lane, splat = _masked_ops(context, builder, sig.args[0].dtype)
        lanes, i32, i64 = vector.count, ir.IntType(32), ir.IntType(64)
        srcs = context.make_array(sig.args[0])(context, builder, args[0]).data
        vs = context.make_array(sig.args[3])(context, builder, args[3]).data
        align = ir.Constant(i32, 4)

        def order(indices):
            return ir.Constant(ir.VectorType(i32, lanes), indices)

        even, odd = order(list(range(0, 2 * lanes, 2))), order(list(range(1, 2 * lanes, 2)))
        # column 2j + 2 (2j + 3): lane j + 1 of the even (odd) columns, the next vector's first (second) last
        next_even, next_odd = order(list(range(1, lanes + 1))), order(list(range(1, lanes)) + [lanes + 1])
        chunks = builder.sdiv(builder.add(n, ir.Constant(i64, lanes - 1)), ir.Constant(i64, lanes))
        with cgutils.for_range(builder, chunks) as chunk:
            first = builder.mul(chunk.index, ir.Constant(i64, lanes))
            columns = splat(builder.add(builder.mul(builder.sub(n, first), ir.Constant(i64, 2)), ir.Constant(i64, 2)))
            patch = []  # patch[r][j]: column j of each tile's row r, a vector of tiles
            for r in range(4):
                at = builder.add(builder.add(top, builder.mul(row, ir.Constant(i64, r))),
                                 builder.mul(first, ir.Constant(i64, 2)))  # fmt: skip
                loaded = _masked_run(builder, (vector, load, lane, splat), srcs, at, 3, columns)
                d0 = builder.shuffle_vector(loaded[0], loaded[1], even)
                d1 = builder.shuffle_vector(loaded[0], loaded[1], odd)
                patch.append([d0, d1, builder.shuffle_vector(d0, loaded[2], next_even),
                              builder.shuffle_vector(d1, loaded[2], next_odd)])  # fmt: skip
            columns_bd = [_winograd_b(builder, *[patch[r][j] for r in range(4)]) for j in range(4)]  # (Bᵀd)[a, j]
            mask = builder.icmp_signed("<", lane, splat(builder.sub(n, first)))
            for a in range(4):
                values = _winograd_b(builder, *[columns_bd[j][a] for j in range(4)])  # (Bᵀ d B)[a, b]
                for b, value in enumerate(values):
                    at = builder.add(builder.add(v_off, builder.mul(v_stride, ir.Constant(i64, 4 * a + b))), first)
                    builder.call(store, [value, builder.bitcast(builder.gep(vs, [at]), vector.as_pointer()), align,
                                         mask])  # fmt: skip
        return context.get_dummy_value()

    return signature, codegen


@intrinsic
def winograd_output_row(typingctx, m, m_off, m_stride, n, bias, f, out, top, row, columns, rows, epilogue):
    """out[top + r·row + 2i + j] = (Aᵀ·m_i·A)[r, j], plus bias[f] for ``epilogue`` PLUS_BIAS and then
    ReLU'd for PLUS_BIAS_RELU (as ``conv_tile``'s), for r < ``rows`` (1 or 2), j < 2 and 2i + j <
    ``columns`` (≤ 2n: a row of outputs may end in half a tile): Winograd F(2×2, 3×3)'s output
    transform of a row of n tiles, m_i[ξ] = m[m_off + ξ·m_stride + i], Aᵀ = [[1, 1, 1, 0], [0, 1, −1,
    −1]] (compiled code only; unchecked; nothing else read or written: the last vectors masked). m,
    bias, out: flat arrays of one float dtype. A vector of tiles at a time, each tile's two columns
    interleaved by shuffles into two vectors of each output row."""
    signature = types.void(m, m_off, m_stride, n, bias, f, out, top, row, columns, rows, epilogue)

    def codegen(context, builder, sig, args):
        _, m_off, m_stride, n, _, f, _, top, row, columns, rows, epilogue = _int64_args(context, builder, sig, args)
        vector, load, store, lane, splat = _masked_ops(context, builder, sig.args[0].dtype)
        lanes, i32, i64 = vector.count, ir.IntType(32), ir.IntType(64)
        ms = context.make_array(sig.args[0])(context, builder, args[0]).data
        biases = context.make_array(sig.args[4])(context, builder, args[4]).data
        outs = context.make_array(sig.args[6])(context, builder, args[6]).data
        zero, align = ir.Constant(vector, None), ir.Constant(i32, 4)
        scalar = vector.element
        bias_slot = cgutils.alloca_once_value(builder, ir.Constant(scalar, 0))
        with builder.if_then(builder.icmp_signed("!=", epilogue, ir.Constant(i64, SUMS))):
            builder.store(builder.load(builder.gep(biases, [f])), bias_slot)
        one = builder.insert_element(ir.Constant(vector, ir.Undefined), builder.load(bias_slot), ir.Constant(i32, 0))
        bias = builder.shuffle_vector(one, one, ir.Constant(ir.VectorType(i32, lanes), [0] * lanes))
        with_relu = builder.icmp_signed("==", epilogue, ir.Constant(i64, PLUS_BIAS_RELU))
        # lanes (0, lanes), (1, lanes + 1), ...: a tile's two output columns side by side
        low = ir.Constant(ir.VectorType(i32, lanes), [j // 2 + (j % 2) * lanes for j in range(lanes)])
        high = ir.Constant(ir.VectorType(i32, lanes), [lanes // 2 + j // 2 + (j % 2) * lanes for j in range(lanes)])
        chunks = builder.sdiv(builder.add(n, ir.Constant(i64, lanes - 1)), ir.Constant(i64, lanes))
        with cgutils.for_range(builder, chunks) as chunk:
            first = builder.mul(chunk.index, ir.Constant(i64, lanes))
            left = builder.sub(n, first)
            mask = builder.icmp_signed("<", lane, splat(left))
            sums = []
            for xi in range(16):
                at = builder.add(builder.add(m_off, builder.mul(m_stride, ir.Constant(i64, xi))), first)
                pointer = builder.bitcast(builder.gep(ms, [at]), vector.as_pointer())
                sums.append(builder.call(load, [pointer, align, mask, zero]))
            columns_am = [_winograd_a(builder, *[sums[4 * a + b] for a in range(4)]) for b in range(4)]  # (Aᵀm)[i, b]
            # this chunk's outputs in a row: two a tile, as many as are left of the row's ``columns``
            written = splat(builder.sub(columns, builder.mul(first, ir.Constant(i64, 2))))
            for i in range(2):
                y = []
                for value in _winograd_a(builder, *[columns_am[b][i] for b in range(4)]):  # (Aᵀ m A)[i, j]
                    value = builder.fadd(value, bias)
                    relu = builder.select(builder.fcmp_ordered("<", value, zero), zero, value)  # NaN stays NaN
                    y.append(builder.select(with_relu, relu, value))
                at_row = builder.add(builder.add(top, builder.mul(row, ir.Constant(i64, i))),
                                     builder.mul(first, ir.Constant(i64, 2)))  # fmt: skip
                with builder.if_then(builder.icmp_signed("<", ir.Constant(i64, i), rows)):
                    for half, order in enumerate((low, high)):
                        half_mask = builder.icmp_signed("<", builder.add(lane, splat(ir.Constant(i64, half * lanes))),
                                                        written)  # fmt: skip
                        at = builder.add(at_row, ir.Constant(i64, half * lanes))
                        pointer = builder.bitcast(builder.gep(outs, [at]), vector.as_pointer())
                        builder.call(store, [builder.shuffle_vector(y[0], y[1], order), pointer, align, half_mask])
        return context.get_dummy_value()

    return signature, codegen


@intrinsic
def winograd_gradient_row(typingctx, g, top, row, columns, rows, u, u_off, u_stride, n):
    """u[u_off + ξ·u_stride + i] = (A·e_i·Aᵀ)[ξ // 4, ξ % 4] for ξ < 16 and i < n: the transform of a
    row of n 2×2 tiles of an output gradient for the weight gradient by Winograd's F(2×2, 3×3)
    (``conv.winograd_weight_gradient``), tile i's e_i[r, j] = g[top + r·row + 2i + j] for r < ``rows``
    (1 or 2) and 2i + j < ``columns`` (≤ 2n), 0 past them (nothing read there), A = [[1, 0], [1, 1],
    [1, −1], [0, −1]] (Aᵀ the output transform's). Compiled code only; unchecked; nothing written past
    the n tiles: the last vectors masked. g, u: flat arrays of one float dtype. A vector of tiles
    at a time, each tile's two columns pulled apart by shuffles (as ``winograd_input_row``)."""
    signature = types.void(g, top, row, columns, rows, u, u_off, u_stride, n)

    def codegen(context, builder, sig, args):
        _, top, row, columns, rows, _, u_off, u_stride, n = _int64_args(context, builder, sig, args)
        vector, load, store, lane, splat = _masked_ops(context, builder, sig.args[0].dtype)
        lanes, i32, i64 = vector.count, ir.IntType(32), ir.IntType(64)
        gs = context.make_array(sig.args[0])(context, builder, args[0]).data
        us = context.make_array(sig.args[5])(context, builder, args[5]).data
        align = ir.Constant(i32, 4)
        even = ir.Constant(ir.VectorType(i32, lanes), list(range(0, 2 * lanes, 2)))
        odd = ir.Constant(ir.VectorType(i32, lanes), list(range(1, 2 * lanes, 2)))
        chunks = builder.sdiv(builder.add(n, ir.Constant(i64, lanes - 1)), ir.Constant(i64, lanes))
        with cgutils.for_range(builder, chunks) as chunk:
            first = builder.mul(chunk.index, ir.Constant(i64, lanes))
            left = splat(builder.sub(columns, builder.mul(first, ir.Constant(i64, 2))))  # this chunk's columns
            e = []  # e[r][j]: column j of each tile's row r, a vector of tiles
            for r in range(2):
                at = builder.add(builder.add(top, builder.mul(row, ir.Constant(i64, r))),
                                 builder.mul(first, ir.Constant(i64, 2)))  # fmt: skip
                in_rows = builder.icmp_signed("<", ir.Constant(i64, r), rows)
                limit = builder.select(in_rows, left, splat(ir.Constant(i64, 0)))  # a row past ``rows``: nothing read
                loaded = _masked_run(builder, (vector, load, lane, splat), gs, at, 2, limit)
                e.append([builder.shuffle_vector(loaded[0], loaded[1], even),
                          builder.shuffle_vector(loaded[0], loaded[1], odd)])  # fmt: skip

            def a_times(e0, e1):  # A·(e0, e1) = (e0, e0 + e1, e0 − e1, −e1)
                return [e0, builder.fadd(e0, e1), builder.fsub(e0, e1), builder.fneg(e1)]

            columns_ae = [a_times(e[0][j], e[1][j]) for j in range(2)]  # (A·e)[a, j]
            mask = builder.icmp_signed("<", lane, splat(builder.sub(n, first)))
            for a in range(4):
                for b, value in enumerate(a_times(columns_ae[0][a], columns_ae[1][a])):  # (A·e·Aᵀ)[a, b]
                    at = builder.add(builder.add(u_off, builder.mul(u_stride, ir.Constant(i64, 4 * a + b))), first)
                    builder.call(store, [value, builder.bitcast(builder.gep(us, [at]), vector.as_pointer()), align,
                                         mask])  # fmt: skip
        return context.get_dummy_value()

    return signature, codegen


@intrinsic
def copy_run(typingctx, src, src_off, dst, dst_off, n):
    """dst[dst_off + i] = src[src_off + i] for i < n, a vector at a time, the last one masked
    (compiled code only; unchecked; nothing outside the n values is read or written). src, dst:
    flat arrays of one float dtype. The rows a convolution pads and cuts are 4–30 values: Numba's
    loops would copy them a value at a time."""
    signature = types.void(src, src_off, dst, dst_off, n)

    def codegen(context, builder, sig, args):
        _, src_off, _, dst_off, n = [context.cast(builder, v, t, types.int64) if isinstance(t, types.Integer)
                                     else v for v, t in zip(args, sig.args)]  # fmt: skip
        vector, load, store, lane, splat = _masked_ops(context, builder, sig.args[0].dtype)
        lanes = vector.count
        srcs = context.make_array(sig.args[0])(context, builder, args[0]).data
        dsts = context.make_array(sig.args[2])(context, builder, args[2]).data
        chunks = builder.sdiv(builder.add(n, ir.Constant(n.type, lanes - 1)), ir.Constant(n.type, lanes))
        with cgutils.for_range(builder, chunks) as chunk:
            first = builder.mul(chunk.index, ir.Constant(n.type, lanes))
            mask = builder.icmp_signed("<", lane, splat(builder.sub(n, first)))
            at = builder.bitcast(builder.gep(srcs, [builder.add(src_off, first)]), vector.as_pointer())
            value = builder.call(load, [at, ir.Constant(ir.IntType(32), 4), mask, ir.Constant(vector, None)])
            to = builder.bitcast(builder.gep(dsts, [builder.add(dst_off, first)]), vector.as_pointer())
            builder.call(store, [value, to, ir.Constant(ir.IntType(32), 4), mask])
        return context.get_dummy_value()

    return signature, codegen


def _masked_ops(context, builder, dtype):
    """(vector type, llvm.masked.load, llvm.masked.store, the lane numbers (i64 vector), splat: an i64
    value in every lane) for vectors of ``dtype`` filling a register."""
    scalar = context.get_data_type(dtype)
    lanes = VECTOR_BYTES // context.get_abi_sizeof(scalar)
    vector, i1, i32 = ir.VectorType(scalar, lanes), ir.IntType(1), ir.IntType(32)
    masks = ir.VectorType(i1, lanes)
    suffix = f"v{lanes}{'f32' if dtype == types.float32 else 'f64'}"
    load = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vector, [vector.as_pointer(), i32, masks,
                                                                                   vector]),
                                          f"llvm.masked.load.{suffix}.p0{suffix}")  # fmt: skip
    store = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [vector, vector.as_pointer(),
                                                                                           i32, masks]),
                                           f"llvm.masked.store.{suffix}.p0{suffix}")  # fmt: skip
    lane, splat = _lanes(builder, lanes, 64)
    return vector, load, store, lane, splat
