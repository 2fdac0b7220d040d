"""fastnet.MultiLayerNet and fastnet.optim against the reference's numpy twins, and their errors."""

import itertools
import tracemalloc

import numba
import numpy as np
import pytest
from numba.core.runtime import _nrt_python, rtsys
from support import FLOAT_DTYPES, assert_matches_reference

from fastnet import MultiLayerNet, TwoLayerNet, optim, reference
from fastnet.gradcheck import compare_gradients

OPTIMIZERS = ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam"]


def problem(n=9, d=13, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, d)), rng.integers(0, classes, n)


def pair(hidden, activation="relu", init="relu", decay=0.0, dtype=np.float64, seed=3, d=13, classes=4):
    net = MultiLayerNet(d, hidden, classes, activation, init, decay, dtype=dtype, seed=seed)
    ref = reference.MultiLayerNet(d, hidden, classes, activation, init, decay, seed=seed)
    return net, ref


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_same_seed_same_initial_weights_as_reference(dtype):
    net, ref = pair([7, 5], init="xavier", dtype=dtype)
    assert list(net.params) == ["W1", "b1", "W2", "b2", "W3", "b3"]
    for key in ref.params:
        np.testing.assert_array_equal(net.params[key], ref.params[key].astype(dtype))
    assert net.params["W1"].std() == pytest.approx(np.sqrt(1 / 13), rel=0.3)


COMBOS = list(itertools.product(["relu", "sigmoid"], ["he", "xavier", 0.3], [0.0, 0.1], [1, 2, 3, 4]))


@pytest.mark.parametrize("activation,init,decay,depth", COMBOS)
def test_gradient_matches_reference_and_central_differences(activation, init, decay, depth):
    x, t = problem()
    net, ref = pair([6, 5, 4, 6][:depth], activation, init, decay)
    grads, ref_grads = net.gradient(x, t), ref.gradient(x, t)
    assert net.loss(x, t) == pytest.approx(ref.loss(x, t), rel=1e-12)
    for key in ref_grads:
        np.testing.assert_allclose(grads[key], ref_grads[key], rtol=1e-10, atol=1e-13)
    report = compare_gradients(grads, net.numerical_gradient(x, t), threshold=1e-6)
    assert report.passed, str(report)


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_first_five_steps_equal_the_references(name, activation):
    x, t = problem()
    net, ref = pair([6, 5], activation, decay=0.05)
    opt, ref_opt = getattr(optim, name)(lr=0.05), getattr(reference, name)(lr=0.05)
    for _ in range(5):
        loss = net.step(x, t, opt)
        assert loss == pytest.approx(ref.loss(x, t), rel=1e-10)
        ref_opt.update(ref.params, ref.gradient(x, t))
    for key in ref.params:
        np.testing.assert_allclose(net.params[key], ref.params[key], rtol=1e-10, atol=1e-14)
    assert opt.iter == 5


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_book_update_interface_works_on_reference_networks(name):
    """optimizer.update(params, grads) as the book calls it, on a reference network's dicts."""
    x, t = problem()
    _, ref = pair([6])
    _, twin = pair([6])
    opt, ref_opt = getattr(optim, name)(), getattr(reference, name)()
    for _ in range(3):
        opt.update(ref.params, ref.gradient(x, t))
        ref_opt.update(twin.params, twin.gradient(x, t))
    for key in ref.params:
        np.testing.assert_allclose(ref.params[key], twin.params[key], rtol=1e-12, atol=1e-15)


def test_float32_steps_follow_the_float64_reference():
    x, t = problem(64, 30, 5)
    net, ref = pair([20, 10], dtype=np.float32, d=30, classes=5)
    opt, ref_opt = optim.Adam(), reference.Adam()
    for _ in range(5):
        net.step(x.astype(np.float32), t, opt)
        ref_opt.update(ref.params, ref.gradient(x, t))
    for key in ref.params:
        assert_matches_reference(net.params[key], ref.params[key], np.float32, float(np.abs(ref.params[key]).max()))


def test_integer_and_one_hot_labels_agree():
    x, t = problem()
    net, _ = pair([6, 5])
    g_int, g_hot = net.gradient(x, t), net.gradient(x, np.eye(4)[t])
    for key in g_int:
        np.testing.assert_array_equal(g_int[key], g_hot[key])
    assert net.accuracy(x, t) == net.accuracy(x, np.eye(4)[t])


