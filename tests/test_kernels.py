"""Each kernel against the numpy reference, on many shapes, float32 and float64."""

import numpy as np
import pytest
from numba import njit
from support import FLOAT_DTYPES, SHAPES, assert_matches_reference

from fastnet import kernels, reference


def _layer_inputs(rng, B, D, H, dtype):
    x = rng.standard_normal((B, D)).astype(dtype)
    W = (rng.standard_normal((D, H)) / np.sqrt(D)).astype(dtype)
    b = rng.standard_normal(H).astype(dtype)
    return x, W, b


def _gemm_scale(a, b):
    """The size of the terms summed in a @ b: the right yardstick for rounding error."""
    return float(np.max(np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64))))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("B,D,H,C", SHAPES)
def test_affine_relu_forward_matches_reference(rng, B, D, H, C, dtype):
    x, W, b = _layer_inputs(rng, B, D, H, dtype)
    x_before = x.copy()
    out = np.full((B, H), np.nan, dtype)
    result = kernels.affine_relu_forward(x, W, b, out)
    assert result is out
    x64 = x.astype(np.float64)
    expected = reference.Relu().forward(reference.Affine(W.astype(np.float64), b.astype(np.float64)).forward(x64))
    assert_matches_reference(out, expected, dtype, _gemm_scale(x, W) + np.abs(b).max())
    np.testing.assert_array_equal(x, x_before)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("B,D,H,C", SHAPES)
def test_affine_forward_matches_reference(rng, B, D, H, C, dtype):
    x, W, b = _layer_inputs(rng, B, D, H, dtype)
    out = kernels.affine_forward(x, W, b, np.empty((B, H), dtype))
    expected = reference.Affine(W.astype(np.float64), b.astype(np.float64)).forward(x.astype(np.float64))
    assert_matches_reference(out, expected, dtype, _gemm_scale(x, W) + np.abs(b).max())


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("B,D,H,C", SHAPES)
def test_softmax_cross_entropy_matches_reference_integer_and_one_hot(rng, B, D, H, C, dtype):
    z = (3 * rng.standard_normal((B, C))).astype(dtype)
    t = rng.integers(0, C, B)
    dz = np.empty_like(z)
    loss = kernels.softmax_cross_entropy(z, t, dz)
    for labels in (t, np.eye(C)[t]):  # the reference with integer and with one-hot labels
        layer = reference.SoftmaxWithLoss()
        expected_loss = layer.forward(z.astype(np.float64), labels)
        assert_matches_reference(loss, expected_loss, dtype)
        assert_matches_reference(dz, layer.backward(), dtype, 1.0 / B)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_softmax_cross_entropy_is_stable_for_huge_logits(dtype):
    z = np.array([[1000.0, 0.0, -1000.0], [-5e3, 5e3, 0.0]], dtype)
    t = np.array([0, 0])
    dz = np.empty_like(z)
    loss = kernels.softmax_cross_entropy(z, t, dz)
    assert np.isfinite(loss) and np.all(np.isfinite(dz))
    assert loss == pytest.approx((0.0 + 1e4) / 2, rel=1e-6)
    np.testing.assert_allclose(dz, [[0, 0, 0], [-0.5, 0.5, 0]], atol=1e-7)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("B,D,H,C", SHAPES)
def test_affine_relu_backward_matches_reference(rng, B, D, H, C, dtype):
    h = np.maximum(rng.standard_normal((B, H)), 0).astype(dtype)
    W = rng.standard_normal((H, C)).astype(dtype)
    dout = rng.standard_normal((B, C)).astype(dtype)
    dW, db, dh = np.empty((H, C), dtype), np.empty(C, dtype), np.empty((B, H), dtype)
    kernels.affine_relu_backward(dout, h, W, dW, db, dh)

    affine = reference.Affine(W.astype(np.float64), np.zeros(C))
    relu = reference.Relu()
    affine.forward(relu.forward(h.astype(np.float64)))
    expected_dh = relu.backward(affine.backward(dout.astype(np.float64)))
    assert_matches_reference(dW, affine.dW, dtype, _gemm_scale(h.T, dout))
    assert_matches_reference(db, affine.db, dtype, float(np.abs(dout).sum(axis=0).max()))
    assert_matches_reference(dh, expected_dh, dtype, _gemm_scale(dout, W.T))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("B,D,H,C", SHAPES)
