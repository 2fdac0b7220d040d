"""A network's layer records: the engine's description of a network, built and checked in Python.

``layer_records`` turns a list of layer tuples into one int64 record per layer (kind, activation,
geometry, offsets into the flat parameter vector and the workspace buffers) and one float64 row
of coefficients (dropout ratio, weight decay, batch-norm momentum); ``new_engine_work`` sizes the
The compiled loops that run the records, and the workspace a batch needs, are in ``engine``.
"""

import math
from collections import namedtuple

import numpy as np
from numba import njit

from .activations import ACTIVATION_CODES, IDENTITY
from .batchnorm import STATS
from .conv import output_size

AFFINE, CONV, POOL, DROPOUT, BATCHNORM = 1, 2, 3, 4, 5
KIND_NAMES = {AFFINE: "affine", CONV: "conv", POOL: "pool", DROPOUT: "dropout", BATCHNORM: "batchnorm"}
# The columns of a layer record.
(KIND, ACT, IN_SIZE, OUT_SIZE, C, H, W, OC, OH, OW, FH, FW, STRIDE, PAD, W_OFF, B_OFF, ACT_OFF,
 AUX_OFF, RUN_OFF, KEY) = range(20)  # fmt: skip
FIELDS = 20
# The columns of a layer's coefficients.
RATIO, DECAY, MOMENTUM = range(3)
COEFS = 3

EngineNetwork = namedtuple(
    "EngineNetwork",
    [
        "rec",  # (L, FIELDS) int64: the layer records
        "coef",  # (L, COEFS) float64: dropout ratio, weight decay λ, batch norm momentum
        "running_mean",  # (batch-norm channels,) in the net's dtype
        "running_var",  # the same
    ],
)

EngineWork = namedtuple(
    "EngineWork",
    [
        "x",  # (B, D) the gathered inputs
        "tb",  # (B,) int64 the gathered labels
        "acts",  # flat: every layer's outputs for B rows
        "deltas",  # flat: their gradients, the same layout
        "winners",  # int64 flat: every pool layer's winners for B rows
        "normed",  # flat: every batch-norm layer's x̂ for B rows
        "stats",  # (batchnorm.STATS, batch-norm channels) float64: batch statistics and sums
        "col",  # (blocks, the most conv_scratch_size) the convolutions' scratch, a row per block of images
        "dcol",  # the same, for their gradients
        "taps",  # (the most conv.taps_size,) a convolution's filters as its forward (or dx) tiles read them
        "parts",  # (blocks, max conv W size + filters) per-block filter and bias gradients
        "acc",  # float64 scratch for sums in a fixed order (an affine layer's bias sums at its ACT_OFF)
        "tasks",  # int64 (3, tasks): the weight-gradient region's layer, part, block (``schedule``)
        "row_loss",  # (B,) float64
        "row_check",  # (B,) float64, 0 where the gathered row is finite
        "one_zero",  # (2,) BLAS's (alpha, beta) = (1, 0)
        "one_one",  # (2,) (1, 1): accumulate
    ],
)


