"""NetStack: K networks trained together follow the trajectories they follow alone."""

import numpy as np
import pytest
from support import FLOAT_DTYPES, assert_matches_reference

from fastnet import MultiLayerNet, NetStack, TwoLayerNet, optim

SETTINGS = [{}, {"use_dropout": True, "dropout_ratio": 0.3}, {"use_batchnorm": True},
            {"use_batchnorm": True, "use_dropout": True, "activation": "sigmoid"}]  # fmt: skip


def problem(n=300, d=30, classes=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, d)), rng.integers(0, classes, n), rng.integers(0, n, (7, 24))


def members(dtype, options, k=3):
    nets = [MultiLayerNet(30, [12, 9], 5, dtype=dtype, seed=10 + i, weight_decay_lambda=0.01 * i, **options)
            for i in range(k)]  # fmt: skip
    return nets, [optim.Momentum(lr=0.05 * (i + 1), momentum=0.5 + 0.1 * i) for i in range(k)]


@pytest.mark.parametrize("options", SETTINGS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_each_member_follows_its_trajectory_alone(dtype, options):
    x, t, batches = problem()
    x = x.astype(dtype)
    alone, alone_opts = members(dtype, options)
    alone_losses = np.stack([net.steps(x, t, batches, opt) for net, opt in zip(alone, alone_opts)], axis=1)
    nets, opts = members(dtype, options)
    stack = NetStack(nets, opts)
    losses = stack.steps(x, t, batches)
    assert losses.shape == (7, 3)
    assert_matches_reference(losses, alone_losses, dtype)
    for net, twin in zip(nets, alone):
        scale = max(float(np.abs(v).max()) for v in twin.params.values())
        for key in twin.params:
            assert_matches_reference(net.params[key], twin.params[key], dtype, scale)
        for key in twin.running:
            assert_matches_reference(net.running[key], twin.running[key], dtype)
        assert net.dropout_step == twin.dropout_step == 7
    np.testing.assert_array_equal(stack.accuracy(x, t), [net.accuracy(x, t) for net in nets])


def test_members_may_use_different_optimizers():
    """The book's optimizer comparison in one stack: each member with its own rule."""
    x, t, batches = problem()
    names = ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam"]
    alone = [MultiLayerNet(30, [12, 9], 5, dtype=np.float64, seed=1) for _ in names]
    losses_alone = [net.steps(x, t, batches, getattr(optim, name)()) for net, name in zip(alone, names)]
    nets = [MultiLayerNet(30, [12, 9], 5, dtype=np.float64, seed=1) for _ in names]
    losses = NetStack(nets, [getattr(optim, name)() for name in names]).steps(x, t, batches)
    np.testing.assert_allclose(losses, np.stack(losses_alone, axis=1), rtol=1e-12)
    for net, twin in zip(nets, alone):
        for key in twin.params:
            np.testing.assert_allclose(net.params[key], twin.params[key], rtol=1e-12, atol=1e-15)


def test_nets_stay_usable_and_live():
    x, t, batches = problem()
    nets, opts = members(np.float64, {})
    stack = NetStack(nets, opts)
    stack.step(x[:24], t[:24])
    w_before = nets[1].params["W1"].copy()
    stack.steps(x, t, batches[:2])
    assert not np.array_equal(nets[1].params["W1"], w_before)  # the stack trains the net's own arrays
    np.testing.assert_array_equal(stack.accuracy(x, t), [net.accuracy(x, t) for net in nets])
    nets[0].step(x[:24], t[:24], opts[0])  # alone again, with its optimizer's state carried on
    assert opts[0].iter == 4
    nets[2].params["W2"][...] = 0  # in place: the stack sees it
    stack.step(x[:24], t[:24])
    assert np.abs(nets[2].params["W2"]).max() < 1


def test_a_diverging_member_is_frozen_and_the_others_go_on():
    x, t, batches = problem()
    nets = [MultiLayerNet(30, [12], 5, seed=i, weight_init_std=3.0) for i in range(3)]
    stack = NetStack(nets, [optim.SGD(0.1), optim.SGD(1e30), optim.SGD(0.1)])
    losses = stack.steps((x * 1e3).astype(np.float32), t, np.tile(batches, (4, 1)))
    assert stack.diverged == [1]
    assert np.isnan(losses[-1, 1]) and np.isfinite(losses[:, [0, 2]]).all()
    assert all(np.isfinite(v).all() for v in nets[1].params.values())


def test_bad_stacks():
    a = MultiLayerNet(30, [12], 5)
    with pytest.raises(ValueError, match="differ in hidden_size_list"):
        NetStack([a, MultiLayerNet(30, [13], 5)], [optim.SGD(), optim.SGD()])
    with pytest.raises(ValueError, match="an optimizer appears twice"):
        opt = optim.SGD()
        NetStack([a, MultiLayerNet(30, [12], 5)], [opt, opt])
    with pytest.raises(ValueError, match="2 networks but 1 optimizers"):
        NetStack([a, MultiLayerNet(30, [12], 5)], [optim.SGD()])
    with pytest.raises(TypeError, match="stacks MultiLayerNet networks, not TwoLayerNet"):
        NetStack([TwoLayerNet(30, 12, 5)], [optim.SGD()])
    with pytest.raises(ValueError, match="differ in dtype"):
        NetStack([a, MultiLayerNet(30, [12], 5, dtype=np.float64)], [optim.SGD(), optim.SGD()])


def test_bad_batches():
    x, t, batches = problem()
    stack = NetStack(*members(np.float64, {}))
    with pytest.raises(ValueError, match="labels must lie in"):
        stack.step(x[:5], np.full(5, 7))
    with pytest.raises(ValueError, match="batch index lies outside"):
        stack.steps(x, t, batches + 1000)
    bad = x.copy()
    bad[batches[0, 3], 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity in row"):
        stack.steps(bad, t, batches)


REMAINDERS = [(2, 3, 1), (2, 4, 0), (4, 5, 1), (8, 2, 2), (16, 3, 3), (16, 5, 0), (1, 3, 0)]  # blocks, K, alone


@pytest.mark.parametrize(("blocks", "k", "alone"), REMAINDERS)
def test_a_small_remainder_of_members_trains_alone_with_the_same_results(monkeypatch, blocks, k, alone):
    """K members over T blocks: the last K mod T train alone (each on every core) when (K mod T)² ≤ T;
    every member still follows its trajectory alone, and one diverging there is frozen."""
    from fastnet import _cores

    monkeypatch.setattr(_cores, "BLOCKS", blocks)
    x, t, batches = problem()
    twins, twin_opts = members(np.float64, {"use_dropout": True, "dropout_ratio": 0.3}, k)
    twin_losses = np.stack([net.steps(x, t, batches, opt) for net, opt in zip(twins, twin_opts)], axis=1)
    nets, opts = members(np.float64, {"use_dropout": True, "dropout_ratio": 0.3}, k)
    stack = NetStack(nets, opts)
    assert stack._trained_alone() == alone
    np.testing.assert_allclose(stack.steps(x, t, batches), twin_losses, rtol=1e-9)
    for net, twin in zip(nets, twins):
        for key in twin.params:
            np.testing.assert_allclose(net.params[key], twin.params[key], rtol=1e-9, atol=1e-12)
        assert net.dropout_step == twin.dropout_step
    opts[-1].lr = 1e30  # the last member (alone, where there is a remainder) diverges
    losses = stack.steps((x * 1e3), t, np.tile(batches, (4, 1)))
    assert stack.diverged == [k - 1] and np.isnan(losses[-1, -1]) and np.isfinite(losses[:, :-1]).all()


def test_a_stack_of_convnets_trains_each_as_alone():
    """Eight SimpleConvNets (each its own optimizer, weight decay... and seed) and DeepConvNets with
    dropout: every member ends bitwise where it ends trained alone on the same batches."""
    from fastnet import DeepConvNet, SimpleConvNet

    rng = np.random.default_rng(4)
    x, t = rng.random((40, 144)).astype(np.float32), rng.integers(0, 4, 40)
    batches = rng.integers(0, 40, (3, 8))
    conv = {"filter_num": 3, "filter_size": 3, "pad": 0, "stride": 1}
    deep = [{"filter_num": 2, "filter_size": 3, "pad": p, "stride": 1} for p in (1, 1, 1, 2, 1, 1)]
    kinds = [optim.SGD, optim.Momentum, optim.Nesterov, optim.AdaGrad, optim.RMSprop, optim.Adam, optim.Adam, optim.SGD]
    for make, count in ((lambda s: SimpleConvNet((1, 12, 12), conv, 6, 4, seed=s), 8),
                        (lambda s: DeepConvNet((1, 12, 12), *deep, hidden_size=5, output_size=4, dropout_ratio=0.3,
                                               seed=s), 2)):  # fmt: skip
        nets, alone = [make(s) for s in range(count)], [make(s) for s in range(count)]
        opts, alone_opts = [kinds[s](0.05) for s in range(count)], [kinds[s](0.05) for s in range(count)]
        stack = NetStack(nets, opts)
        losses = stack.steps(x, t, batches)
        for k, (net, opt) in enumerate(zip(alone, alone_opts)):
            assert np.array_equal(losses[:, k], net.steps(x, t, batches, opt))
            assert np.array_equal(nets[k]._flat, net._flat) and nets[k].dropout_step == net.dropout_step == 3
        assert np.array_equal(stack.accuracy(x, t), [net.accuracy(x, t) for net in alone])
    with pytest.raises(ValueError, match="differ in layers"):
        NetStack([SimpleConvNet((1, 12, 12), conv, 6, 4), SimpleConvNet((1, 12, 12), conv, 7, 4)],
                 [optim.SGD(), optim.SGD()])  # fmt: skip
    with pytest.raises(ValueError, match="labels must lie in"):
        NetStack([SimpleConvNet((1, 12, 12), conv, 6, 4)], [optim.SGD()]).steps(x, np.full(40, 9), batches)