def test_steps_equal_step_indices_one_by_one():
    x, t = problem(200, 13, 4, seed=2)
    batches = np.random.default_rng(0).integers(0, 200, (6, 32))
    a, _ = pair([8, 8])
    b, _ = pair([8, 8])
    opt_a, opt_b = optim.Momentum(0.1), optim.Momentum(0.1)
    losses = a.steps(x, t, batches, opt_a)
    for s in range(6):
        assert b.step_indices(x, t, batches[s], opt_b) == losses[s]
    for key in a.params:
        np.testing.assert_array_equal(a.params[key], b.params[key])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_bitwise_identical_with_one_or_two_threads(dtype):
    rng = np.random.default_rng(5)
    x, t = rng.random((400, 784)).astype(dtype), rng.integers(0, 10, 400)
    batches = rng.integers(0, 400, (5, 128))
    results = []
    original = numba.get_num_threads()
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            net = MultiLayerNet(784, [100, 100, 100, 100], 10, dtype=dtype, seed=1)
            losses = net.steps(x, t, batches, optim.Adam()).tolist()
            results.append((losses, [net.params[k].tobytes() for k in net.params]))
    finally:
        numba.set_num_threads(original)
    assert results[0] == results[1]


def test_params_are_live_and_assignable():
    x, t = problem()
    net, _ = pair([6])
    before = net.loss(x, t)
    net.params["b2"][0] += 1.0  # in place, as the book's numerical_gradient does
    assert net.loss(x, t) != before
    net.params["W1"] = np.zeros((13, 6))  # a new array: its values are copied in
    assert net.predict(x).shape == (9, 4) and not net.params["W1"].any()
    net.params["W1"] = np.zeros((13, 7))
    with pytest.raises(ValueError, match=r"params\['W1'\] must be an array of shape \(13, 6\)"):
        net.predict(x)


def test_divergence_leaves_the_last_finite_weights():
    x, t = problem()
    net, _ = pair([6], init=5.0, dtype=np.float32)
    losses = net.steps((x * 1e3).astype(np.float32), t, np.tile(np.arange(9), (50, 1)), optim.SGD(1e30))
    assert not np.isfinite(losses[-1]) and len(losses) < 50
    assert all(np.isfinite(v).all() for v in net.params.values())


def test_training_learns():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((4, 20)) * 2
    t = rng.integers(0, 4, 600)
    x = (centres[t] + rng.standard_normal((600, 20))).astype(np.float32)
    net = MultiLayerNet(20, [32, 32], 4, seed=0)
    net.steps(x, t, rng.integers(0, 600, (300, 32)), optim.Adam())
    assert net.accuracy(x, t) > 0.9


@pytest.mark.parametrize("args,error,words", [
    (([],), ValueError, "hidden_size_list must not be empty"),
    (("100",), TypeError, "hidden_size_list must be a list"),
    (([10, 2.5],), TypeError, "hidden_size_list[1] must be an integer"),
    (([10, 0],), ValueError, "hidden_size_list[1] must be at least 1"),
    (([10], "tanh"), ValueError, "activation must be 'relu' or 'sigmoid'"),
    (([10], "relu", "glorot"), ValueError, "weight_init_std must be"),
    (([10], "relu", "he", -0.1), ValueError, "weight_decay_lambda must be finite and >= 0"),
    (([10], "relu", "he", float("nan")), ValueError, "weight_decay_lambda must be finite and >= 0"),
])  # fmt: skip
def test_bad_network_arguments(args, error, words):
    with pytest.raises(error) as info:
        MultiLayerNet(5, *args[:1], 3, *args[1:])
    assert words in str(info.value)


