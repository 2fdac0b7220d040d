"""SimpleConvNet's weights (the book's params.pkl, fastnet's .npz) and its commands."""

import os
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest
from test_cli import SUBSET

from fastnet import SimpleConvNet, reference
from fastnet.bookfiles import BookFileError, read_book_params, write_book_params
from fastnet.cli import main
from fastnet.weights import WeightsError, load_weights

SMALL = {"filter_num": 4, "filter_size": 5, "pad": 0, "stride": 1}


def small_net(seed=0, dtype=np.float32):
    return SimpleConvNet((1, 28, 28), SMALL, hidden_size=8, seed=seed, dtype=dtype)


def test_the_books_format_round_trips_and_names_numpy_as_numpy_1_did(tmp_path):
    net = small_net(seed=1)
    net.save_params(tmp_path / "params.pkl")
    data = (tmp_path / "params.pkl").read_bytes()
    assert b"numpy.core.multiarray" in data and b"numpy._core" not in data  # what the book's numpy 1.x wrote
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        plain = pickle.loads(data)  # the book's own load_params: pickle.load
    assert sorted(plain) == sorted(net.params) and all(np.array_equal(plain[k], net.params[k]) for k in plain)
    other = small_net(seed=2)
    other.load_params(tmp_path / "params.pkl")
    assert all(np.array_equal(other.params[k], net.params[k]) for k in net.params)


def test_a_pickle_written_by_numpy_2_loads_too(tmp_path):
    ref = reference.SimpleConvNet((1, 28, 28), SMALL, 8, seed=3)
    with open(tmp_path / "p.pkl", "wb") as f:
        pickle.dump(ref.params, f)  # exactly the book's save_params
    net = small_net(dtype=np.float64)
    net.load_params(tmp_path / "p.pkl")
    rng = np.random.default_rng(0)
    x = rng.random((3, 1, 28, 28))
    np.testing.assert_allclose(net.predict(x), ref.predict(x), rtol=1e-12)


class Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"echo pwned > {self.path}",))


@pytest.mark.parametrize("make,words", [
    (lambda p: pickle.dumps({"W1": Evil(p.parent / "pwned")}), "asks to load posix.system"),
    (lambda p: pickle.dumps([1, 2]), "holds a list, not a dict"),
    (lambda p: pickle.dumps({"W1": np.arange(3)}), "'W1' is not an array of floats"),
    (lambda p: pickle.dumps({"W1": np.zeros(3)})[:-7], "not a readable pickle"),
    (lambda p: b"this is not a pickle at all", "not a readable pickle"),
])  # fmt: skip
def test_foreign_or_damaged_pickles_are_refused_and_run_nothing(tmp_path, make, words):
    path = tmp_path / "params.pkl"
    path.write_bytes(make(path))
    with pytest.raises(BookFileError) as info:
        read_book_params(path)
    assert words in str(info.value)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("change,words", [
    (lambda p: p.pop("b3"), "this network needs"),
    (lambda p: p.update(W1=np.zeros((4, 1, 3, 3))), "W1 has shape (4, 1, 3, 3)"),
    (lambda p: p["W2"].__setitem__((0, 0), np.nan), "W2 contains NaN"),
])  # fmt: skip
def test_weights_that_do_not_fit_are_refused_and_nothing_changes(tmp_path, change, words):
    params = {k: v.copy() for k, v in small_net(seed=4).params.items()}
    change(params)
    write_book_params(tmp_path / "params.pkl", params)
    net = small_net(seed=5)
    before = net._flat.copy()
    with pytest.raises(BookFileError, match=words.replace("(", r"\(").replace(")", r"\)")):
        net.load_params(tmp_path / "params.pkl")
    assert np.array_equal(before, net._flat)


