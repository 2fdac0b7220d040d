"""The layer engine on its own: random layer sequences (dense and conv; identity, ReLU and sigmoid;
batch norm per feature and per channel; dropout; pools; weight decay) against the same sequence
built from the reference's numpy layers (``fastnet.reference.sequential``): predict in test and
training mode, loss, gradient, running statistics, one step with each of the six optimizers;
gradcheck in float64; bitwise the same with 1, 2 and 8 threads, and the reference's results with
1, 3 and 5 blocks. Property-based: hypothesis draws the sequences."""

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from numba import njit, prange
from support import assert_matches_reference

from fastnet import kernels, optim, reference
from fastnet.gradcheck import compare_gradients, network_numerical_gradient
from fastnet.kernels import _simd, conv, records, schedule
from fastnet.reference.sequential import Sequential as ReferenceSequential
from fastnet.sequential import Sequential

OPTIMIZERS = {
    "SGD": (lambda: optim.SGD(0.05), lambda: reference.SGD(0.05)),
    "Momentum": (lambda: optim.Momentum(0.05), lambda: reference.Momentum(0.05)),
    "Nesterov": (lambda: optim.Nesterov(0.05), lambda: reference.Nesterov(0.05)),
    "AdaGrad": (lambda: optim.AdaGrad(0.05), lambda: reference.AdaGrad(0.05)),
    "RMSprop": (lambda: optim.RMSprop(0.01), lambda: reference.RMSprop(0.01)),
    "Adam": (lambda: optim.Adam(0.01), lambda: reference.Adam(0.01)),
}


def _fits(size, window, stride, pad):
    span = size + 2 * pad - window
    return span >= 0 and span % stride == 0


@st.composite
def layer_lists(draw):
    """(input shape, layers, classes): a random sequence the engine runs."""
    if draw(st.booleans()):
        shape = (draw(st.integers(1, 3)), draw(st.integers(3, 8)), draw(st.integers(3, 8)))
    else:
        shape = (draw(st.integers(1, 12)), 1, 1)
    act = st.sampled_from(["identity", "relu", "sigmoid"])
    decay = st.sampled_from([0.0, 0.0, 0.1])
    layers, (h, w) = [], shape[1:]
    for _ in range(draw(st.integers(0, 4))):
        kinds = ["affine", "batchnorm", "dropout"] + (["conv", "conv", "pool"] if h * w > 1 else [])
        kind = draw(st.sampled_from(kinds))
        if kind == "conv":
            fh, fw, pad, stride = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(0, 1)), 1
            if draw(st.booleans()) and _fits(h, fh, 2, pad) and _fits(w, fw, 2, pad):
                stride = 2
            if not (_fits(h, fh, stride, pad) and _fits(w, fw, stride, pad)):
                continue
            fn = draw(st.sampled_from([1, 2, 3, 8]))  # 8 filters on 8 channels: the weight tiles with dx
            layers.append(("conv", fn, fh, fw, stride, pad, draw(act), draw(decay)))
            h, w = (h + 2 * pad - fh) // stride + 1, (w + 2 * pad - fw) // stride + 1
        elif kind == "pool":
            size, pad = draw(st.integers(1, 2)), draw(st.integers(0, 1))
            stride = size if _fits(h, size, size, pad) and _fits(w, size, size, pad) else 1
            if pad >= size or not (_fits(h, size, stride, pad) and _fits(w, size, stride, pad)):
                continue
            layers.append(("pool", size, size, stride, pad))
            h, w = (h + 2 * pad - size) // stride + 1, (w + 2 * pad - size) // stride + 1
        elif kind == "affine":
            n = draw(st.integers(1, 9))
            layers.append(("affine", n, draw(act), draw(decay)))
            h, w = 1, 1
        elif kind == "batchnorm":
            layers.append(("batchnorm", draw(act), draw(st.sampled_from([0.9, 0.5]))))
        else:
            layers.append(("dropout", draw(st.sampled_from([0.0, 0.3]))))
    classes = draw(st.integers(2, 5))
    layers.append(("affine", classes, "identity", draw(decay)))
    if draw(st.integers(0, 3)) == 0:
        layers.append(("dropout", 0.25))
    return shape, layers, classes


