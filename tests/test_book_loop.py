"""The book's own training loop (``grads = net.gradient(x, t); optimizer.update(net.params, grads)``,
as its ``Trainer`` and every chapter 6 script train) against fastnet's ``steps``: the same weights,
running statistics and mask counter, bit for bit."""

import itertools

import numpy as np
import pytest
from support import FLOAT_DTYPES

from fastnet import MultiLayerNet, NetStack, optim, reference
from fastnet.gradcheck import compare_gradients
from fastnet.weights import load_weights, save_weights

SETTINGS = [(False, False), (True, False), (False, True), (True, True)]  # (batch norm, dropout)
OPTIMIZERS = [
    lambda: optim.SGD(0.1), lambda: optim.Momentum(0.05), lambda: optim.Nesterov(0.05), lambda: optim.AdaGrad(0.05),
    lambda: optim.RMSprop(0.01), lambda: optim.Adam(0.01),
]  # fmt: skip


def problem(n=60, d=17, classes=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, d)), rng.integers(0, classes, n), rng.integers(0, n, (5, 12))


def twins(settings, dtype, seed=4, d=17, classes=5):
    batchnorm, dropout = settings
    make = lambda: MultiLayerNet(d, [9, 7], classes, weight_decay_lambda=0.01, use_dropout=dropout,  # noqa: E731
                                 dropout_ration=0.3, use_batchnorm=batchnorm, dtype=dtype, seed=seed)  # fmt: skip
    return make(), make()


def state(net):
    return (net._flat.tobytes(), net._running_mean.tobytes(), net._running_var.tobytes(), net.dropout_step)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("settings,make_optimizer", list(itertools.product(SETTINGS, OPTIMIZERS)))
def test_the_books_loop_ends_where_steps_ends(settings, make_optimizer, dtype):
    x, t, batches = problem()
    x = x.astype(dtype)
    fused, looped = twins(settings, dtype)
    fused.steps(x, t, batches, make_optimizer())
    opt = make_optimizer()
    for b in batches:
        grads = looped.gradient(x[b], t[b])
        opt.update(looped.params, grads)
    assert state(looped) == state(fused)
    assert looped.dropout_step == len(batches)
    if settings[0]:
        assert np.abs(looped._running_var).min() > 0  # the statistics moved
    np.testing.assert_array_equal(looped.predict(x), fused.predict(x))


def test_each_step_draws_fresh_masks():
    x, t, _ = problem()
    net, _ = twins((False, True), np.float64)
    first, second = net.gradient(x[:20], t[:20]), net.gradient(x[:20], t[:20])
    assert not np.array_equal(first["W1"], second["W1"])  # same weights and batch, other masks
    assert net.dropout_step == 2


def test_the_books_own_optimizers_drive_the_live_params():
    """The book's optimizer classes update ``params`` in place with numpy: the net sees it."""
    x, t, batches = problem()
    fused, looped = twins((True, True), np.float64)
    fused.steps(x, t, batches, optim.Adam(0.01))
    opt = reference.Adam(0.01)
    for b in batches:
        opt.update(looped.params, looped.gradient(x[b], t[b]))
    for key in fused.params:
        np.testing.assert_allclose(looped.params[key], fused.params[key], rtol=1e-12, atol=1e-14, err_msg=key)
    np.testing.assert_allclose(looped._running_var, fused._running_var, rtol=1e-12)
    assert looped.dropout_step == fused.dropout_step