def test_npz_weights_keep_the_architecture(tmp_path):
    net = small_net(seed=6)
    net.save_params(tmp_path / "w.npz")
    loaded = load_weights(tmp_path / "w.npz")
    assert isinstance(loaded, SimpleConvNet) and loaded.conv_param == SMALL and loaded.hidden_size == 8
    assert loaded._flat.tobytes() == net._flat.tobytes()
    with pytest.raises(WeightsError, match="does not match"):
        load_weights(tmp_path / "w.npz", SimpleConvNet((1, 28, 28), SMALL, hidden_size=9))
    (tmp_path / "bad.npz").write_text("garbage")
    with pytest.raises(WeightsError) as info:
        net.load_params(tmp_path / "bad.npz")
    assert "not a fastnet weights file" in str(info.value) and "allow_pickle" not in str(info.value)


def test_a_kill_during_save_leaves_the_old_file(tmp_path):
    net = small_net(seed=7)
    net.save_params(tmp_path / "params.pkl")
    before = (tmp_path / "params.pkl").read_bytes()
    code = ("import os, signal, fastnet.bookfiles as b\n"
            "def die(path, data): os.kill(os.getpid(), signal.SIGKILL)\n"
            "b.atomic_write_bytes = die\n"  # dies exactly where the bytes would be written
            f"from fastnet import SimpleConvNet; SimpleConvNet((1, 28, 28), {SMALL!r}, 8, seed=8)"
            f".save_params({str(tmp_path / 'params.pkl')!r})")  # fmt: skip
    run = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert run.returncode == -9
    assert (tmp_path / "params.pkl").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["params.pkl"]


def test_train_and_evaluate_a_simple_convnet(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--net", "simple-conv", "--dataset", SUBSET, "--epochs", "1", "--out", str(out),
                 "--no-progress", "--seed", "0"])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "SimpleConvNet" in printed and "Adam" in printed and (out / "training.png").exists()
    assert main(["evaluate", str(out / "weights.npz"), "--dataset", SUBSET]) == 0
    assert "test accuracy" in capsys.readouterr().out
    net = load_weights(out / "weights.npz")
    net.save_params(tmp_path / "params.pkl")
    assert main(["evaluate", str(tmp_path / "params.pkl"), "--net", "simple-conv", "--dataset", SUBSET]) == 0
    assert main(["evaluate", str(tmp_path / "params.pkl"), "--dataset", SUBSET]) == 1
    assert "give --net simple-conv" in capsys.readouterr().err
    assert main(["train", "--net", "simple-conv", "--hidden", "100,100", "--dataset", SUBSET]) == 1
    assert "has no --hidden list option" in capsys.readouterr().err


def test_book_ch7_commands_write_their_figures(tmp_path, capsys):
    out = str(tmp_path / "book")
    assert main(["book", "ch7", "visualize-filter", "--dataset", SUBSET, "--out", out]) == 1
    assert "run `fastnet book ch7 train-convnet" in capsys.readouterr().err
    assert main(["book", "ch7", "train-convnet", "--dataset", SUBSET, "--out", out, "--epochs", "2"]) == 0
    for name in ("visualize-filter", "apply-filter"):
        assert main(["book", "ch7", name, "--dataset", SUBSET, "--out", out]) == 0
    printed = capsys.readouterr().out
    assert "final test accuracy" in printed and "feature maps of test image 0" in printed
    for name in ("train-convnet", "visualize-filter", "apply-filter"):
        assert (tmp_path / "book" / f"{name}.png").stat().st_size > 1000
        assert (tmp_path / "book" / f"{name}.json").exists()
    assert (tmp_path / "book" / "params.pkl").exists()


@pytest.mark.parametrize("argv,words", [
    (["--version"], "fastnet 0.1.0"),
    (["train", "--threads", "0"], "--threads 0: give 1 to"),
    (["train", "--epochs", "-2"], "--epochs -2: must be a number of epochs > 0"),
    (["train", "--iters", "0"], "--iters 0: must be at least 1"),
    (["book", "ch6", "train-convnet"], "no experiment 'train-convnet'; ch6 has"),
])  # fmt: skip
def test_the_commands_answers_name_the_option(argv, words):
    run = subprocess.run([sys.executable, "-m", "fastnet", *argv], capture_output=True, text=True)
    assert words in run.stdout + run.stderr


