"""Dropout and batch normalization in MultiLayerNet against the reference's numpy twins."""

import itertools
import os
import subprocess
import sys

import numpy as np
import pytest
from support import FLOAT_DTYPES, assert_matches_reference

from fastnet import MultiLayerNet, optim, reference
from fastnet.gradcheck import compare_gradients
from fastnet.kernels.dropout import dropout_mask_unchecked
from fastnet.weights import load_weights, save_weights

SETTINGS = [(True, False), (False, True), (True, True)]  # (batch norm, dropout)


def problem(n=9, d=13, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, d)), rng.integers(0, classes, n)


def pair(hidden, batchnorm, dropout, activation="relu", decay=0.0, dtype=np.float64, ratio=0.3, d=13, classes=4):
    """A fastnet net and its reference twin drawing the same dropout masks."""
    net = MultiLayerNet(d, hidden, classes, activation, "relu", decay, use_dropout=dropout, dropout_ration=ratio,
                        use_batchnorm=batchnorm, dtype=dtype, seed=3)  # fmt: skip
    masks = reference.CounterMasks(net.dropout_seed)
    ref = reference.MultiLayerNet(d, hidden, classes, activation, "relu", decay, use_dropout=dropout,
                                  dropout_ration=ratio, use_batchnorm=batchnorm, seed=3,
                                  dropout_uniforms=masks)  # fmt: skip
    return net, ref, masks


@pytest.mark.parametrize("seed,step,layer,shape,ratio", [
    (0, 0, 1, (1, 1), 0.5), (7, 3, 2, (33, 17), 0.2), (2**63 - 1, 10**9, 6, (5, 100), 0.9), (1, 1, 1, (64, 64), 0.0),
])  # fmt: skip
def test_dropout_masks_equal_their_numpy_twin(seed, step, layer, shape, ratio):
    mask = dropout_mask_unchecked(seed, step, layer, ratio, np.zeros(shape))
    np.testing.assert_array_equal(mask, reference.counter_uniforms(seed, step, layer, shape) > ratio)


def test_dropout_masks_keep_the_right_share_and_differ_by_every_counter():
    base = dropout_mask_unchecked(1, 0, 1, 0.3, np.zeros((200, 100)))
    assert base.mean() == pytest.approx(0.7, abs=0.01)
    assert abs(np.corrcoef(base[:, :-1].ravel(), base[:, 1:].ravel())[0, 1]) < 0.02  # neighbours independent
    for other in [(2, 0, 1), (1, 1, 0 + 1), (1, 0, 2)]:
        mask = dropout_mask_unchecked(*other, 0.3, np.zeros((200, 100)))
        if other != (1, 0, 1):
            assert (mask != base).mean() == pytest.approx(2 * 0.3 * 0.7, abs=0.02)


@pytest.mark.parametrize("settings,activation", list(itertools.product(SETTINGS, ["relu", "sigmoid"])))
def test_gradient_matches_reference_and_central_differences(settings, activation):
    x, t = problem()
    net, ref, _ = pair([6, 5], *settings, activation=activation, decay=0.05)
    assert list(net.params) == list(ref.params)
    assert net.loss(x, t, train_flg=True, advance=False) == pytest.approx(ref.loss(x, t, train_flg=True), rel=1e-12)
    numerical = net.numerical_gradient(x, t)  # the masks of the next pass, as the book's check: before gradient
    grads, ref_grads = net.gradient(x, t), ref.gradient(x, t)
    for key in ref_grads:
        np.testing.assert_allclose(grads[key], ref_grads[key], rtol=1e-9, atol=1e-12, err_msg=key)
    # batch norm makes some of W1's gradient entries nearly cancel: their relative error is noisier
    report = compare_gradients(grads, numerical, threshold=1e-5 if settings[0] else 1e-6)
    assert report.passed, str(report)