def twins(shape, layers, dtype=np.float64, seed=0):
    """A network on the engine with random weights, and its reference twin in float64."""
    net = Sequential(shape, layers, dtype)
    rng = np.random.default_rng(seed)
    for key, value in net.params.items():
        if key.startswith("W"):
            fan_in = value.shape[0] if value.ndim == 2 else int(np.prod(value.shape[1:]))
            value[...] = rng.standard_normal(value.shape) / np.sqrt(fan_in)
        else:
            value[...] = (1.0 if key.startswith("gamma") else 0.0) + 0.2 * rng.standard_normal(value.shape)
    net.dropout_seed = seed + 11
    masks = reference.CounterMasks(net.dropout_seed)
    params = {key: value.astype(np.float64) for key, value in net.params.items()}
    return net, ReferenceSequential(shape, layers, params, masks), masks


def biases_before_batchnorm(layers):
    """The biases whose layer batch norm follows directly: their gradient is rounding noise (the mean
    subtraction cancels it), which an adaptive optimizer turns into lr-sized steps."""
    keys, weighted = set(), 0
    for spec, following in zip(layers, layers[1:] + [("end",)]):
        weighted += spec[0] in ("conv", "affine")
        act = spec[6] if spec[0] == "conv" else spec[2] if spec[0] == "affine" else None
        if act == "identity" and following[0] == "batchnorm":
            keys.add(f"b{weighted}")
    return keys


def problem(shape, classes, n, seed=1, one_hot=False):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, *shape))
    t = rng.integers(0, classes, n)
    return x, (np.eye(classes, dtype=np.int64)[t] if one_hot else t)


pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in exp:RuntimeWarning")  # the book's sigmoid
SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
A_CONVNET = ((2, 7, 6), [("conv", 8, 3, 2, 1, 1, "identity", 0.1), ("batchnorm", "relu"), ("pool", 2, 2, 1, 0),
                         ("conv", 8, 2, 2, 1, 1, "sigmoid"), ("batchnorm", "identity"), ("dropout", 0.3),
                         ("affine", 5, "sigmoid"), ("batchnorm", "relu", 0.5), ("affine", 3, "identity", 0.1),
                         ("dropout", 0.25)], 3)  # fmt: skip
A_DENSE_NET = ((7, 1, 1), [("batchnorm", "sigmoid"), ("affine", 4, "relu", 0.1), ("dropout", 0.5),
                           ("affine", 2, "identity")], 2)  # fmt: skip
A_ROW_LOCAL_NET = (
    (9, 1, 1),
    [
        ("affine", 6, "sigmoid", 0.1),
        ("dropout", 0.3),
        ("affine", 5, "relu"),
        ("dropout", 0.2),
        ("affine", 3, "identity"),
    ],
    3,
)  # fmt: skip  affine and dropout: one region per row block


@SETTINGS
@given(layer_lists(), st.integers(2, 6), st.booleans())
@example(A_CONVNET, 5, False)
@example(A_DENSE_NET, 2, True)
@example(A_ROW_LOCAL_NET, 5, True)
def test_random_sequences_equal_the_reference_in_float64(network, batch, one_hot):
    shape, layers, classes = network
    net, ref, masks = twins(shape, layers)
    x, t = problem(shape, classes, batch, one_hot=one_hot)
    assert_matches_reference(net.predict(x), ref.predict(x), np.float64)  # running statistics 0, as the book's
    masks.step = net.dropout_step
    train = ReferenceSequential(shape, layers, ref.params, masks)  # its own batch norms: the running statistics stay
    assert_matches_reference(net.predict(x, train_flg=True, advance=False), train.predict(x, True), np.float64)
    grads, ref_grads = net.gradient(x, t), ref.gradient(x, t)
    assert net.dropout_step == 1
    scale = max(np.abs(g).max() for g in ref_grads.values()) + 1e-12  # a bias before batch norm: pure rounding
    for key in ref_grads:
        np.testing.assert_allclose(grads[key], ref_grads[key], rtol=1e-9, atol=1e-11 * scale, err_msg=key)
    for key, value in ref.running_statistics().items():
        np.testing.assert_allclose(net.running[key], value, rtol=1e-12, atol=1e-14, err_msg=key)
    assert net.loss(x, t) == pytest.approx(ref.loss(x, t), rel=1e-11)  # test mode: the moved running statistics