def test_deep_convnet_weights_and_book_ch8_commands(tmp_path, capsys):
    out = str(tmp_path / "book")
    assert main(["book", "ch8", "misclassified", "--dataset", SUBSET, "--out", out]) == 1
    assert "run `fastnet book ch8 train-deepnet" in capsys.readouterr().err
    assert main(["book", "ch8", "train-deepnet", "--dataset", SUBSET, "--out", out, "--epochs", "1"]) == 0
    for name in ("misclassified", "half-float"):
        assert main(["book", "ch8", name, "--dataset", SUBSET, "--out", out]) == 0
    printed = capsys.readouterr().out
    assert "misclassified: test accuracy" in printed and "with float16 weights and inputs" in printed
    for name in ("train-deepnet", "misclassified", "half-float"):
        assert (tmp_path / "book" / f"{name}.png").stat().st_size > 1000
    pkl = tmp_path / "book" / "deep_convnet_params.pkl"
    assert main(["evaluate", str(pkl), "--net", "deep-conv", "--dataset", SUBSET]) == 0
    loaded = load_weights(tmp_path / "book" / "weights.npz")
    assert type(loaded).__name__ == "DeepConvNet" and loaded.dropout_step == 10  # 1,000 images: 10 steps
    with pytest.raises(BookFileError, match="this network needs"):
        SimpleConvNet().load_params(pkl)


def test_the_accurate_deep_conv_preset_trains_a_deep_convnet(tmp_path, capsys):
    out = tmp_path / "preset"
    code = main(["train", "--preset", "accurate-deep-conv", "--epochs", "1", "--dataset", SUBSET, "--out", str(out),
                 "--no-plot", "--no-progress", "--seed", "0"])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0 and "DeepConvNet" in printed and "Adam(lr=0.001)" in printed, printed
    assert type(load_weights(out / "weights.npz")).__name__ == "DeepConvNet"


def test_convnet_weight_decay_is_the_books_and_is_saved(tmp_path):
    """weight_decay_lambda on a convnet: ½λΣ‖W‖² over every W in the loss, λW in each weight
    gradient (the reference's twin with the same λ per layer), and kept in a weights file."""
    import numpy as np

    from fastnet import SimpleConvNet, load_weights, save_weights
    from fastnet.reference.sequential import Sequential as ReferenceSequential

    conv = {"filter_num": 3, "filter_size": 3, "pad": 1, "stride": 1}
    net = SimpleConvNet((1, 8, 8), conv, 5, 3, weight_init_std=0.3, dtype=np.float64, seed=1, weight_decay_lambda=0.2)
    ref = ReferenceSequential((1, 8, 8), net.layer_specs, {k: v.copy() for k, v in net.params.items()})
    x, t = np.random.default_rng(0).standard_normal((4, 1, 8, 8)), np.array([0, 1, 2, 1])
    assert net.loss(x, t) == pytest.approx(ref.loss(x, t), rel=1e-12)
    assert ref.decay_loss() == pytest.approx(0.1 * sum((net.params[k] ** 2).sum() for k in ("W1", "W2", "W3")))
    grads, ref_grads = net.gradient(x, t), ref.gradient(x, t)
    for key in ref_grads:
        np.testing.assert_allclose(grads[key], ref_grads[key], rtol=1e-10, atol=1e-12, err_msg=key)
    save_weights(tmp_path / "w.npz", net)
    assert load_weights(tmp_path / "w.npz").weight_decay_lambda == 0.2
    with pytest.raises(ValueError, match="weight_decay_lambda must be a finite number >= 0"):
        SimpleConvNet(weight_decay_lambda=-1)