def _number(l, what, value, low, high=math.inf, high_open=False):
    """value as a float, checked to lie in [low, high] (or [low, high))."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"layer {l + 1}: {what} must be a number, got {value!r}")
    value = float(value)
    inside = low <= value < high if high_open else low <= value <= high
    if not (math.isfinite(value) and inside):
        raise ValueError(f"layer {l + 1}: {what} must lie in [{low:g}, {high:g}{')' if high_open else ']'}, "
                         f"got {value!r}")  # fmt: skip
    return value


def _count(l, what, value, low=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"layer {l + 1}: {what} must be an integer >= {low}, got {value!r}")
    return int(value)


def _activation(l, act):
    if isinstance(act, str):
        if act not in ACTIVATION_CODES:
            raise ValueError(f"layer {l + 1}: unknown activation {act!r} (one of {', '.join(ACTIVATION_CODES)})")
        return ACTIVATION_CODES[act]
    if isinstance(act, bool) or act not in ACTIVATION_CODES.values():
        raise ValueError(f"layer {l + 1}: unknown activation {act!r} (one of {', '.join(ACTIVATION_CODES)})")
    return int(act)


def _fits(l, what, h, w, fh, fw, stride, pad):
    oh, ow = output_size(h, fh, stride, pad), output_size(w, fw, stride, pad)
    if oh < 1 or ow < 1:
        raise ValueError(
            f"layer {l + 1} ({what} {fh}×{fw}, stride {stride}, pad {pad}) does not fit its "
            f"{h}×{w} input: size + 2·pad − window must be a multiple of the stride, and not negative"
        )
    return oh, ow


LAYER_FORMS = (
    "('conv', filters, FH, FW, stride, pad, activation[, decay]), ('pool', PH, PW, stride, pad), "
    "('affine', units, activation[, decay]), ('batchnorm', activation[, momentum]), ('dropout', ratio)"
)


def layer_records(input_shape, layers, dropout_keys=None):
    """(rec, coef, number of parameters, batch-norm channels) for ``layers`` applied to inputs of
    ``input_shape`` (C, H, W) (rows of D values: (D, 1, 1)). Each layer is a tuple, one of
    ``LAYER_FORMS``; an activation is a code of ``activations`` or its name. Raises ValueError,
    naming the layer, for anything the engine cannot run: an unknown kind or activation, a
    geometry that does not fit, a ratio, λ or momentum out of range, a network that does not end
    in an affine layer (only dropout may follow it).

    The flat parameter vector holds W and b of every conv and affine layer in order, then γ and β
    of every batch-norm layer. ``dropout_keys``: the number each dropout layer's masks are drawn
    under, in order (default: its position in the list, counted from 1; ``MultiLayerNet`` numbers
    them by hidden layer, as its masks always were)."""
    L = len(layers)
    if L == 0:
        raise ValueError("a network needs at least one layer")
    rec, coef = np.zeros((L, FIELDS), np.int64), np.zeros((L, COEFS))
    c, h, w = (int(n) for n in input_shape)
    params = norm_params = act_off = aux_off = run_off = 0
    keys = list(dropout_keys) if dropout_keys is not None else None
    last_weighted = None
    for l, spec in enumerate(layers):
        if not isinstance(spec, tuple) or not spec or spec[0] not in KIND_NAMES.values():
            raise ValueError(f"layer {l + 1}: {spec!r} is not a layer; the forms are {LAYER_FORMS}")
        kind, args = spec[0], spec[1:]
        counts = {"conv": (6, 7), "pool": (4, 4), "affine": (2, 3), "batchnorm": (1, 2), "dropout": (1, 1)}[kind]
        if not counts[0] <= len(args) <= counts[1]:
            raise ValueError(f"layer {l + 1}: {spec!r} has the wrong number of values; the forms are {LAYER_FORMS}")
        r = rec[l]
        r[IN_SIZE], r[C], r[H], r[W] = c * h * w, c, h, w
        r[OC], r[OH], r[OW] = c, h, w  # a layer that keeps its input's shape
        if kind == "conv":
            fn, fh, fw = _count(l, "filters", args[0]), _count(l, "FH", args[1]), _count(l, "FW", args[2])
            stride, pad = _count(l, "stride", args[3]), _count(l, "pad", args[4], 0)
            oh, ow = _fits(l, "conv", h, w, fh, fw, stride, pad)
            r[KIND], r[ACT], r[OC], r[OH], r[OW] = CONV, _activation(l, args[5]), fn, oh, ow
            r[FH], r[FW], r[STRIDE], r[PAD] = fh, fw, stride, pad
            r[W_OFF], r[B_OFF] = params, params + fn * c * fh * fw
            params += fn * c * fh * fw + fn
            coef[l, DECAY] = _number(l, "weight decay", args[6], 0) if len(args) > 6 else 0.0
            last_weighted = l
        elif kind == "pool":
            ph, pw = _count(l, "PH", args[0]), _count(l, "PW", args[1])
            stride, pad = _count(l, "stride", args[2]), _count(l, "pad", args[3], 0)
            oh, ow = _fits(l, "pool", h, w, ph, pw, stride, pad)
            r[KIND], r[ACT], r[OH], r[OW] = POOL, IDENTITY, oh, ow
            r[FH], r[FW], r[STRIDE], r[PAD] = ph, pw, stride, pad
            r[AUX_OFF] = aux_off
            aux_off += c * oh * ow
        elif kind == "dropout":
            r[KIND], r[ACT], r[KEY] = DROPOUT, IDENTITY, l + 1 if keys is None else keys.pop(0)
            coef[l, RATIO] = _number(l, "the dropout ratio", args[0], 0, 1, high_open=True)
        elif kind == "batchnorm":
            r[KIND], r[ACT] = BATCHNORM, _activation(l, args[0])
            r[W_OFF], r[B_OFF] = norm_params, norm_params + c  # γ, then β: one per channel (after the weights)
            norm_params += 2 * c
            r[RUN_OFF] = run_off
            run_off += c
            coef[l, MOMENTUM] = _number(l, "the batch-norm momentum", args[1], 0, 1) if len(args) > 1 else 0.9
            last_weighted = l
        else:
            n = _count(l, "units", args[0])
            r[KIND], r[ACT], r[OC], r[OH], r[OW] = AFFINE, _activation(l, args[1]), n, 1, 1
            r[W_OFF], r[B_OFF] = params, params + c * h * w * n
            params += c * h * w * n + n
            coef[l, DECAY] = _number(l, "weight decay", args[2], 0) if len(args) > 2 else 0.0
            last_weighted = l
        r[OUT_SIZE] = r[OC] * r[OH] * r[OW]
        r[ACT_OFF] = act_off
        act_off += r[OUT_SIZE]
        c, h, w = r[OC], r[OH], r[OW]
    if last_weighted is None or rec[last_weighted, KIND] != AFFINE or (rec[last_weighted + 1 :, KIND] != DROPOUT).any():
        raise ValueError("the last layer must be affine (its outputs are the logits; only dropout may follow it)")
    if keys:
        raise ValueError(f"{len(keys)} dropout keys more than dropout layers")
    norm = rec[:, KIND] == BATCHNORM
    rec[norm, W_OFF] += params
    rec[norm, B_OFF] += params
    rec[norm, AUX_OFF] = np.concatenate([[0], np.cumsum(rec[norm, OUT_SIZE])[:-1]]) if norm.any() else []
    return rec, coef, params + norm_params, run_off


def new_engine_network(input_shape, layers, dtype, dropout_keys=None):
    """(``EngineNetwork``, number of parameters) for ``layers`` (``layer_records``) on inputs of
    ``input_shape``; running means 0 and variances 0, as the book's."""
    rec, coef, params, channels = layer_records(input_shape, layers, dropout_keys)
    return EngineNetwork(rec, coef, np.zeros(channels, dtype), np.zeros(channels, dtype)), params


