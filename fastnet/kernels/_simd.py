"""The direct convolution's micro-kernel, written in LLVM's vector instructions: ``conv_tile``.

A stride-1 convolution on a zero-padded image held as planes of Wp columns reads, for filter tap
(fy, fx), every output pixel's input at one fixed offset fy·Wp + fx (``conv.py``'s "wide" output:
OH rows of Wp pixels, the last Wp − OW of each discarded). So a run of consecutive wide pixels of
one filter is a sum, over channels and taps, of a weight times a run of consecutive inputs: one
vector load and one fused multiply-add per (channel, tap) and vector. ``conv_tile`` keeps a tile
of ``filters`` × PIXEL_VECTORS such sums in registers for the whole sum, so each loaded input vector
serves every filter of the tile and each broadcast weight every vector: the register-tiled direct
convolution that inference engines run, without BLAS's repacking of the image for every tap.

Numba cannot be asked for those registers from Python-level loops (it keeps a small array's values
in memory, and its loops vectorize over one axis at best), so the tile is emitted as LLVM IR: the
accumulators are stack slots that LLVM promotes to vector registers (checked in the tests by the
result, and by hand with ``inspect_asm``: 16 ``vfmadd231ps`` on zmm registers, no spills, per
channel and tap on AVX-512).
"""

import llvmlite.binding as llvm
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

# AVX-512 has 32 vector registers of 64 bytes; AVX2 16 of 32: the tile is sized to fit them with
# room for the loaded inputs and the broadcast weight.
_AVX512 = bool(llvm.get_host_cpu_features().get("avx512f", False))
VECTOR_BYTES = 64 if _AVX512 else 32
FILTERS_PER_TILE = 8 if _AVX512 else 4
PIXEL_VECTORS = 2  # vectors of consecutive wide pixels per tile
TILE_SLACK = PIXEL_VECTORS * VECTOR_BYTES // 4  # the most pixels (float32) one tile reads or writes past a row's end


@njit(cache=True)
def tile_pixels(itemsize):
    """Wide pixels one tile covers, for values of ``itemsize`` bytes."""
    return PIXEL_VECTORS * (VECTOR_BYTES // itemsize)


# what a tile does to its sums before storing them (a literal argument of ``conv_tile``)
SUMS, PLUS_BIAS, PLUS_BIAS_RELU = 0, 1, 2


@intrinsic(prefer_literal=True)
def conv_tile(typingctx, x, x_off, w, w_off, out, out_off, out_stride, C, plane, FH, FW, Wp, filters, vectors, bias,
              f0, epilogue):  # fmt: skip
    """out[out_off + f·out_stride + p] = Σ_{c < C, fy < FH, fx < FW}
    w[w_off + ((c·FH + fy)·FW + fx)·filters + f] · x[x_off + c·plane + fy·Wp + fx + p]
    (+ bias[f0 + f] for ``epilogue`` PLUS_BIAS, and then ReLU'd for PLUS_BIAS_RELU: values below
    zero become zero, NaN stays NaN; bias is not read for SUMS) for f < ``filters`` (a literal) and
    p < ``vectors`` vectors of pixels (``tile_pixels`` for PIXEL_VECTORS; compiled code only;
    unchecked: every index read or written must lie inside its array). x, w, out, bias: flat
    arrays of one float dtype. ``filters`` and ``vectors``: literals.

    The epilogue is a value (a select per stored vector), not a literal: one compiled tile per
    filter count, not one per count and epilogue."""
    if not isinstance(filters, types.IntegerLiteral) or not isinstance(vectors, types.IntegerLiteral):
        return None
    signature = types.void(x, x_off, w, w_off, out, out_off, out_stride, C, plane, FH, FW, Wp, filters, vectors, bias,
                           f0, epilogue)  # fmt: skip

    def codegen(context, builder, sig, args):
        as_i64 = [context.cast(builder, v, t, types.int64) if isinstance(t, types.Integer) else v
                  for v, t in zip(args, sig.args)]  # fmt: skip
        _, x_off, _, w_off, _, out_off, out_stride, C, plane, FH, FW, Wp, _, _, _, f0, epilogue = as_i64
        dtype = sig.args[0].dtype
        lanes = VECTOR_BYTES // context.get_abi_sizeof(context.get_data_type(dtype))
        scalar = context.get_data_type(dtype)
        vector = ir.VectorType(scalar, lanes)
        i32, i64 = ir.IntType(32), ir.IntType(64)
        nf, nv = sig.args[12].literal_value, sig.args[13].literal_value

        def data(position):
            return context.make_array(sig.args[position])(context, builder, args[position]).data

        def vector_at(base, index):
            return builder.bitcast(builder.gep(base, [index]), vector.as_pointer())

        xs, ws, outs, biases = data(0), data(2), data(4), data(14)
        name = f"llvm.fma.v{lanes}{'f32' if dtype == types.float32 else 'f64'}"
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vector, [vector] * 3), name)
        zero = ir.Constant(vector, None)
        acc = [[cgutils.alloca_once_value(builder, zero) for _ in range(nv)] for _ in range(nf)]
        for row in acc:
            for slot in row:
                builder.store(zero, slot)
        splat = ir.Constant(ir.VectorType(i32, lanes), [0] * lanes)
        undef = ir.Constant(vector, ir.Undefined)
        with cgutils.for_range(builder, C) as channel:
            x_c = builder.add(x_off, builder.mul(channel.index, plane))
            w_c = builder.add(w_off, builder.mul(channel.index, builder.mul(builder.mul(FH, FW), ir.Constant(i64, nf))))
            with cgutils.for_range(builder, FH) as row:
                x_r = builder.add(x_c, builder.mul(row.index, Wp))
                w_r = builder.add(w_c, builder.mul(row.index, builder.mul(FW, ir.Constant(i64, nf))))
                with cgutils.for_range(builder, FW) as column:
                    x_t = builder.add(x_r, column.index)
                    w_t = builder.add(w_r, builder.mul(column.index, ir.Constant(i64, nf)))
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