@pytest.mark.parametrize("make,error,words", [
    (lambda: optim.SGD(0), ValueError, "lr must be a finite number > 0"),
    (lambda: optim.Adam(lr=float("nan")), ValueError, "lr must be a finite number > 0"),
    (lambda: optim.SGD("0.1"), TypeError, "lr must be a real number"),
    (lambda: optim.Momentum(momentum=1.0), ValueError, "momentum must lie in [0, 1)"),
    (lambda: optim.Nesterov(momentum=-0.1), ValueError, "momentum must lie in [0, 1)"),
    (lambda: optim.RMSprop(decay_rate=1.5), ValueError, "decay_rate must lie in [0, 1)"),
    (lambda: optim.Adam(beta1=1.0), ValueError, "beta1 must lie in [0, 1)"),
    (lambda: optim.Adam(beta2=-1e-3), ValueError, "beta2 must lie in [0, 1)"),
])  # fmt: skip
def test_bad_optimizer_arguments(make, error, words):
    with pytest.raises(error) as info:
        make()
    assert words in str(info.value)


def test_one_optimizer_for_two_shapes_is_an_error():
    x, t = problem()
    a, _ = pair([6])
    b, _ = pair([7])
    opt = optim.Adam()
    a.step(x, t, opt)
    before = {k: v.copy() for k, v in b.params.items()}
    with pytest.raises(ValueError, match="give each network its own optimizer"):
        b.step(x, t, opt)
    for key in before:
        np.testing.assert_array_equal(b.params[key], before[key])


def test_bad_training_inputs():
    x, t = problem()
    net, _ = pair([6])
    with pytest.raises(ValueError, match="labels must lie in"):
        net.step(x, np.full(9, 4), optim.SGD())
    with pytest.raises(ValueError, match=r"x must have shape \(N, 13\)"):
        net.step(x[:, :5], t, optim.SGD())
    with pytest.raises(ValueError, match="NaN or infinity in row 3"):
        bad = x.copy()
        bad[3, 2] = np.nan
        net.step(bad, t, optim.SGD())
    with pytest.raises(ValueError, match="batch index lies outside"):
        net.step_indices(x, t, np.array([0, 9]), optim.SGD())
    with pytest.raises(TypeError, match="give an optimizer of fastnet.optim or a learning rate"):
        net.step(x, t, "adam")


def test_one_hidden_layer_is_the_books_two_layer_network():
    """MultiLayerNet([H]) with a numeric init computes what TwoLayerNet does on the same weights."""
    x, t = problem()
    two = TwoLayerNet(13, 6, 4, weight_init_std=0.3, dtype=np.float64, seed=1)
    multi = MultiLayerNet(13, [6], 4, weight_init_std=0.3, dtype=np.float64, seed=1)
    for key in two.params:
        np.testing.assert_array_equal(multi.params[key], two.params[key])
    two.step(x, t, 0.1)
    multi.step(x, t, 0.1)
    for key in two.params:
        np.testing.assert_allclose(multi.params[key], two.params[key], rtol=1e-13, atol=1e-16)


def test_steps_allocate_nothing_that_grows_with_the_sizes():
    """The count of NRT allocations per step (Numba's parallel launcher wraps the arrays each region
    touches; the weight-gradient tasks are planned in the workspace) is the same for a tiny net on
    2 rows, all in one block, and for 784-100x4-10 on 128 in two blocks (a buffer per block or per
    row chunk would change it); all of it is freed; numpy/Python allocate nothing that peaks above
    4 KiB."""
    rng = np.random.default_rng(0)
    counts = {}
    was_enabled = _nrt_python.memsys_stats_enabled()
    _nrt_python.memsys_enable_stats()
    try:
        for batch, sizes in ((2, (5, [3, 4, 2, 3], 2)), (128, (784, [100, 100, 100, 100], 10))):
            x, t = rng.random((300, sizes[0]), dtype=np.float32), rng.integers(0, sizes[2], 300)
            net, opt, idx = MultiLayerNet(*sizes, seed=0), optim.Adam(), np.arange(batch)
            net.step_indices(x, t, idx, opt)  # the workspace exists from here on
            before = rtsys.get_allocation_stats()
            net.step_indices(x, t, idx, opt)
            after = rtsys.get_allocation_stats()
            assert after.alloc - before.alloc == after.free - before.free, "NRT memory was not given back"
            counts[batch] = after.alloc - before.alloc
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(20):
            net.step_indices(x, t, idx, opt)
        peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
    finally:
        if not was_enabled:
            _nrt_python.memsys_disable_stats()
    assert counts[2] == counts[128], counts
    assert peak < 4096, f"20 steps allocated {peak} bytes of Python/numpy memory at their peak"