@SETTINGS
@given(layer_lists(), st.sampled_from(sorted(OPTIMIZERS)))
@example(A_CONVNET, "Adam")
@example(A_ROW_LOCAL_NET, "Momentum")
def test_one_step_with_each_optimizer_equals_the_reference(network, name):
    shape, layers, classes = network
    net, ref, masks = twins(shape, layers, seed=3)
    x, t = problem(shape, classes, 4, seed=4)
    opt, ref_opt = (make() for make in OPTIMIZERS[name])
    for s in range(2):
        masks.step = s
        ref_loss = ref.loss(x, t, train_flg=True)
        assert net.step(x, t, opt) == pytest.approx(ref_loss, rel=1e-10)
        ref_opt.update(ref.params, ref.gradient(x, t))
    noise = biases_before_batchnorm(layers) if name in ("AdaGrad", "RMSprop", "Adam") else set()
    for key in set(ref.params) - noise:
        np.testing.assert_allclose(net.params[key], ref.params[key], rtol=1e-8, atol=1e-10, err_msg=key)


@SETTINGS
@given(layer_lists())
@example(A_CONVNET)
def test_float32_follows_the_float64_reference(network):
    shape, layers, classes = network
    net, ref, masks = twins(shape, layers, np.float32, seed=5)
    x, t = problem(shape, classes, 6, seed=6)
    assert_matches_reference(net.predict(x.astype(np.float32)), ref.predict(x), np.float32)
    assert net.loss(x.astype(np.float32), t) == pytest.approx(ref.loss(x, t), rel=1e-4)
    masks.step = 0
    z = net.predict(x.astype(np.float32), train_flg=True, advance=False)
    np.testing.assert_allclose(z, ref.predict(x, True), rtol=1e-4, atol=1e-4 * (np.abs(z).max() + 1))


@pytest.mark.parametrize("network", [A_CONVNET, A_DENSE_NET], ids=["convnet", "dense"])
def test_gradcheck_float64(network):
    """Smooth: sigmoids for ReLUs and no max pool (whose near-ties the differences straddle; the
    reference checks the pool's gradient). The central differences agree with backprop."""
    shape, layers, classes = network
    smooth = [tuple("sigmoid" if v == "relu" else v for v in spec) for spec in layers if spec[0] != "pool"]
    net, _, _ = twins(shape, smooth, seed=7)
    x, t = problem(shape, classes, 5, seed=8)
    analytic = net.gradient(x, t, advance=False)
    numeric = network_numerical_gradient(net, x, t, h=1e-5, train_flg=True, advance=False)  # h²: below 1e-9
    noise = biases_before_batchnorm(smooth)
    for key in noise:  # zero but for rounding, both ways
        assert np.abs(analytic[key]).max() < 1e-12 and np.abs(numeric[key]).max() < 1e-8
    report = compare_gradients({k: v for k, v in analytic.items() if k not in noise}, numeric, threshold=1e-5)
    assert report.passed, report.rows


def assert_test_time_equals_the_reference(shape, layers, classes, dtype, seed):
    """After one training pass of both twins (running statistics away from (0, 1): folded batch-norm maps
    are not trivial), predict on a batch and on one row, and accuracy, equal the reference's at test time.
    Returns (net, ref, x, t)."""
    net, ref, _ = twins(shape, layers, dtype, seed=seed)
    x, t = problem(shape, classes, 7, seed=seed + 1)
    net.gradient(x.astype(dtype), t)
    ref.gradient(x, t)
    for rows in (x, x[:1]):
        assert_matches_reference(net.predict(rows.astype(dtype)), ref.predict(rows), dtype)
    assert net.accuracy(x.astype(dtype), t) == (ref.predict(x).argmax(axis=1) == t).mean()
    return net, ref, x, t