@intrinsic
def pool_row(typingctx, src, top, bottom, out, out_off, n):
    """out[out_off + i] = the max of src[top + 2i], src[top + 2i + 1], src[bottom + 2i] and
    src[bottom + 2i + 1], the first largest in that order, NaN if one is NaN, for i < n: one output
    row of a 2×2 pool with stride 2 from input rows starting at ``top`` and ``bottom`` (compiled
    code only; unchecked, but nothing past the n windows is read or written: the last vectors'
    loads and stores are masked). src, out: flat arrays of one float dtype.

    A vector of outputs at a time: two vectors of each input row loaded, their even and odd lanes
    pulled apart by shuffles, then three selects; Numba's loops over rows as short as a pool's
    (4–14 outputs) run in scalar code."""
    signature = types.void(src, top, bottom, out, out_off, n)

    def codegen(context, builder, sig, args):
        _, top, bottom, _, out_off, n = [context.cast(builder, v, t, types.int64) if isinstance(t, types.Integer)
                                         else v for v, t in zip(args, sig.args)]  # fmt: skip
        vector, load, store, lane, splat = _masked_ops(context, builder, sig.args[0].dtype)
        lanes, i32, i64 = vector.count, ir.IntType(32), ir.IntType(64)
        srcs = context.make_array(sig.args[0])(context, builder, args[0]).data
        outs = context.make_array(sig.args[3])(context, builder, args[3]).data
        zero = ir.Constant(vector, None)
        align = ir.Constant(i32, 4)
        even = ir.Constant(ir.VectorType(i32, lanes), list(range(0, 2 * lanes, 2)))
        odd = ir.Constant(ir.VectorType(i32, lanes), list(range(1, 2 * lanes, 2)))

        def bigger(v, m):  # v if v > m or v is NaN, else m
            take = builder.or_(builder.fcmp_ordered(">", v, m), builder.fcmp_unordered("uno", v, v))
            return builder.select(take, v, m)

        chunks = builder.sdiv(builder.add(n, ir.Constant(i64, lanes - 1)), ir.Constant(i64, lanes))
        with cgutils.for_range(builder, chunks) as chunk:
            first = builder.mul(chunk.index, ir.Constant(i64, lanes))
            left = splat(builder.sub(n, first))  # outputs left from this chunk's first on
            inputs = []
            for start in (top, bottom):
                at = builder.add(start, builder.mul(first, ir.Constant(i64, 2)))
                halves = []
                for half in range(2):  # input lane j of this half is window (half·lanes + j) // 2's
                    index = builder.add(lane, splat(ir.Constant(i64, half * lanes)))
                    mask = builder.icmp_signed("<", index, builder.mul(left, splat(ir.Constant(i64, 2))))
                    pointer = builder.bitcast(builder.gep(srcs, [builder.add(at, ir.Constant(i64, half * lanes))]),
                                              vector.as_pointer())  # fmt: skip
                    halves.append(builder.call(load, [pointer, align, mask, zero]))
                inputs += [builder.shuffle_vector(halves[0], halves[1], even),
                           builder.shuffle_vector(halves[0], halves[1], odd)]  # fmt: skip
            best = inputs[0]
            for v in inputs[1:]:  # (top, left), (top, right), (bottom, left), (bottom, right)
                best = bigger(v, best)
            pointer = builder.bitcast(builder.gep(outs, [builder.add(out_off, first)]), vector.as_pointer())
            builder.call(store, [best, pointer, align, builder.icmp_signed("<", lane, left)])
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
    vector, i1, i32, i64 = ir.VectorType(scalar, lanes), ir.IntType(1), ir.IntType(32), ir.IntType(64)
    masks = ir.VectorType(i1, lanes)
    suffix = f"v{lanes}{'f32' if dtype == types.float32 else 'f64'}"
    load = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vector, [vector.as_pointer(), i32, masks,
                                                                                   vector]),
                                          f"llvm.masked.load.{suffix}.p0{suffix}")  # fmt: skip
    store = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [vector, vector.as_pointer(),
                                                                                           i32, masks]),
                                           f"llvm.masked.store.{suffix}.p0{suffix}")  # fmt: skip
    lane = ir.Constant(ir.VectorType(i64, lanes), list(range(lanes)))

    def splat(value):
        vec = builder.insert_element(ir.Constant(ir.VectorType(i64, lanes), ir.Undefined), value, ir.Constant(i32, 0))
        return builder.shuffle_vector(vec, vec, ir.Constant(ir.VectorType(i32, lanes), [0] * lanes))

    return vector, load, store, lane, splat