def test_affine_backward_params_matches_reference(rng, B, D, H, C, dtype):
    x = rng.random((B, D)).astype(dtype)
    dout = rng.standard_normal((B, H)).astype(dtype)
    dW, db = np.empty((D, H), dtype), np.empty(H, dtype)
    kernels.affine_backward_params(x, dout, dW, db)
    affine = reference.Affine(np.zeros((D, H)), np.zeros(H))
    affine.forward(x.astype(np.float64))
    affine.backward(dout.astype(np.float64))
    assert_matches_reference(dW, affine.dW, dtype, _gemm_scale(x.T, dout))
    assert_matches_reference(db, affine.db, dtype, float(np.abs(dout).sum(axis=0).max()))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape", [(1,), (5,), (13, 7), (784, 50)])
def test_sgd_update(rng, shape, dtype):
    param = rng.standard_normal(shape).astype(dtype)
    grad = rng.standard_normal(shape).astype(dtype)
    expected = param.astype(np.float64) - 0.1 * grad.astype(np.float64)
    assert kernels.sgd_update(param, grad, 0.1) is param
    assert_matches_reference(param, expected, dtype)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("name", ["MOMENTUM", "NESTEROV", "RMSPROP", "ADAM"])
def test_decaying_optimizer_state_reaches_zero_not_a_subnormal(name, dtype):
    """Where the gradient is zero the state decays by its rate each step; rounding to nearest, it
    would stop at the smallest subnormal for good (and x86 takes a slow path on every update that
    touches it). It is flushed to zero instead, and the weights keep their bits."""
    from fastnet.kernels import optimizer

    tiny, n = np.finfo(dtype).tiny, 37
    signs = np.where(np.arange(n) % 2 == 0, 1, -1).astype(dtype)
    w, g = np.linspace(0.5, 1.5, n).astype(dtype), np.zeros(n, dtype)  # the state is far below their ulps
    s1 = np.full(n, 1.05 * tiny, dtype) * (signs if name != "RMSPROP" else 1)  # RMSprop's h: squares
    s2 = np.full(n, 1.05 * tiny, dtype)  # Adam's v (the others do not use it)
    before = w.copy()
    hyper = np.array([1e-3, {"RMSPROP": 0.99}.get(name, 0.9), 0.999, 0.0])
    for _ in range(60):  # Adam's v at 0.999 a step: below the smallest normal after 49
        optimizer.update_unchecked(getattr(optimizer, name), w, g, s1, s2, hyper)
    assert not s1.any() and (name != "ADAM" or not s2.any()), (s1, s2)
    np.testing.assert_array_equal(w, before)


def test_strided_input_views_give_the_right_answer(rng):
    x, W, b = _layer_inputs(rng, 12, 9, 4, np.float64)
    wide = np.zeros((12, 18))
    wide[:, ::2] = x
    out = kernels.affine_relu_forward(wide[:, ::2], np.asfortranarray(W), b, np.empty((12, 4)))
    np.testing.assert_allclose(out, np.maximum(x @ W + b, 0), rtol=1e-12)


# -- called from the user's own @njit code -----------------------------------


@njit
def _user_loss(x, W1, b1, W2, b2, t):
    hidden = np.empty((x.shape[0], W1.shape[1]), x.dtype)
    kernels.affine_relu_forward(x, W1, b1, hidden)
    z = np.empty((x.shape[0], W2.shape[1]), x.dtype)
    kernels.affine_forward(hidden, W2, b2, z)
    dz = np.empty_like(z)
    return kernels.softmax_cross_entropy(z, t, dz), dz