@pytest.mark.parametrize("dropout", [False, True])
def test_batchnorm_net_follows_the_reference_in_the_books_loop(dropout):
    """float64, the reference's MultiLayerNet drawing the same masks, both trained by the book's loop.
    (Momentum, not Adam: the biases under a batch norm get gradients that are rounding noise, which
    Adam scales up to steps of ~lr.)"""
    x, t, batches = problem(n=80, seed=2)
    net = MultiLayerNet(17, [9, 8, 7], 5, use_batchnorm=True, use_dropout=dropout, dropout_ration=0.2,
                        dtype=np.float64, seed=6)  # fmt: skip
    masks = reference.CounterMasks(net.dropout_seed)
    ref = reference.MultiLayerNet(17, [9, 8, 7], 5, use_batchnorm=True, use_dropout=dropout, dropout_ration=0.2,
                                  seed=6, dropout_uniforms=masks)  # fmt: skip
    opt, ref_opt = optim.Momentum(0.05), reference.Momentum(0.05)
    for b in np.concatenate([batches, batches]):
        masks.step = net.dropout_step
        opt.update(net.params, net.gradient(x[b], t[b]))
        ref_opt.update(ref.params, ref.gradient(x[b], t[b]))
    for key in ref.params:
        np.testing.assert_allclose(net.params[key], ref.params[key], rtol=1e-9, atol=1e-12, err_msg=key)
    for l in range(1, 4):
        layer = ref.layers[f"BatchNorm{l}"]
        np.testing.assert_allclose(net.running[f"running_mean{l}"], layer.running_mean, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(net.running[f"running_var{l}"], layer.running_var, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(net.predict(x), ref.predict(x), rtol=1e-9, atol=1e-12)


def test_training_mode_predict_and_loss_advance_as_the_books_and_advance_false_does_not():
    x, t, _ = problem()
    net, twin = twins((True, True), np.float64)
    z = net.predict(x[:20], train_flg=True, advance=False)
    assert state(net) == state(twin)
    assert np.array_equal(net.predict(x[:20], train_flg=True), z)  # the same masks: then it advances
    assert net.dropout_step == 1 and np.abs(net._running_var).min() > 0
    twin.loss(x[:20], t[:20], train_flg=True)
    assert state(twin) == state(net)
    before = state(net)
    net.predict(x), net.loss(x, t), net.accuracy(x, t)  # test mode changes nothing
    assert state(net) == before
    net.gradient(x[:20], t[:20], advance=False)
    assert state(net) == before


@pytest.mark.parametrize("settings", SETTINGS[1:])
def test_gradient_checking_sees_the_same_masks_and_statistics(settings):
    x, t, _ = problem(n=9, d=11)
    net, _ = twins(settings, np.float64, d=11)
    net.gradient(x, t)  # some state first: the checks compare against the next pass
    before = state(net)
    numerical = net.numerical_gradient(x, t)
    assert state(net) == before  # thousands of loss evaluations changed nothing
    tolerance = 1e-5 if settings[0] else 1e-6
    report = compare_gradients(net.gradient(x, t, advance=False), numerical, threshold=tolerance)
    assert report.passed, str(report)
    report = compare_gradients(net.gradient(x, t), numerical, threshold=tolerance)  # the book's order
    assert report.passed, str(report)
    assert net.dropout_step == before[3] + 1


def test_a_resumed_run_continues_bit_for_bit(tmp_path):
    x, t, batches = problem()
    whole, half = twins((True, True), np.float32)
    x = x.astype(np.float32)
    whole.steps(x, t, np.concatenate([batches, batches]), optim.SGD(0.1))
    half.steps(x, t, batches, optim.SGD(0.1))
    save_weights(tmp_path / "w.npz", half)
    for resumed in (
        load_weights(tmp_path / "w.npz"),
        load_weights(tmp_path / "w.npz", twins((True, True), np.float32, seed=9)[0]),
    ):
        assert resumed.dropout_step == len(batches)
        resumed.steps(x, t, batches, optim.SGD(0.1))
        assert state(resumed) == state(whole)


def test_stack_members_keep_the_books_loop_semantics():
    x, t, batches = problem()
    nets = [twins((True, True), np.float64, seed=s)[0] for s in (1, 2)]
    alone = [twins((True, True), np.float64, seed=s)[0] for s in (1, 2)]
    stack = NetStack(nets, [optim.SGD(0.1), optim.SGD(0.1)])
    stack.steps(x, t, batches[:2])
    for b in batches[2:]:  # a member trained by the book's loop, inside the stack
        opt = stack.optimizers[0]
        opt.update(nets[0].params, nets[0].gradient(x[b], t[b]))
    stack.steps(x, t, batches[:1])
    ref = alone[0]
    ref.steps(x, t, np.concatenate([batches, batches[:1]]), optim.SGD(0.1))
    assert nets[0].dropout_step == ref.dropout_step == 6
    for key in ref.params:  # the stack's kernel follows the member's own step to rounding
        np.testing.assert_allclose(nets[0].params[key], ref.params[key], rtol=1e-10, atol=1e-13, err_msg=key)
    np.testing.assert_allclose(nets[0]._running_var, ref._running_var, rtol=1e-10)
