"""``fastnet.Sequential`` of ``fastnet.layers``: networks of the user's own design, with the book's
methods, the reference's results, a summary, and saved with their architecture."""

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import assert_matches_reference

from fastnet import Sequential, load_weights, optim, reference, save_weights
from fastnet import layers as L
from fastnet.reference.sequential import Sequential as ReferenceSequential

LENET = [L.Conv(6, 5, pad=2), L.ReLU(), L.MaxPool(2), L.Conv(16, 5), L.BatchNorm(), L.Sigmoid(), L.MaxPool(2),
         L.Affine(30), L.ReLU(), L.Dropout(0.3), L.Affine(10)]  # fmt: skip


def problem(shape, n=12, classes=10, seed=3):
    rng = np.random.default_rng(seed)
    return rng.random((n, *shape)), rng.integers(0, classes, n)


def test_the_issues_example_builds_prints_and_trains():
    net = Sequential((1, 28, 28), [
        L.Conv(32, 3, pad=1), L.BatchNorm(), L.ReLU(), L.MaxPool(2),
        L.Conv(64, 3, pad=1), L.BatchNorm(), L.ReLU(), L.MaxPool(2),
        L.Affine(128), L.ReLU(), L.Dropout(0.3), L.Affine(10),
    ], seed=0)  # fmt: skip
    assert list(net.params) == ["W1", "b1", "W2", "b2", "W3", "b3", "W4", "b4", "gamma1", "beta1", "gamma2", "beta2"]
    assert net.params["W1"].shape == (32, 1, 3, 3) and net.params["W3"].shape == (64 * 7 * 7, 128)
    assert list(net.running) == ["running_mean1", "running_var1", "running_mean2", "running_var2"]
    text = str(net)
    lines = text.splitlines()
    assert len(lines) == 2 + 12 + 1, text
    assert "Conv(32, 3, pad=1)" in lines[2] and "(32, 28, 28)" in lines[2] and "320" in lines[2]
    assert "BatchNorm()" in lines[3] and lines[3].rstrip().endswith(" 64")
    assert "MaxPool()" in lines[5] and "(32, 14, 14)" in lines[5]
    assert "Affine(10)" in lines[-2] and "(10,)" in lines[-2]
    assert lines[-1].split()[-1] == f"{net._flat.size:,}"
    x, t = problem((1, 28, 28), n=8)
    losses = net.steps(x.astype(np.float32).reshape(8, -1), t, np.arange(8).reshape(2, 4), optim.Adam(1e-3))
    assert losses.shape == (2,) and np.isfinite(losses).all()


def test_initial_weights_follow_each_layers_init_and_the_seed():
    layers = [L.Affine(400, weight_init="xavier"), L.ReLU(), L.Affine(300), L.Affine(10, weight_init=0.01)]
    a, b, c = Sequential(500, layers, seed=1), Sequential(500, layers, seed=1), Sequential(500, layers, seed=2)
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params) and a.dropout_seed == b.dropout_seed
    assert not np.array_equal(a.params["W1"], c.params["W1"])
    assert np.std(a.params["W1"]) == pytest.approx(np.sqrt(1 / 500), rel=0.02)
    assert np.std(a.params["W2"]) == pytest.approx(np.sqrt(2 / 400), rel=0.02)
    assert np.std(a.params["W3"]) == pytest.approx(0.01, rel=0.05)
    assert not a.params["b1"].any() and a.input_dim == (500, 1, 1)