# Convolutions whose test-time pass takes in the batch norm above them (no activation of their own,
# stride 1) and the pool above that (no padding): 2×2 windows at stride 2 (vectors of outputs), other
# windows, a sigmoid applied after the pool; a batch norm a stride-2 convolution keeps; a folded batch
# norm that ends the image layers; a padded pool (its winners kernel); odd sizes.
FUSED_NET = ((3, 10, 14), [("conv", 9, 3, 3, 1, 1, "identity"), ("batchnorm", "relu"), ("pool", 2, 2, 2, 0),
                           ("conv", 5, 2, 2, 1, 1, "relu"), ("pool", 2, 2, 2, 0),
                           ("conv", 4, 2, 2, 1, 1, "sigmoid"), ("pool", 2, 3, 1, 0),
                           ("conv", 3, 1, 1, 2, 0, "identity"), ("batchnorm", "relu"), ("pool", 2, 2, 1, 1),
                           ("conv", 6, 2, 2, 1, 0, "identity"), ("batchnorm", "identity"),
                           ("affine", 4, "relu"), ("affine", 3, "identity")], 3)  # fmt: skip


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_test_time_fusions_equal_the_reference(dtype):
    shape, layers, classes = FUSED_NET
    rec = records.layer_records(shape, layers)[0]
    assert [l for l in range(len(layers)) if schedule.folds_batchnorm(rec, l)] == [0, 10]
    assert [l for l in (0, 3, 5, 7) if schedule.fuses_pool(rec, l, l + schedule.folds_batchnorm(rec, l))] == [0, 3, 5]
    assert schedule.image_layers(rec) == 12  # the folded batch norm on top included
    assert_test_time_equals_the_reference(shape, layers, classes, dtype, seed=9)


# Convolutions whose training pass pools their output (schedule.pools_in_training: stride 1, ReLU or no
# activation, the backward by weight tiles, a 2×2 pool at stride 2 above): the first layer (no dx), one
# without activation and 9 filters (a tile of 8 and one of 1; on shifted copies, conv.uses_shifted); a
# sigmoid's pool and a stride-1 pool stay apart. Then two on shifted copies, the first layer's 5×5
# (no dx) and a 4×4 plane; then forwards by Winograd's transform into wide rows (pad 2: as long as the
# output's) and into shifted copies' rows.
POOLED_NETS = [
    ((3, 12, 20), [("conv", 8, 3, 3, 1, 1, "relu"), ("pool", 2, 2, 2, 0),
                   ("conv", 9, 3, 3, 1, 1, "identity"), ("pool", 2, 2, 2, 0),
                   ("conv", 8, 2, 2, 1, 1, "sigmoid"), ("pool", 2, 2, 2, 0),
                   ("conv", 8, 1, 1, 1, 0, "relu"), ("pool", 2, 2, 1, 0),
                   ("affine", 5, "relu"), ("affine", 3, "identity")], 3),
    ((1, 12, 12), [("conv", 8, 5, 5, 1, 0, "relu"), ("pool", 2, 2, 2, 0),
                   ("conv", 8, 3, 3, 1, 1, "relu"), ("pool", 2, 2, 2, 0), ("affine", 3, "identity")], 3),
    ((32, 12, 16), [("conv", 32, 3, 3, 1, 1, "relu"), ("pool", 2, 2, 2, 0),
                    ("conv", 16, 3, 3, 1, 2, "relu"), ("pool", 2, 2, 2, 0), ("affine", 3, "identity")], 3),
    ((32, 8, 8), [("conv", 32, 3, 3, 1, 1, "relu"), ("pool", 2, 2, 2, 0),
                  ("conv", 16, 3, 3, 1, 1, "identity"), ("pool", 2, 2, 2, 0), ("affine", 3, "identity")], 3),
]  # fmt: skip
SHIFTED_POOLED = [{2}, {0, 2}, set(), {0, 2}]  # the pooled layers on shifted copies, float32 and float64 alike
WINOGRAD_POOLED = [set(), set(), {0, 2}, {0, 2}]  # the pooled layers whose forward runs by Winograd's transform


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("batch", [1, 7])
@pytest.mark.parametrize("case", range(len(POOLED_NETS)))
def test_convolutions_pooled_in_training_equal_the_reference(case, dtype, batch):
    shape, layers, classes = POOLED_NETS[case]
    rec = records.layer_records(shape, layers)[0]
    pooled = [l for l in range(len(layers)) if schedule.pools_in_training(rec, l)]
    assert pooled == [0, 2]
    itemsize = np.dtype(dtype).itemsize
    shifted = {
        l
        for l in pooled
        if conv.uses_shifted(
            *(rec[l, k] for k in (records.H, records.W, records.FH, records.FW, records.PAD)), itemsize
        )
    }
    assert shifted == SHIFTED_POOLED[case]
    assert {l for l in pooled if schedule.conv_by_winograd(rec, l, itemsize)} == WINOGRAD_POOLED[case]
    net, ref, masks = twins(shape, layers, dtype, seed=12)
    x, t = problem(shape, classes, batch, seed=13, one_hot=batch == 7)
    xd = x.astype(dtype)
    rtol, atol = (1e-9, 1e-11) if dtype == np.float64 else (2e-4, 2e-5)
    assert_matches_reference(net.predict(xd, train_flg=True, advance=False), ref.predict(x, True), dtype)
    grads, ref_grads = net.gradient(xd, t), ref.gradient(x, t)
    scale = max(np.abs(g).max() for g in ref_grads.values())
    for key in ref_grads:
        np.testing.assert_allclose(grads[key], ref_grads[key], rtol=rtol, atol=atol * scale, err_msg=key)
    if dtype == np.float64:  # (Adam's steps turn float32's rounding of a near-zero gradient into lr-sized ones)
        opt, ref_opt = optim.Adam(0.01), reference.Adam(0.01)
        for _ in range(2):
            net.step(xd, t, opt)
            ref_opt.update(ref.params, ref.gradient(x, t))
        for key in ref.params:
            np.testing.assert_allclose(net.params[key], ref.params[key], rtol=1e-8, atol=1e-10, err_msg=key)


