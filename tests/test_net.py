"""fastnet.TwoLayerNet: the reference's interface, no allocation per step, determinism, training."""

import tracemalloc

import numba
import numpy as np
import pytest
from numba.core.runtime import _nrt_python, rtsys
from support import FLOAT_DTYPES, assert_matches_reference

from fastnet import TwoLayerNet, optim, reference


def blobs(n=600, d=20, classes=4, seed=0):
    """A fixed synthetic problem: Gaussian blobs around random centres."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, d)) * 2
    t = rng.integers(0, classes, n)
    x = centres[t] + rng.standard_normal((n, d))
    return x, t


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_same_seed_same_initial_weights_as_reference(dtype):
    net, ref = TwoLayerNet(30, 8, 5, dtype=dtype, seed=7), reference.TwoLayerNet(30, 8, 5, seed=7)
    for key in ref.params:
        assert net.params[key].dtype == dtype
        np.testing.assert_array_equal(net.params[key], ref.params[key].astype(dtype))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_interface_matches_reference(rng, dtype):
    ref = reference.TwoLayerNet(30, 8, 5, weight_init_std=0.3, seed=7)
    net = TwoLayerNet(30, 8, 5, weight_init_std=0.3, dtype=dtype, seed=7)
    x = rng.random((11, 30))
    t = rng.integers(0, 5, 11)
    assert_matches_reference(net.predict(x.astype(dtype)), ref.predict(x), dtype, 10.0)
    assert_matches_reference(net.loss(x.astype(dtype), t), ref.loss(x, t), dtype)
    assert net.accuracy(x.astype(dtype), t) == ref.accuracy(x, t)
    grads, ref_grads = net.gradient(x.astype(dtype), t), ref.gradient(x, t)
    for key in ref_grads:
        assert_matches_reference(grads[key], ref_grads[key], dtype, float(np.abs(ref_grads[key]).max()) * 10)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_integer_and_one_hot_labels_agree(rng, dtype):
    net = TwoLayerNet(12, 6, 4, weight_init_std=0.5, dtype=dtype, seed=1)
    x = rng.random((9, 12)).astype(dtype)
    t = rng.integers(0, 4, 9)
    one_hot = np.eye(4)[t]
    assert net.loss(x, t) == net.loss(x, one_hot)
    assert net.accuracy(x, t) == net.accuracy(x, one_hot)
    g_int, g_hot = net.gradient(x, t), net.gradient(x, one_hot)
    for key in g_int:
        np.testing.assert_array_equal(g_int[key], g_hot[key])


def test_params_are_live():
    """The book's numerical_gradient perturbs params in place: the net must see it."""
    net = TwoLayerNet(4, 3, 2, dtype=np.float64, seed=0)
    x, t = np.ones((2, 4)), np.array([0, 1])
    before = net.loss(x, t)
    net.params["b2"][0] += 1.0
    assert net.loss(x, t) != before
    net.params["W1"] = np.zeros((4, 3))  # replacing an array works too
    assert net.predict(x).shape == (2, 2)
    net.params["W1"] = np.zeros((4, 4))
    with pytest.raises(ValueError, match=r"params\['W1'\]"):
        net.predict(x)


def test_step_returns_loss_and_updates_like_the_book(rng):
    net = TwoLayerNet(10, 5, 3, weight_init_std=0.5, dtype=np.float64, seed=4)
    x, t = rng.random((6, 10)), rng.integers(0, 3, 6)
    loss = net.loss(x, t)
    grads = net.gradient(x, t)
    before = {k: v.copy() for k, v in net.params.items()}
    assert net.step(x, t, 0.5) == pytest.approx(loss, rel=1e-14)
    for key in before:
        np.testing.assert_allclose(net.params[key], before[key] - 0.5 * grads[key], rtol=1e-14, atol=1e-16)


def _nrt_allocations(func, *args):
    before = rtsys.get_allocation_stats()
    func(*args)
    after = rtsys.get_allocation_stats()
    assert after.alloc - before.alloc == after.free - before.free, "NRT memory was not given back"
    return after.alloc - before.alloc