@pytest.mark.parametrize("one_hot", [False, True])
def test_loss_and_gradient_equal_the_reference_in_float64(one_hot):
    net = Sequential((1, 12, 12), LENET, dtype=np.float64, seed=4)
    masks = reference.CounterMasks(net.dropout_seed)
    ref = ReferenceSequential((1, 12, 12), net.layer_specs, {k: v.copy() for k, v in net.params.items()}, masks)
    x, t = problem((1, 12, 12), classes=10)
    labels = np.eye(10)[t] if one_hot else t
    masks.step = net.dropout_step
    with np.errstate(over="ignore"):  # running variances 0, as the book's: x̂ = x/√ε, the sigmoid saturates
        assert_matches_reference(net.predict(x), ref.predict(x), np.float64)
    grads = net.gradient(x, labels)
    ref_grads = ref.gradient(x, t)
    scale = max(np.abs(g).max() for g in ref_grads.values())  # b2, before batch norm: its gradient is rounding
    for key in ref_grads:
        np.testing.assert_allclose(grads[key], ref_grads[key], rtol=1e-9, atol=1e-11 * scale, err_msg=key)


def test_the_books_loop_ends_where_steps_ends():
    x, t = problem((1, 12, 12))
    batches = np.random.default_rng(0).integers(0, len(x), (4, 6))
    fused, book = (Sequential((1, 12, 12), LENET, dtype=np.float64, seed=7) for _ in range(2))
    fused.steps(x.reshape(len(x), -1), t, batches, optim.Momentum(0.05))
    opt = optim.Momentum(0.05)
    for idx in batches:
        opt.update(book.params, book.gradient(x[idx], t[idx]))
    for key in fused.params:
        np.testing.assert_array_equal(fused.params[key], book.params[key])
    for key in fused.running:
        np.testing.assert_array_equal(fused.running[key], book.running[key])
    assert fused.dropout_step == book.dropout_step == 4


def test_saved_with_its_architecture_and_loaded_alone(tmp_path):
    net = Sequential((1, 12, 12), LENET, seed=5)
    x, t = problem((1, 12, 12))
    net.steps(x.astype(np.float32).reshape(len(x), -1), t, np.arange(12).reshape(2, 6), optim.Adam(0.01))
    save_weights(tmp_path / "w.npz", net)
    loaded = load_weights(tmp_path / "w.npz")
    assert type(loaded) is Sequential and loaded.layers == LENET and loaded.describe() == net.describe()
    np.testing.assert_array_equal(loaded.predict(x.astype(np.float32)), net.predict(x.astype(np.float32)))
    assert loaded.dropout_step == net.dropout_step and loaded.dropout_seed == net.dropout_seed
    other = Sequential((1, 12, 12), LENET[:-1] + [L.Affine(9)], seed=5)
    with pytest.raises(ValueError, match="does not match"):
        load_weights(tmp_path / "w.npz", other)


@pytest.mark.parametrize(
    ("layers", "words"),
    [
        ([L.ReLU(), L.Affine(3)], "layer 1: ReLU() first"),
        ([L.Conv(2, 3), L.MaxPool(2), L.ReLU(), L.Affine(3)], "put it before the pool"),
        ([L.Affine(4), L.ReLU(), L.Sigmoid(), L.Affine(3)], "after ReLU()"),
        ([L.Affine(4), L.ReLU()], "the last layer must be affine"),
        ([L.Conv(2, 9), L.Affine(3)], "layer 1"),
        ([L.Affine(3), "relu"], "is not a layer of fastnet.layers"),
    ],
)
def test_a_layer_list_that_cannot_run_is_refused_naming_the_layer(layers, words):
    with pytest.raises((ValueError, TypeError), match="Sequential: ") as caught:
        Sequential((1, 6, 6), layers)
    assert words in str(caught.value)


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: L.Affine(0), "units must be a positive integer"),
        (lambda: L.Conv(4, (3, 3, 3)), "size must be an int or (FH, FW)"),
        (lambda: L.Dropout(1.0), "ratio must lie in [0, 1)"),
        (lambda: L.BatchNorm(momentum=-0.1), "momentum must lie in [0, 1)"),
        (lambda: L.Affine(3, weight_init="glorot"), "weight_init must be"),
        (lambda: L.Conv(3, 3, weight_decay=float("nan")), "weight_decay must be"),
    ],
)
def test_bad_layer_arguments_are_refused(make, words):
    with pytest.raises(ValueError) as caught:
        make()
    assert words in str(caught.value)