# -- views of a layer's parameters and buffers, by its record (compiled) --------------------------


@njit(cache=True)
def layer_rows(buf, rec, l, B):
    """Layer l's outputs (or their gradients) for B rows: a (B, OUT_SIZE) view of the flat buffer."""
    o, n = rec[l, ACT_OFF] * B, rec[l, OUT_SIZE]
    return buf[o : o + B * n].reshape((B, n))


@njit(cache=True)
def layer_aux(buf, rec, l, B):
    """Layer l's winners (pool) or x̂ (batch norm) for B rows: a (B, OUT_SIZE) view."""
    o, n = rec[l, AUX_OFF] * B, rec[l, OUT_SIZE]
    return buf[o : o + B * n].reshape((B, n))


@njit(cache=True)
def affine_params(flat, rec, l):
    """W (IN_SIZE, OUT_SIZE) and b (OUT_SIZE,) of affine layer l, views of the flat vector."""
    d, n, w0, b0 = rec[l, IN_SIZE], rec[l, OUT_SIZE], rec[l, W_OFF], rec[l, B_OFF]
    return flat[w0 : w0 + d * n].reshape((d, n)), flat[b0 : b0 + n]


@njit(cache=True)
def layer_weights(flat, rec, l):
    """Layer l's weights, flat (conv: FN·C·FH·FW, affine: IN_SIZE·OUT_SIZE)."""
    return flat[rec[l, W_OFF] : rec[l, B_OFF]]


@njit(cache=True)
def norm_params(flat, rec, l):
    """Batch-norm layer l's (γ, β), views of the flat vector."""
    c, w0, b0 = rec[l, C], rec[l, W_OFF], rec[l, B_OFF]
    return flat[w0 : w0 + c], flat[b0 : b0 + c]


@njit(cache=True)
def norm_stats(stats, rec, l):
    """Batch-norm layer l's float64 statistics (batchnorm.STATS, C): a C-contiguous view of the
    flat ``stats`` buffer, in which each batch-norm layer's block starts at STATS·RUN_OFF (so that
    a row of it is contiguous and its loops vectorise)."""
    o, n = rec[l, RUN_OFF], rec[l, C]
    return stats[STATS * o : STATS * (o + n)].reshape((STATS, n))


@njit(cache=True)
def conv_geometry(rec, l):
    """Layer l's (C, H, W, FH, FW, stride, pad), as the convolution kernels take it."""
    return rec[l, C], rec[l, H], rec[l, W], rec[l, FH], rec[l, FW], rec[l, STRIDE], rec[l, PAD]


@njit(cache=True)
def pool_geometry(rec, l):
    """Pool layer l's (C, H, W, ph, pw, stride, pad, OH, OW), as the pool kernels take it."""
    return (rec[l, C], rec[l, H], rec[l, W], rec[l, FH], rec[l, FW], rec[l, STRIDE], rec[l, PAD], rec[l, OH],
            rec[l, OW])  # fmt: skip


@njit(cache=True)
def conv_filters(flat, rec, l):
    """Convolution layer l's filters as a (FN, C·FH·FW) view of ``flat``."""
    n = rec[l, OC]
    return layer_weights(flat, rec, l).reshape((n, (rec[l, B_OFF] - rec[l, W_OFF]) // n))