def test_step_allocates_no_array_memory():
    """No buffer is allocated per step: the count of NRT allocations per step is the
    same for tiny and huge batches (within each of the step's two code paths) (Numba's
    parallel launcher wraps each array a parallel region touches in a small meminfo, a constant per step; any buffer
    sized by the batch, or a copy made by np.dot per block, would change the count),
    all of it is freed, and numpy/Python allocate nothing that peaks above 4 KiB."""
    x, t = blobs(1000, 784, 10)
    x = x.astype(np.float32)
    counts = {}
    was_enabled = _nrt_python.memsys_stats_enabled()
    _nrt_python.memsys_enable_stats()
    try:
        # layer 1 split by rows (batch >= hidden) and by columns: the step has two shapes of work
        for batch, hidden in ((1, 1), (100, 50), (1000, 300), (20, 100), (50, 400)):
            net = TwoLayerNet(784, hidden, 10, seed=0)
            idx = np.arange(batch)
            xb, tb = x[:batch].copy(), t[:batch].copy()
            net.step_indices(x, t, idx, 0.1)
            net.step(xb, tb, 0.1)  # workspaces exist from here on
            counts[batch, hidden] = (
                _nrt_allocations(net.step_indices, x, t, idx, 0.1),
                _nrt_allocations(net.step, xb, tb, 0.1),
            )
        tracemalloc.start()
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(20):
            net.step_indices(x, t, idx, 0.1)
            net.step(xb, tb, 0.1)
        peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
    finally:
        if not was_enabled:
            _nrt_python.memsys_disable_stats()
    by_rows = {counts[k] for k in ((1, 1), (100, 50), (1000, 300))}
    by_columns = {counts[k] for k in ((20, 100), (50, 400))}
    assert len(by_rows) == 1 and len(by_columns) == 1, counts
    assert all(len(set(c)) == 1 for c in counts.values()), counts  # step() == step_indices()
    assert peak < 4096, f"20 steps allocated {peak} bytes of Python/numpy memory at their peak"


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_bitwise_identical_with_one_or_two_threads(dtype):
    x, t = blobs(300, 784, 10, seed=3)
    x = x.astype(dtype)
    results = []
    original = numba.get_num_threads()
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            net = TwoLayerNet(784, 50, 10, dtype=dtype, seed=11)
            rng = np.random.default_rng(5)
            losses = [net.step_indices(x, t, rng.integers(0, 300, 100), 0.1) for _ in range(15)]
            losses.append(net.step(x[:37], t[:37], 0.1))
            results.append((losses, {k: v.copy() for k, v in net.params.items()}))
    finally:
        numba.set_num_threads(original)
    (losses1, params1), (losses2, params2) = results
    assert losses1 == losses2
    for key in params1:
        assert params1[key].tobytes() == params2[key].tobytes(), key


def test_training_lowers_loss_and_tracks_the_reference():
    x, t = blobs()
    net = TwoLayerNet(20, 16, 4, weight_init_std=0.1, dtype=np.float32, seed=2)
    ref = reference.TwoLayerNet(20, 16, 4, weight_init_std=0.1, seed=2)
    rng = np.random.default_rng(9)
    x32 = x.astype(np.float32)
    first = net.loss(x32, t)
    for _ in range(200):
        idx = rng.integers(0, len(x), 32)
        net.step_indices(x32, t, idx, 0.1)
        ref.step(x32[idx].astype(np.float64), t[idx], 0.1)
    assert net.loss(x32, t) < 0.3 * first
    assert net.accuracy(x32, t) > 0.9
    for key in ref.params:
        scale = float(np.abs(ref.params[key]).max())
        np.testing.assert_allclose(net.params[key], ref.params[key], rtol=1e-4, atol=1e-4 * scale)


@pytest.mark.parametrize("call", ["step", "loss", "gradient", "accuracy"])
@pytest.mark.parametrize(
    "x,t,error,words",
    [
        (np.ones((3, 5)), np.array([0, 1, 2]), ValueError, "x must have shape (N, 4)"),
        (np.ones((3, 4), np.int64), np.array([0, 1, 2]), TypeError, "x must hold floats"),
        (np.ones((3, 4)), np.array([0, 1, 3]), ValueError, "labels must lie in [0, C)"),
        (np.ones((3, 4)), np.array([0, -1, 1]), ValueError, "labels must lie in [0, C)"),
        (np.ones((3, 4)), np.array([0.0, 1.0, 2.0]), TypeError, "integer dtype"),
        (np.ones((3, 4)), np.array([0, 1]), ValueError, "t must have shape (3,)"),
        (np.ones((3, 4)), np.full((3, 3), 0.5), ValueError, "must be one-hot"),
        (np.ones((0, 4)), np.array([], np.int64), ValueError, "N >= 1"),
    ],
)
def test_net_bad_inputs(call, x, t, error, words):
    net = TwoLayerNet(4, 3, 3, seed=0)
    args = (x, t, 0.1) if call == "step" else (x, t)
    with pytest.raises(error) as info:
        getattr(net, call)(*args)
    assert words in str(info.value)