def test_layers_read_from_text():
    text = "conv32x3p1,bn,relu,pool2,conv8x5s2,sigmoid,pool3s2,affine128,relu,dropout0.3,affine10,dropout"
    assert L.parse_layers(text) == [
        L.Conv(32, 3, pad=1), L.BatchNorm(), L.ReLU(), L.MaxPool(2), L.Conv(8, 5, stride=2), L.Sigmoid(),
        L.MaxPool(3, stride=2), L.Affine(128), L.ReLU(), L.Dropout(0.3), L.Affine(10), L.Dropout(0.5),
    ]  # fmt: skip
    with pytest.raises(ValueError, match="'conv3' is not a layer"):
        L.parse_layers("conv3,affine10")
    assert repr(L.Conv(8, (3, 5), pad=1, weight_decay=0.1)) == "Conv(8, (3, 5), pad=1, weight_decay=0.1)"
    assert L.from_dict(L.Conv(8, (3, 5)).to_dict()) == L.Conv(8, (3, 5))


@st.composite
def layer_objects(draw):
    """A random layer list that fits a (C, 8, 8) image: convs, pools, batch norm, activations, dropout,
    then affine layers."""
    layers, side = [], 8
    for _ in range(draw(st.integers(0, 2))):
        size = draw(st.integers(1, 3))
        pad = draw(st.integers(0, size - 1))
        layers.append(L.Conv(draw(st.integers(1, 4)), size, pad=pad))
        side = side + 2 * pad - size + 1
        if draw(st.booleans()):
            layers.append(L.BatchNorm())
        layers.append(draw(st.sampled_from([L.ReLU(), L.Sigmoid()])))
        if side >= 2 and side % 2 == 0 and draw(st.booleans()):  # the book's pools fit exactly
            layers.append(L.MaxPool(2))
            side //= 2
    for _ in range(draw(st.integers(0, 2))):
        layers += [L.Affine(draw(st.integers(1, 9))), draw(st.sampled_from([L.ReLU(), L.Sigmoid()]))]
        if draw(st.booleans()):
            layers.append(L.Dropout(draw(st.sampled_from([0.0, 0.25, 0.5]))))
    return layers + [L.Affine(draw(st.integers(2, 5)))]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layers=layer_objects(), channels=st.integers(1, 2))
def test_any_layer_list_builds_summarises_and_round_trips(tmp_path_factory, layers, channels):
    net = Sequential((channels, 8, 8), layers, dtype=np.float64, seed=0)
    assert str(net).splitlines()[-1].split()[-1] == f"{net._flat.size:,}"
    assert len(str(net).splitlines()) == 3 + len(layers)
    x = np.random.default_rng(1).random((3, channels, 8, 8))
    z = net.predict(x)
    assert z.shape == (3, layers[-1].args["units"]) and np.isfinite(z).all()
    assert Sequential.from_spec(net.spec).layers == layers
    path = tmp_path_factory.mktemp("w") / "w.npz"
    save_weights(path, net)
    np.testing.assert_array_equal(load_weights(path).predict(x), z)


def test_spec_text_rebuilds_the_same_network():
    net = Sequential((2, 12, 12), [L.Conv(6, (3, 2), pad=1), L.BatchNorm(0.8), L.ReLU(), L.MaxPool(2, stride=1),
                                   L.Affine(7), L.Sigmoid(), L.Dropout(0.25), L.Affine(4)], seed=1)  # fmt: skip
    assert net.spec == "2x12x12:conv6x3x2p1,bn0.8,relu,pool2s1,affine7,sigmoid,dropout0.25,affine4"
    again = Sequential.from_spec(net.spec, seed=1)
    assert again.layers == net.layers and {k: v.shape for k, v in again.params.items()} == {
        k: v.shape for k, v in net.params.items()
    }
    assert Sequential.from_spec("20:affine5,relu,affine3").input_dim == (20, 1, 1)
    with pytest.raises(ValueError, match="must start with the input shape"):
        Sequential.from_spec("conv3x3,affine10")
    with pytest.raises(ValueError, match="'afine10' is not a layer"):
        Sequential.from_spec("1x8x8:conv2x3,afine10")


