"""The fused step against the reference in every work split (rows or columns, one block or two).

The step takes different code paths by shape: layer 1 split by rows (then one
parallel region runs gather, both layers and the loss per row block) or by
columns, each with one block or several, and layer 2's weight and bias
gradients summed over row blocks. Each shape below reaches one of them, and a
test asserts that it does, so that retuning the partition cannot silently drop
a path from these comparisons.
"""

import numpy as np
import pytest
from support import FLOAT_DTYPES, assert_matches_reference

from fastnet import TwoLayerNet, kernels, reference

# (B, D, H, C) -> (layer 1 split by columns?, its blocks)
SPLITS = {
    (20, 30, 7, 3): (False, 1),  # rows x 1
    (100, 784, 50, 10): (False, 2),  # rows x 2: the book's shape
    (5, 30, 40, 4): (True, 1),  # columns x 1
    (20, 784, 200, 10): (True, 2),  # columns x 2 (then layer 2 in two row blocks)
}
F32_EPS = np.finfo(np.float32).eps


def test_each_shape_reaches_its_split():
    for (B, D, H, _), expected in SPLITS.items():
        assert kernels.product_split(B, D, H) == expected, (B, D, H)
    # with two blocks over columns, layer 2 and its gradient sums run in two row blocks too
    assert kernels.num_blocks(20) == 2


def problem(shape, dtype, codes, seed=0):
    """A net, pixel data (as floats or as uint8 codes with divisor 255), labels and a batch."""
    B, D, H, C = shape
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (3 * B, D)).astype(np.uint8)
    t = rng.integers(0, C, 3 * B)
    idx = rng.permutation(3 * B)[:B]
    net = TwoLayerNet(D, H, C, weight_init_std=0.1, dtype=dtype, seed=seed)
    net.params["b1"][:] = rng.standard_normal(H) * 0.1  # biases that matter, not the initial zeros
    x = pixels if codes else (pixels.astype(dtype) / dtype(255))
    return net, x, t, idx


def reference_step(params, x, t, kernel_hidden, float32):
    """Loss and float64 gradients by the book's layers. In float32, a hidden unit whose
    pre-activation lies within rounding of 0 may land on either side of the ReLU in the
    kernel: there (only there) the reference follows the kernel's side; everywhere else
    the kernel's ReLU must agree with the reference's."""
    W1, b1, W2, b2 = (params[k].astype(np.float64) for k in ("W1", "b1", "W2", "b2"))
    affine1, relu, affine2, last = (
        reference.Affine(W1, b1),
        reference.Relu(),
        reference.Affine(W2, b2),
        reference.SoftmaxWithLoss(),
    )
    pre = affine1.forward(x)
    hidden = relu.forward(pre)
    if float32:
        near_zero = np.abs(pre) <= 8 * F32_EPS * (np.abs(x) @ np.abs(W1) + np.abs(b1))
        kernel_off = kernel_hidden <= 0
        np.testing.assert_array_equal(kernel_off[~near_zero], relu.mask[~near_zero])
        relu.mask = np.where(near_zero, kernel_off, relu.mask)
        hidden = np.where(relu.mask, 0.0, pre)
    loss = last.forward(affine2.forward(hidden), t)
    dz = last.backward()
    dhidden = relu.backward(affine2.backward(dz))
    affine1.backward(dhidden)
    grads = {"W1": affine1.dW, "b1": affine1.db, "W2": affine2.dW, "b2": affine2.db}
    # the size of the terms each gradient sums: the yardstick for its rounding error
    terms = {
        "W1": np.abs(x).T @ np.abs(dhidden),
        "b1": np.abs(dhidden).sum(axis=0),
        "W2": np.abs(hidden).T @ np.abs(dz),
        "b2": np.abs(dz).sum(axis=0),
    }
    scales = {k: float(np.max(v)) for k, v in terms.items()}
    return loss, grads, scales


@pytest.mark.parametrize("codes", [False, True], ids=["floats", "pixel-codes"])
@pytest.mark.parametrize("lr", [0.0, 0.5])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape", list(SPLITS), ids=["rows1", "rows2", "cols1", "cols2"])
def test_step_matches_reference_in_every_split(shape, dtype, lr, codes):
    net, x, t, idx = problem(shape, dtype, codes)
    before = {k: v.copy() for k, v in net.params.items()}
    x_float = x.astype(dtype) / dtype(255) if codes else x
    loss = net.steps(x, t, idx[None, :], lr, 255.0 if codes else None)[0]

    kernel_hidden = net._workspace(len(idx)).work.hid
    ref_loss, ref_grads, scales = reference_step(
        before, x_float[idx].astype(np.float64), t[idx], kernel_hidden, dtype == np.float32
    )
    assert_matches_reference(loss, ref_loss, dtype)
    if lr == 0:  # gradients only; the weights stay
        for name, grad in zip(net.PARAM_NAMES, net._grads):
            assert_matches_reference(grad, ref_grads[name], dtype, scales[name])
            np.testing.assert_array_equal(net.params[name], before[name])
    else:
        for name in net.PARAM_NAMES:
            expected = before[name].astype(np.float64) - lr * ref_grads[name]
            assert_matches_reference(
                net.params[name], expected, dtype, float(np.abs(before[name]).max()) + lr * scales[name]
            )


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape", list(SPLITS), ids=["rows1", "rows2", "cols1", "cols2"])
def test_gradient_matches_reference_in_every_split(shape, dtype):
    """``net.gradient`` (the book's interface, the batch as given) in every split."""
    net, x, t, idx = problem(shape, dtype, codes=False, seed=1)
    before = {k: v.copy() for k, v in net.params.items()}
    grads = net.gradient(x[idx], t[idx])
    kernel_hidden = net._workspace(len(idx)).work.hid
    _, ref_grads, scales = reference_step(before, x[idx].astype(np.float64), t[idx], kernel_hidden, dtype == np.float32)
    for name in net.PARAM_NAMES:
        assert_matches_reference(grads[name], ref_grads[name], dtype, scales[name])