# At test time each direct-tile convolution writes its output into the padded input of the one
# above (schedule.handoff): by its tiles where the padded widths agree (a 1×1 convolution below one
# without padding; 3×3 below 3×3, both padded by 1), by the cut where they differ, an activation
# the tiles do not apply, the pool writing it, its tiles running on shifted copies (conv.uses_shifted:
# its wide rows long against its output's); float32's vectors too long for a 2×2 image's plane.
HANDOFF_NETS = [
    ((2, 9, 11), [("conv", 4, 1, 1, 1, 0, "relu"), ("conv", 6, 3, 3, 1, 0, "relu"),
                  ("conv", 5, 3, 3, 1, 1, "identity"), ("batchnorm", "relu"), ("conv", 4, 3, 3, 1, 2, "sigmoid"),
                  ("conv", 3, 2, 2, 1, 0, "relu"), ("pool", 2, 2, 2, 0), ("conv", 4, 3, 3, 1, 1, "relu"),
                  ("conv", 3, 3, 3, 1, 1, "relu"), ("affine", 3, "identity")], 3),
    ((1, 2, 2), [("conv", 3, 3, 3, 1, 1, "relu"), ("conv", 2, 3, 3, 1, 1, "relu"), ("affine", 3, "identity")], 3),
]  # fmt: skip
TILES, COPY, OWN = schedule.BY_TILES, schedule.BY_COPY, schedule.OWN_BUFFER
AVX2 = _simd.VECTOR_BYTES == 32
# the first layers' float32 tiles: their last vector of 16 pixels (AVX-512) ends past the padded plane
# above, of 8 (AVX2) inside it; on 4×5 and 2×2 planes float64's vectors of 4 (AVX2) round a wide row of
# tiles up less than a shifted one: those layers' tiles run on shifted copies, and cut their output
LAST_VECTOR_INSIDE = TILES if AVX2 else COPY
SMALL_PLANE = COPY if AVX2 else TILES
HANDOFFS = [  # layer: where it leaves its output, float64 and float32
    {0: (TILES, LAST_VECTOR_INSIDE), 1: (COPY, COPY), 2: (COPY, COPY), 4: (COPY, COPY), 5: (COPY, COPY),
     7: (SMALL_PLANE, TILES), 8: (OWN, OWN)},
    {0: (SMALL_PLANE, LAST_VECTOR_INSIDE), 1: (OWN, OWN)},
]  # fmt: skip
SHIFTED = [  # the layers whose tiles run on shifted copies, float64 and float32
    ({1, 2, 7, 8}, {1, 2}) if AVX2 else ({1, 2}, {1, 2, 5}),
    ({0, 1}, set()) if AVX2 else (set(), set()),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", range(len(HANDOFF_NETS)))
def test_each_convolution_writes_the_padded_input_of_the_next(case, dtype):
    shape, layers, classes = HANDOFF_NETS[case]
    rec = records.layer_records(shape, layers)[0]
    l1, size = schedule.image_layers(rec), np.dtype(dtype).itemsize
    where = {l: schedule.handoff(rec, l, l1, size)[2] for l in range(l1) if schedule.takes_padded(rec, l, l1)}
    assert where == {l: modes[dtype == np.float32] for l, modes in HANDOFFS[case].items()}
    shifted = {l for l in where if conv.uses_shifted(*rec[l, [records.H, records.W, records.FH, records.FW]],
                                                     rec[l, records.PAD], size)}  # fmt: skip
    assert shifted == SHIFTED[case][dtype == np.float32]
    net, ref, x, t = assert_test_time_equals_the_reference(shape, layers, classes, dtype, seed=9)
    train_out = net.predict(x.astype(dtype), train_flg=True, advance=False)  # the training pass's tiles
    assert_matches_reference(train_out, ref.predict(x, True), dtype)


# 3×3 convolutions at test time by Winograd's transform (winograd.uses_winograd): into the padded input
# above by a copy (never by its tiles, where the widths agree), taking in a batch norm and the pool above
# it, pad 2 and a sigmoid applied after it, odd sizes; 16 channels on an 8×8 plane; 15 filters (and the
# 15 channels above them) by tiles.
WINOGRAD_NETS = [
    ((32, 8, 10), [("conv", 32, 3, 3, 1, 1, "relu"), ("conv", 33, 3, 3, 1, 0, "identity"), ("batchnorm", "relu"),
                   ("pool", 2, 2, 2, 0), ("conv", 16, 3, 3, 1, 2, "sigmoid"), ("affine", 3, "identity")], 3),
    ((16, 8, 8), [("conv", 16, 3, 3, 1, 1, "relu"), ("conv", 15, 3, 3, 1, 1, "relu"), ("conv", 16, 3, 3, 1, 1, "relu"),
                  ("affine", 4, "identity")], 4),
]  # fmt: skip
WINOGRAD_LAYERS = [{0: COPY, 1: COPY, 4: OWN}, {0: COPY}]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", range(len(WINOGRAD_NETS)))
def test_winograd_at_test_time_equals_the_reference(case, dtype):
    shape, layers, classes = WINOGRAD_NETS[case]
    rec = records.layer_records(shape, layers)[0]
    l1 = schedule.image_layers(rec)
    by_winograd = [l for l in range(len(layers)) if schedule.conv_by_winograd(rec, l, np.dtype(dtype).itemsize)]
    assert {l: schedule.handoff(rec, l, l1, np.dtype(dtype).itemsize)[2] for l in by_winograd} == WINOGRAD_LAYERS[case]
    assert_test_time_equals_the_reference(shape, layers, classes, dtype, seed=11)


def test_a_pass_moves_the_running_statistics_only_when_asked():
    shape, layers, classes = A_CONVNET
    net, _, _ = twins(shape, layers)
    x, t = problem(shape, classes, 4)
    net.gradient(x, t, advance=False)
    net.predict(x, train_flg=True, advance=False)
    net.predict(x)
    assert all((v == 0).all() for v in net.running.values()) and net.dropout_step == 0
    net.predict(x, train_flg=True)
    moved = {k: v.copy() for k, v in net.running.items()}
    assert net.dropout_step == 1 and all((v != 0).any() for v in moved.values())
    with pytest.raises(ValueError, match="at least 2 rows"):
        net.step(x[:1], t[:1], 0.1)
    assert net.dropout_step == 1 and all(np.array_equal(net.running[k], moved[k]) for k in moved)


@pytest.mark.parametrize("layers,words", [
    ([], "at least one layer"),
    ([("affine", 3, "relu"), ("pool", 1, 1, 1, 0)], "the last layer must be affine"),
    ([("affine", 3, "relu"), ("batchnorm", "relu")], "the last layer must be affine"),
    ([("conv", 2, 3, 3, 1, 0, "relu")], "the last layer must be affine"),
    ([("affine", 3, "tanh")], "layer 1: unknown activation 'tanh'"),
    ([("affine", 3, 7)], "layer 1: unknown activation 7"),
    ([("dropout", 1.0), ("affine", 3, "relu")], "layer 1: the dropout ratio must lie in [0, 1)"),
    ([("batchnorm", "relu", 1.5), ("affine", 3, "relu")], "layer 1: the batch-norm momentum must lie in [0, 1]"),
    ([("affine", 3, "relu", -0.1)], "layer 1: weight decay must lie in [0, inf]"),
    ([("affine", 3, "relu", float("nan"))], "layer 1: weight decay must lie"),
    ([("conv", 2, 9, 9, 1, 0, "relu"), ("affine", 3, "relu")], "layer 1 (conv 9×9, stride 1, pad 0) does not fit"),
    ([("pool", 2, 2, 2, 0), ("affine", 3, "relu")], "layer 1 (pool 2×2, stride 2, pad 0) does not fit its 5×5"),
    ([("softmax",), ("affine", 3, "relu")], "layer 1: ('softmax',) is not a layer"),
    ([("affine", 3)], "has the wrong number of values"),
    ([("affine", 0, "relu")], "layer 1: units must be an integer >= 1"),
])  # fmt: skip
def test_a_network_the_engine_cannot_run_is_refused_when_built(layers, words):
    with pytest.raises(ValueError) as info:
        records.layer_records((1, 5, 5), layers)
    assert words in str(info.value)


def test_layer_records_place_every_buffer_once():
    rec, coef, params, channels = records.layer_records(*A_CONVNET[:2])
    net = Sequential(*A_CONVNET[:2], np.float64)
    assert params == sum(v.size for v in net.params.values()) == net._flat.size
    assert channels == 8 + 8 + 5 and list(rec[rec[:, records.KIND] == records.BATCHNORM, records.RUN_OFF]) == [0, 8, 16]
    assert list(coef[:, records.DECAY]) == [0.1, 0, 0, 0, 0, 0, 0, 0, 0.1, 0]
    assert list(rec[:, records.ACT_OFF]) == list(np.concatenate([[0], np.cumsum(rec[:-1, records.OUT_SIZE])]))
    # the flat vector: every W and b in layer order, then every γ and β; params names them in that order
    starts = [np.shares_memory(v, net._flat) and v.ctypes.data - net._flat.ctypes.data for v in net.params.values()]
    assert starts == sorted(starts) and list(net.params)[-6:] == [
        "gamma1",
        "beta1",
        "gamma2",
        "beta2",
        "gamma3",
        "beta3",
    ]
    assert list(rec[rec[:, records.KIND] == records.DROPOUT, records.KEY]) == [6, 10]  # positions, counted from 1


def test_dropout_keys_number_the_masks():
    layers = A_ROW_LOCAL_NET[1]
    rec, *_ = records.layer_records(A_ROW_LOCAL_NET[0], layers, dropout_keys=[1, 2])
    assert list(rec[rec[:, records.KIND] == records.DROPOUT, records.KEY]) == [1, 2]
    with pytest.raises(ValueError, match="1 dropout keys more than dropout layers"):
        records.layer_records(A_ROW_LOCAL_NET[0], layers, dropout_keys=[1, 2, 3])


@pytest.mark.parametrize("network", [A_CONVNET, A_DENSE_NET, A_ROW_LOCAL_NET], ids=["convnet", "dense", "rows"])
@pytest.mark.parametrize("batch", [1, 8, 300])
def test_the_weight_gradient_tasks_cover_each_product_block_once(network, batch):
    rec, *_ = records.layer_records(*network[:2])
    layer, part, owner = schedule.plan_gradient_tasks(rec, batch)
    expected = set()
    for l in np.flatnonzero(rec[:, records.KIND] == records.AFFINE):
        split = kernels.product_split(rec[l, records.IN_SIZE], batch, rec[l, records.OUT_SIZE])
        expected |= {(l, k) for k in range(split[0] * split[1])} | {(l, schedule.BIAS_TASK)}
    assert sorted(zip(layer.tolist(), part.tolist())) == sorted(expected)
    assert owner.min() == 0 and set(owner.tolist()) == set(range(owner.max() + 1))


SPLITS_CODE = """
import hashlib, sys
import numpy as np
sys.path.insert(0, {tests!r})
from test_engine import A_CONVNET, biases_before_batchnorm, problem, twins
from fastnet import kernels, optim, reference
shape, layers, classes = A_CONVNET
net, ref, masks = twins(shape, layers)
x, t = problem(shape, classes, 40, seed=2)
batches = np.random.default_rng(3).integers(0, 40, (3, 20))
losses = net.steps(x.reshape(40, -1), t, batches, optim.Adam(0.01))
ref_opt = reference.Adam(0.01)
for s, b in enumerate(batches):
    masks.step = s
    ref_opt.update(ref.params, ref.gradient(x[b], t[b]))
noise = biases_before_batchnorm(layers)
assert all(np.allclose(net.params[k], ref.params[k], rtol=1e-9, atol=1e-11) for k in set(ref.params) - noise)
state = net._flat.tobytes() + net.net.running_mean.tobytes() + net.net.running_var.tobytes()
assert kernels.schedule.IMAGES_PER_TURN < 20  # so that the blocks take turns of the 40 images below
print(losses.tolist(), hashlib.sha256(state).hexdigest(), net.predict(x).tobytes().hex())
"""


def _run_with(env):
    code = SPLITS_CODE.format(tests=os.path.dirname(__file__))
    run = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_bitwise_identical_with_1_2_and_8_threads():
    outputs = {_run_with({"NUMBA_NUM_THREADS": n, "FASTNET_BLOCKS": "4"}) for n in ("1", "2", "8")}
    assert len(outputs) == 1 and outputs.pop()


@njit(parallel=True)
def _take_turns(items, turn, blocks):
    """Which block took each of ``items`` items, taking turns of ``turn`` as the test-time pass does."""
    taker, taken = np.full(items, -1), np.zeros(1, np.int64)
    times = np.zeros(items, np.int64)
    for k in prange(blocks):
        while True:
            r0 = kernels.partition.fetch_add(taken, turn)
            if r0 >= items:
                break
            for n in range(r0, min(r0 + turn, items)):
                taker[n] = k
                times[n] += 1
    return taker, times, taken  # (taken[0] read here would be read before the loop: Numba sees no write)


@pytest.mark.parametrize("items, turn, blocks", [(1, 16, 2), (40, 16, 2), (1000, 16, 8), (1000, 1, 3), (7, 512, 4)])
def test_blocks_taking_turns_take_each_item_once(items, turn, blocks):
    taker, times, taken = _take_turns(items, turn, blocks)
    assert (times == 1).all() and taker.min() >= 0 and taker.max() < blocks
    assert taken[0] == turn * (-(-items // turn) + blocks)  # each block's last look found nothing left
    for r0 in range(0, items, turn):  # a turn stays with one block
        assert len(set(taker[r0 : r0 + turn].tolist())) == 1


def test_every_block_count_equals_the_reference():
    for blocks in ("1", "3", "5"):
        assert _run_with({"FASTNET_BLOCKS": blocks})