def test_step_indices_out_of_range():
    net = TwoLayerNet(4, 3, 3, seed=0)
    x, t = np.ones((5, 4), np.float32), np.array([0, 1, 2, 0, 1])
    with pytest.raises(ValueError, match="batch index lies outside"):
        net.step_indices(x, t, np.array([0, 5]), 0.1)
    with pytest.raises(ValueError, match="lr must be a finite number >= 0"):
        net.step(x, t, float("inf"))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_steps_equals_step_indices_one_by_one(dtype):
    x, t = blobs(300, 30, 4, seed=4)
    x = x.astype(dtype)
    batches = np.random.default_rng(6).integers(0, 300, (9, 17))
    one_by_one, together = (TwoLayerNet(30, 8, 4, weight_init_std=0.3, dtype=dtype, seed=3) for _ in range(2))
    expected = [one_by_one.step_indices(x, t, idx, 0.2) for idx in batches]
    losses = together.steps(x, t, batches, 0.2)
    assert losses.tolist() == expected
    for key in one_by_one.params:
        assert together.params[key].tobytes() == one_by_one.params[key].tobytes(), key


def test_steps_checks_every_batch_before_the_first_step():
    net = TwoLayerNet(4, 3, 3, seed=0)
    before = {k: v.copy() for k, v in net.params.items()}
    x, t = np.ones((5, 4), np.float32), np.array([0, 1, 2, 0, 1])
    with pytest.raises(ValueError, match=r"batch index lies outside.*1, 5"):
        net.steps(x, t, np.array([[0, 1], [2, 5]]), 0.1)
    with pytest.raises(ValueError, match="labels must lie in"):
        net.steps(x, np.array([0, 1, 2, 0, 7]), np.array([[0, 1], [2, 4]]), 0.1)
    with pytest.raises(ValueError, match="2-D integer array"):
        net.steps(x, t, np.array([0, 1]), 0.1)
    for key in before:
        np.testing.assert_array_equal(net.params[key], before[key])


def test_steps_stop_at_the_first_non_finite_loss():
    x, t = blobs(200, 10, 3, seed=1)
    net = TwoLayerNet(10, 6, 3, weight_init_std=1.0, dtype=np.float64, seed=0)
    losses = net.steps(x, t, np.random.default_rng(0).integers(0, 200, (50, 20)), 1e30)
    assert len(losses) < 50 and not np.isfinite(losses[-1]) and np.isfinite(losses[:-1]).all()
    assert all(np.isfinite(p).all() for p in net.params.values())  # the last finite weights


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("n,hidden", [(1, 5), (3, 40), (1100, 7), (10_001, 13)])
def test_accuracy_and_predict_on_many_rows(dtype, n, hidden):
    """Row passes (ROWS_PER_PASS), chunks (PREDICT_CHUNK), and the column split (n < hidden)."""
    rng = np.random.default_rng(n)
    x, t = rng.standard_normal((n, 16)), rng.integers(0, 4, n)
    ref = reference.TwoLayerNet(16, hidden, 4, weight_init_std=0.5, seed=2)
    net = TwoLayerNet(16, hidden, 4, weight_init_std=0.5, dtype=dtype, seed=2)
    z = net.predict(x.astype(dtype))
    assert_matches_reference(z, ref.predict(x), dtype, 10.0)
    assert net.accuracy(x.astype(dtype), t) == np.mean(np.argmax(z, axis=1) == t)


def test_accuracy_names_a_non_finite_input_row():
    net = TwoLayerNet(4, 3, 3, seed=0)
    x = np.ones((12_000, 4), np.float32)
    x[10_005, 2] = np.nan
    with pytest.raises(ValueError, match=r"x contains NaN or infinity \(row 5\)"):
        net.accuracy(x, np.zeros(12_000, np.int64))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("divisor", [255, 1])