@njit
def _user_backward(dz, hidden, W2, x, dW2, db2, dhid, dW1, db1, W1, lr):
    kernels.affine_relu_backward(dz, hidden, W2, dW2, db2, dhid)
    kernels.affine_backward_params(x, dhid, dW1, db1)
    kernels.sgd_update(W1, dW1, lr)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_kernels_callable_from_user_njit_code(rng, dtype):
    net = reference.TwoLayerNet(20, 6, 4, weight_init_std=0.5, seed=3)
    x = rng.random((9, 20))
    t = rng.integers(0, 4, 9)
    p = {k: v.astype(dtype) for k, v in net.params.items()}
    loss, dz = _user_loss(x.astype(dtype), p["W1"], p["b1"], p["W2"], p["b2"], t)
    assert_matches_reference(loss, net.loss(x, t), dtype)
    grads = net.gradient(x, t)
    hidden = np.maximum(x @ net.params["W1"] + net.params["b1"], 0).astype(dtype)
    dW2, db2, dhid = np.empty((6, 4), dtype), np.empty(4, dtype), np.empty((9, 6), dtype)
    dW1, db1 = np.empty((20, 6), dtype), np.empty(6, dtype)
    W1 = p["W1"].copy()
    _user_backward(dz, hidden, p["W2"], x.astype(dtype), dW2, db2, dhid, dW1, db1, W1, 0.5)
    for got, key in ((dW2, "W2"), (db2, "b2"), (dW1, "W1"), (db1, "b1")):
        assert_matches_reference(got, grads[key], dtype, float(np.abs(grads[key]).max()) * 10)
    assert_matches_reference(W1, net.params["W1"] - 0.5 * grads["W1"], dtype, 1.0)


def test_user_njit_code_gets_the_documented_errors(rng):
    x, W, b = _layer_inputs(rng, 4, 3, 2, np.float64)
    with pytest.raises(ValueError, match="'out' must have shape"):
        _user_loss_bad_out(x, W, b)
    z = rng.standard_normal((4, 3))
    with pytest.raises(ValueError, match="labels must lie in"):
        _user_softmax(z, np.array([0, 1, 3, 2]))
    with pytest.raises(TypeError, match="'W' is float32"):
        _user_affine(x, W.astype(np.float32), b, np.empty((4, 2)))


@njit
def _user_loss_bad_out(x, W, b):
    return kernels.affine_relu_forward(x, W, b, np.empty((x.shape[0], W.shape[1] + 1)))


@njit
def _user_softmax(z, t):
    return kernels.softmax_cross_entropy(z, t, np.empty_like(z))


@njit
def _user_affine(x, W, b, out):
    return kernels.affine_relu_forward(x, W, b, out)


@pytest.mark.parametrize("x_kind", ["float32", "float64", "uint8 codes"])
def test_prefetching_the_next_batch_changes_nothing(rng, x_kind):
    """train_step_unchecked's next_idx is a cache hint: with it (any rows, the last row of X,
    none at all) the step gives the same bits as without it."""
    from fastnet import TwoLayerNet

    dtype = np.float64 if x_kind == "float64" else np.float32
    codes = rng.integers(0, 256, (40, 12)).astype(np.uint8)
    x, divisor = (codes, 255.0) if x_kind == "uint8 codes" else (codes.astype(dtype) / 255, 1.0)
    t = rng.integers(0, 3, 40)
    idx = rng.integers(0, 40, 19)
    results = []
    for next_idx in (None, np.array([39, 0, 39, 17]), rng.integers(0, 40, 19), idx[:0]):
        net = TwoLayerNet(12, 7, 3, weight_init_std=0.5, dtype=dtype, seed=1)
        args = (x, t, idx, net._live_params(), net._grads, net._workspace(19).work, 0.3, divisor)
        loss = (
            kernels.train_step_unchecked(*args) if next_idx is None else kernels.train_step_unchecked(*args, next_idx)
        )
        results.append((loss, b"".join(p.tobytes() for p in net._live_params())))
    assert all(r == results[0] for r in results[1:])
