"""Chapter 8's DeepConvNet on the layer engine, against its reference twin (float64), by gradcheck,
and trained by the book's loop and by steps."""

import numpy as np
import pytest
from support import FLOAT_DTYPES, assert_matches_reference

from fastnet import DeepConvNet, optim, reference
from fastnet.gradcheck import compare_gradients


def small(filters):
    return [{"filter_num": n, "filter_size": 3, "pad": p, "stride": 1} for n, p in zip(filters, (1, 1, 1, 2, 1, 1))]


SMALL = small((2, 2, 3, 3, 4, 4))  # every conv on unfolded windows
WIDER = small((8, 8, 9, 9, 10, 10))  # all by weight tiles, dx for all but the first (kernels.conv.uses_weight_tiles)


def twins(dtype=np.float64, ratio=0.3, seed=2, filters=SMALL):
    net = DeepConvNet((1, 12, 12), *filters, hidden_size=6, output_size=4, dropout_ratio=ratio, dtype=dtype,
                      seed=seed)  # fmt: skip
    masks = reference.CounterMasks(net.dropout_seed)
    ref = reference.DeepConvNet((1, 12, 12), filters, 6, 4, ratio, seed=seed, dropout_uniforms=masks)
    return net, ref, masks


def problem(n=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 1, 12, 12)), rng.integers(0, 4, n)


def test_the_books_architecture_and_initialisation():
    net = DeepConvNet(seed=0)
    shapes = {k: v.shape for k, v in net.params.items()}
    assert shapes["W1"] == (16, 1, 3, 3) and shapes["W4"] == (32, 32, 3, 3) and shapes["W6"] == (64, 64, 3, 3)
    assert shapes["W7"] == (64 * 4 * 4, 50) and shapes["W8"] == (50, 10)
    fan_ins = [9, 144, 144, 288, 288, 576, 1024, 50]
    for i, fan_in in enumerate(fan_ins, start=1):  # He: std √(2 / fan-in)
        assert net.params[f"W{i}"].std() == pytest.approx(np.sqrt(2 / fan_in), rel=0.25 if i == 1 else 0.08)
    ref = reference.DeepConvNet(seed=0)
    assert all(np.array_equal(net.params[k], ref.params[k].astype(np.float32)) for k in ref.params)


@pytest.mark.parametrize("filters", [SMALL, WIDER])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_equals_the_reference_in_test_and_training_mode(dtype, filters):
    net, ref, masks = twins(dtype, filters=filters)
    x, t = problem()
    assert_matches_reference(net.predict(x.astype(dtype)), ref.predict(x), dtype)  # dropout: (1 - ratio) scaling
    masks.step = net.dropout_step
    assert_matches_reference(net.predict(x, train_flg=True, advance=False), ref.predict(x, train_flg=True), dtype)
    assert net.loss(x, t) == pytest.approx(ref.loss(x, t), rel=1e-5 if dtype == np.float32 else 1e-12)
    grads, ref_grads = net.gradient(x, t), ref.gradient(x, t)
    for key in ref_grads:
        assert_matches_reference(grads[key], ref_grads[key], dtype, np.abs(ref_grads[key]).max() + 1e-12)
    assert net.dropout_step == 1  # the next pass draws fresh masks


@pytest.mark.parametrize("make", [lambda: (optim.SGD(0.05), reference.SGD(0.05)),
                                  lambda: (optim.Adam(0.01), reference.Adam(0.01))])  # fmt: skip
@pytest.mark.parametrize("filters", [SMALL, WIDER])
def test_steps_follow_the_reference_in_float64(make, filters):
    net, ref, masks = twins(filters=filters)
    x, t = problem(40, seed=1)
    batches = np.random.default_rng(2).integers(0, 40, (4, 8))
    opt, ref_opt = make()
    losses = net.steps(x.reshape(40, -1), t, batches, opt)
    for s, b in enumerate(batches):
        masks.step = s
        ref_opt.update(ref.params, ref.gradient(x[b], t[b]))
        assert losses[s] == pytest.approx(ref.last_loss, rel=1e-9)
    for key in ref.params:
        np.testing.assert_allclose(net.params[key], ref.params[key], rtol=1e-8, atol=1e-11, err_msg=key)
    np.testing.assert_allclose(net.predict(x), ref.predict(x), rtol=1e-8, atol=1e-11)


# WIDER's seed: one whose pre-activations all lie farther than the difference step (1e-4) from
# ReLU's kink; with 8+ filters per layer most seeds put one of thousands there, and the central
# difference straddles it (the analytic gradients equal the reference's to 1e-15 either way).
@pytest.mark.parametrize("ratio,filters,seed", [(0.0, SMALL, 2), (0.3, SMALL, 2), (0.3, WIDER, 5)])
def test_gradcheck_float64(ratio, filters, seed):
    net, _, _ = twins(ratio=ratio, filters=filters, seed=seed)
    for i in range(1, 9):  # biases off zero: a conv padded by 2 has outputs that see only padding, at the ReLU kink
        net.params[f"b{i}"][...] = np.linspace(0.05, 0.15, net.params[f"b{i}"].size)
    x, t = problem(3)
    report = compare_gradients(net.gradient(x, t, advance=False), net.numerical_gradient(x, t), threshold=1e-5)
    assert report.passed, str(report)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_the_books_loop_ends_where_steps_ends(dtype):
    x, t = problem(30, seed=3)
    rows = x.reshape(30, -1).astype(dtype)
    batches = np.random.default_rng(4).integers(0, 30, (4, 6))
    fused, looped = twins(dtype)[0], twins(dtype)[0]
    fused.steps(rows, t, batches, optim.Adam(0.01))
    opt = optim.Adam(0.01)
    for b in batches:
        opt.update(looped.params, looped.gradient(rows[b], t[b]))
    assert fused._flat.tobytes() == looped._flat.tobytes() and fused.dropout_step == looped.dropout_step == 4


def test_each_pass_draws_fresh_masks():
    net, _, _ = twins()
    x, t = problem()
    a, b = net.predict(x, train_flg=True), net.predict(x, train_flg=True)
    assert not np.array_equal(a, b) and net.dropout_step == 2
    assert np.array_equal(net.predict(x), net.predict(x)) and net.dropout_step == 2


@pytest.mark.parametrize("kwargs,words", [
    ({"conv_param_4": {"filter_num": 32, "filter_size": 3, "pad": 3, "stride": 1}}, "does not fit"),
    ({"dropout_ratio": 1.0}, "dropout_ratio must lie in [0, 1)"),
    ({"conv_param_1": {"filter_num": -1}}, "filter_num'] must be a positive integer"),
    ({"input_dim": (1, 27, 27)}, "does not fit"),
])  # fmt: skip
def test_bad_arguments(kwargs, words):
    with pytest.raises(ValueError) as info:
        DeepConvNet(**kwargs)
    assert words in str(info.value)
