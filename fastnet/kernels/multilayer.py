"""A dense network described by its layer sizes (D, n_1, ..., n_{L-1}, C): the layout and the
test-time pass that ``NetStack``'s kernel (``stack``) runs on. ``MultiLayerNet`` itself runs on the
layer engine, whose flat parameter vector it lays out the same way (W1, b1, ..., then gamma1,
beta1, ...: ``layout``), so that a stack's rows are its members' vectors.
"""

from numba import njit

from .decay import add_decay  # noqa: F401  (for the stack's kernel)
from .layers import IDENTITY, _affine_rows
from .layout import batchnorm_params, hidden_offset, layer_params, layer_rows, weight_decay_loss  # noqa: F401
from .regularize import NO_ARRAY, _activate_drop, batchnorm_test_transform


@njit(cache=True)
def _batchnorm_test_transforms(flat, sizes, running_mean, running_var, scale, shift):
    """Every hidden layer's batch norm at test time as a per-column scale and shift (float64
    vectors over all hidden units, from ``batchnorm_test_transform``)."""
    for l in range(1, sizes.shape[0] - 1):
        gamma, beta = batchnorm_params(flat, sizes, l)
        o = hidden_offset(sizes, l)
        n = sizes[l]
        batchnorm_test_transform(gamma, beta, running_mean[o : o + n], running_var[o : o + n],
                                 scale[o : o + n], shift[o : o + n])  # fmt: skip


@njit(cache=True)
def _test_rows(x, flat, sizes, activation, acts, alpha_beta, batchnorm, dropout, bn_scale, bn_shift, c0, c1):
    """Rows c0:c1 of x through every layer at test time, serial, into ``acts`` (laid out for
    x.shape[0] rows): batch norm is the scale and shift from ``_batchnorm_test_transforms``,
    dropout a scaling. Returns the logits' view of ``acts``."""
    B = x.shape[0]
    L = sizes.shape[0] - 1
    h = x
    for l in range(1, L + 1):
        W, b = layer_params(flat, sizes, l)
        out = layer_rows(acts, sizes, B, l)
        n = sizes[l]
        if l == L:
            _affine_rows(h, W, b, out, alpha_beta, c0, c1, 0, n, IDENTITY)
        elif batchnorm:
            o = hidden_offset(sizes, l)
            _affine_rows(h, W, b, out, alpha_beta, c0, c1, 0, n, IDENTITY)
            _activate_drop(out, c0, c1, 0, n, activation, dropout, False, 0, 0, l,
                           bn_scale[o : o + n], bn_shift[o : o + n])  # fmt: skip
        else:
            _affine_rows(h, W, b, out, alpha_beta, c0, c1, 0, n, activation)
            if dropout >= 0:
                _activate_drop(out, c0, c1, 0, n, IDENTITY, dropout, False, 0, 0, l, NO_ARRAY, NO_ARRAY)
        h = out
    return h


@njit(cache=True)
def check_multilayer_batches(func, X, T, batches, sizes, batch):
    """What the steps take from the caller, checked before the first one: the data's width,
    one label per row, every batch index inside X and every label of a batch inside [0, C)."""
    C = sizes[sizes.shape[0] - 1]
    if X.shape[1] != sizes[0]:
        raise ValueError(func + ": x must have input_size columns")
    if T.shape[0] != X.shape[0]:
        raise ValueError(func + ": t must have one label per row of x")
    if batches.shape[1] != batch:
        raise ValueError(func + ": the batch does not match the workspace")
    for s in range(batches.shape[0]):
        for i in range(batches.shape[1]):
            row = batches[s, i]
            if row < 0 or row >= X.shape[0]:
                raise ValueError(func + ": a batch index lies outside [0, len(x)); (position, index) =", i, row)
            if T[row] < 0 or T[row] >= C:
                raise ValueError(func + ": labels must lie in [0, C), C = number of classes; (row, label, C) =",
                                 row, T[row], C)  # fmt: skip