def test_trained_from_the_command_line_and_evaluated_without_net(tmp_path, capsys):
    from test_cli import SUBSET

    from fastnet.cli import main

    spec = "conv4x3p1,bn,relu,pool2,affine16,relu,dropout0.2,affine10"
    out = tmp_path / "run"
    code = main(["train", "--layers", spec, "--dataset", SUBSET, "--epochs", "1", "--eval-size", "50", "--seed", "3",
                 "--out", str(out), "--no-plot", "--no-progress"])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0 and "training Sequential (1, 28, 28) [Conv(4, 3, pad=1), BatchNorm()" in printed, printed
    history = json.loads((out / "history.json").read_text())
    assert history["config"]["spec"] == "1x28x28:" + spec and history["config"]["eval_size"] == 50
    net = load_weights(out / "weights.npz")
    assert isinstance(net, Sequential) and net.spec == "1x28x28:" + spec
    assert main(["evaluate", str(out / "weights.npz"), "--dataset", SUBSET]) == 0
    assert "test accuracy" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--layers", "conv4x3,afine10"], "'afine10' is not a layer"),
        (["--layers", "affine16,relu,affine10", "--net", "simple-conv"], "--layers gives the whole network"),
        (["--layers", "affine16,relu,affine10", "--dropout", "0.5"], "--dropout do not apply"),
        (["--layers", "affine16,relu,affine5"], "the last affine layer has 5 units"),
        (["--layers", "affine16,relu,affine10", "--shift", "1"], "--shift moves pixels of images"),
        (["--layers", "affine16,relu,affine10", "--eval-size", "0"], "--eval-size 0: must be at least 1"),
    ],
)
def test_bad_layers_on_the_command_line_are_refused_before_training(tmp_path, capsys, extra, words):
    from test_cli import SUBSET

    from fastnet.cli import main

    assert main(["train", "--dataset", SUBSET, "--iters", "1", "--out", str(tmp_path / "r"), *extra]) == 1
    assert words in capsys.readouterr().err
    assert not (tmp_path / "r" / "weights.npz").exists()


def test_the_accurate_conv_preset_is_a_batch_norm_convnet_with_the_datasets_augmentation(tmp_path, capsys):
    import argparse

    from test_cli import SUBSET

    from fastnet.cli import main
    from fastnet.presets import MNIST_LAYERS, PRESETS, apply_preset

    def preset_for(dataset, **given):
        args = argparse.Namespace(preset="accurate-conv", dataset=dataset, hidden=None, batch_size=None, lr=None,
                                  optimizer=None, lr_decay=None, epochs=None, iters=None, shift=None, flip=None,
                                  eval_size=None, layers=None, dropout=None, net=None)  # fmt: skip
        vars(args).update(given)
        apply_preset(args)
        return args

    assert preset_for("mnist").shift == 2 and not preset_for("mnist").flip
    assert preset_for("fashion-mnist").flip is True and preset_for("fashion-mnist").shift == 0
    assert preset_for("mnist", shift=0).shift == 0  # an option given overrides the preset
    assert preset_for("csv:x.csv").shift == 0 and preset_for("csv:x.csv").flip is False
    assert preset_for("fashion-mnist").layers == PRESETS["accurate-conv"]["layers"]
    assert preset_for("mnist").layers == MNIST_LAYERS  # batch norm after the pools: chosen for digits alone
    out = tmp_path / "preset"
    code = main(["train", "--preset", "accurate-conv", "--epochs", "1", "--dataset", SUBSET, "--out", str(out),
                 "--no-plot", "--no-progress", "--seed", "0"])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0 and "training Sequential" in printed and "Adam(lr=0.001)" in printed, printed
    assert load_weights(out / "weights.npz").spec.endswith(PRESETS["accurate-conv"]["layers"])