def test_pixel_codes_give_the_same_training_bit_for_bit(dtype, divisor):
    from fastnet.train import pixel_codes

    rng = np.random.default_rng(divisor)
    pixels = rng.integers(0, 256, (1500, 30), dtype=np.uint8)
    x = pixels.astype(dtype) / dtype(divisor)  # the book's normalize when divisor = 255
    t = rng.integers(0, 4, 1500)
    codes, found = pixel_codes(x)
    assert found == divisor and codes.dtype == np.uint8
    np.testing.assert_array_equal(codes, pixels)
    batches = rng.integers(0, 1500, (12, 64))
    floats, coded = (TwoLayerNet(30, 9, 4, weight_init_std=0.1, dtype=dtype, seed=1) for _ in range(2))
    assert floats.steps(x, t, batches, 0.1).tolist() == coded.steps(codes, t, batches, 0.1, found).tolist()
    for key in floats.params:
        assert floats.params[key].tobytes() == coded.params[key].tobytes(), key


def test_pixel_codes_refuse_data_they_cannot_reproduce():
    from fastnet.train import pixel_codes

    x = np.random.default_rng(0).integers(0, 256, (2000, 8)).astype(np.float32) / 255
    assert pixel_codes(x)[1] == 255
    x[1500, 3] = np.nextafter(x[1500, 3], 2)  # one value off the grid, after the probe rows
    assert pixel_codes(x) is None
    assert pixel_codes(np.full((3, 2), 0.5, np.float32)) is None
    assert pixel_codes(np.full((3, 2), 256.0, np.float32)) is None


def test_codes_need_their_divisor():
    net = TwoLayerNet(4, 3, 3, seed=0)
    codes, t = np.ones((5, 4), np.uint8), np.array([0, 1, 2, 0, 1])
    with pytest.raises(ValueError, match="x_divisor goes with uint8"):
        net.steps(codes, t, np.array([[0, 1]]), 0.1)
    with pytest.raises(ValueError, match="x_divisor must be finite and positive"):
        net.steps(codes, t, np.array([[0, 1]]), 0.1, 0.0)


def test_steps_name_a_non_finite_input_row():
    net = TwoLayerNet(4, 3, 3, seed=0)
    x, t = np.ones((5, 4), np.float32), np.array([0, 1, 2, 0, 1])
    x[3, 1] = np.inf
    with pytest.raises(ValueError, match=r"NaN or infinity in row.*3"):
        net.steps(x, t, np.array([[0, 1], [2, 3], [0, 1]]), 0.1)


@pytest.mark.parametrize("name", ["Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam"])
def test_every_optimizer_trains_the_two_layer_net_as_the_reference(name):
    """Optimizers other than SGD run fused on the layer engine, over the net's own parameters."""
    net = TwoLayerNet(12, 7, 4, weight_init_std=0.5, dtype=np.float64, seed=3)
    ref = reference.TwoLayerNet(12, 7, 4, weight_init_std=0.5, seed=3)
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((30, 12)), rng.integers(0, 4, 30)
    batches = rng.integers(0, 30, (3, 6))
    opt, ref_opt = getattr(optim, name)(0.05), getattr(reference, name)(0.05)
    losses = [*net.steps(x, t, batches, opt), net.step(x[:5], t[:5], opt), net.step_indices(x, t, np.arange(7), opt)]
    ref_losses = []
    for b in [*batches, np.arange(5), np.arange(7)]:
        ref_losses.append(ref.loss(x[b], t[b]))
        ref_opt.update(ref.params, ref.gradient(x[b], t[b]))
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-10)
    for key in ref.params:
        np.testing.assert_allclose(net.params[key], ref.params[key], rtol=1e-9, atol=1e-12, err_msg=key)
    # the same numbers for the hand-fused SGD step and the engine's: an array assigned to params counts for both
    W2 = net.params["W2"] + 0.5
    net.params["W2"] = W2.copy()
    ref.params["W2"][...] = W2  # the book's layers hold the arrays they were built with: in place, there
    for step_opt, step_ref in ((0.1, reference.SGD(0.1)), (opt, ref_opt)):
        assert net.step(x[:9], t[:9], step_opt) == pytest.approx(ref.loss(x[:9], t[:9]), rel=1e-10)
        step_ref.update(ref.params, ref.gradient(x[:9], t[:9]))
    for key in ref.params:
        np.testing.assert_allclose(net.params[key], ref.params[key], rtol=1e-9, atol=1e-12, err_msg=key)