@pytest.mark.parametrize("settings", SETTINGS)
@pytest.mark.parametrize("batch", [2, 9, 40])
def test_training_follows_the_reference_step_by_step(settings, batch):
    """Params, running statistics, and train and test losses after each of 6 Momentum steps."""
    x, t = problem(n=batch, seed=batch)
    net, ref, masks = pair([6, 5, 7], *settings, decay=0.01)
    opt, ref_opt = optim.Momentum(0.1), reference.Momentum(0.1)
    for _ in range(6):
        masks.step = net.dropout_step
        decay = 0.5 * 0.01 * sum(np.sum(ref.params[f"W{l}"] ** 2) for l in range(1, 5))
        grads = ref.gradient(x, t)  # its training-mode forward moves the running statistics once, as a step
        assert net.step(x, t, opt) == pytest.approx(ref.last_layer.loss + decay, rel=1e-10)
        ref_opt.update(ref.params, grads)
        assert net.loss(x, t) == pytest.approx(ref.loss(x, t), rel=1e-10)
    for key in ref.params:
        np.testing.assert_allclose(net.params[key], ref.params[key], rtol=1e-10, atol=1e-13, err_msg=key)
    for l in range(1, 4) if settings[0] else ():
        layer = ref.layers[f"BatchNorm{l}"]
        np.testing.assert_allclose(net.running[f"running_mean{l}"], layer.running_mean, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(net.running[f"running_var{l}"], layer.running_var, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(net.predict(x), ref.predict(x), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_many_steps_in_one_call_follow_the_reference(dtype):
    """steps() numbers each step's masks; float32 follows the float64 reference to rounding. (Not
    with Adam: the biases under a batch norm get gradients that are rounding noise, which Adam scales
    up to steps of ~lr.)"""
    x, t = problem(n=120, d=30, classes=5, seed=4)
    batches = np.random.default_rng(1).integers(0, 120, (5, 24))
    net, ref, masks = pair([20, 10], True, True, dtype=dtype, d=30, classes=5)
    opt, ref_opt = optim.Momentum(0.1), reference.Momentum(0.1)
    net.steps(x.astype(dtype), t, batches, opt)
    for s in range(5):
        masks.step = s
        ref_opt.update(ref.params, ref.gradient(x[batches[s]], t[batches[s]]))
    assert net.dropout_step == 5
    scale = max(float(np.abs(value).max()) for value in ref.params.values())
    for key in ref.params:
        assert_matches_reference(net.params[key], ref.params[key], dtype, scale)


def test_test_time_uses_running_statistics_and_scaling():
    x, t = problem(n=30)
    net, ref, _ = pair([6], False, True, ratio=0.4)
    np.testing.assert_allclose(net.predict(x), ref.predict(x), rtol=1e-12)  # (1 - ratio) scaling
    assert not np.allclose(net.predict(x), net.predict(x, train_flg=True))
    net, ref, _ = pair([6], True, False)
    net.step(x, t, 0.1)
    assert np.array_equal(net.predict(x), net.predict(x)) and not np.allclose(net.predict(x), net.predict(x, True))
    assert net.accuracy(x, t) == pytest.approx((net.predict(x).argmax(1) == t).mean())


def test_bitwise_identical_with_one_or_two_threads():
    code = (
        "import numpy as np; from fastnet import MultiLayerNet, optim\n"
        "rng = np.random.default_rng(5); x = rng.random((300, 100)).astype(np.float32)\n"
        "t = rng.integers(0, 10, 300); b = rng.integers(0, 300, (4, 128))\n"
        "net = MultiLayerNet(100, [64, 48], 10, use_dropout=True, use_batchnorm=True, seed=2)\n"
        "print(net.steps(x, t, b, optim.Adam()).tolist(), [v.tobytes().hex()[:2000] for v in net.params.values()])"
    )
    outputs = []
    for threads in ("1", "2"):
        env = {**os.environ, "NUMBA_NUM_THREADS": threads}
        outputs.append(
            subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        )
    assert outputs[0].stdout == outputs[1].stdout and outputs[0].stdout


def test_weights_file_keeps_batchnorm_and_dropout(tmp_path):
    x, t = problem(n=20)
    net, _, _ = pair([6, 5], True, True, ratio=0.25)
    net.steps(x, t, np.tile(np.arange(20), (3, 1)), optim.SGD(0.1))
    save_weights(tmp_path / "w.npz", net)
    loaded = load_weights(tmp_path / "w.npz")
    assert loaded.use_batchnorm and loaded.use_dropout and loaded.dropout_ratio == 0.25
    np.testing.assert_array_equal(loaded.predict(x), net.predict(x))


@pytest.mark.parametrize("kwargs,error,words", [
    ({"use_dropout": True, "dropout_ration": 1.0}, ValueError, "dropout_ratio must lie in [0, 1), got 1.0"),
    ({"use_dropout": True, "dropout_ratio": -0.1}, ValueError, "dropout_ratio must lie in [0, 1)"),
    ({"dropout_ratio": float("nan")}, ValueError, "dropout_ratio must lie in [0, 1)"),
    ({"dropout_ratio": "0.2"}, TypeError, "dropout_ratio must be a number"),
    ({"dropout_ration": 0.2, "dropout_ratio": 0.3}, ValueError, "disagree"),
])  # fmt: skip
def test_bad_dropout_arguments(kwargs, error, words):
    with pytest.raises(error) as info:
        MultiLayerNet(5, [4], 3, **kwargs)
    assert words in str(info.value)


def test_the_books_spelling_and_the_plain_one_agree():
    assert MultiLayerNet(5, [4], 3, dropout_ration=0.2).dropout_ratio == 0.2
    assert MultiLayerNet(5, [4], 3, dropout_ratio=0.2).dropout_ratio == 0.2


def test_batchnorm_training_needs_two_rows():
    x, t = problem()
    net, _, _ = pair([6], True, False)
    before = {k: v.copy() for k, v in net.params.items()}
    for call in (lambda: net.step(x[:1], t[:1], 0.1), lambda: net.gradient(x[:1], t[:1]),
                 lambda: net.predict(x[:1], train_flg=True)):  # fmt: skip
        with pytest.raises(ValueError, match="batch normalization in training needs a batch of at least 2 rows"):
            call()
    assert all(np.array_equal(before[k], net.params[k]) for k in before)
    assert net.predict(x[:1]).shape == (1, 4)  # test time: one row is fine
