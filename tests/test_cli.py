"""The fastnet command end to end on a real MNIST subset (offline)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fastnet import load_weights
from fastnet.cli import main

SUBSET = "idx:" + str(Path(__file__).parent / "data" / "mnist-subset")


def test_train_writes_history_plot_weights(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--dataset",
            SUBSET,
            "--iters",
            "300",
            "--seed",
            "0",
            "--out",
            str(out),
            "--history",
            str(tmp_path / "h.json"),
            "--no-progress",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert printed.count("train acc, test acc |") >= 3 and "final: train acc, test acc" in printed
    history = json.loads((tmp_path / "h.json").read_text())
    assert history["stopped"] == "completed" and history["steps_done"] == 300
    assert history["train_seconds"] > 0
    first, last = history["epochs"][0], history["epochs"][-1]
    assert set(first) == {"epoch", "iteration", "train_acc", "test_acc", "loss", "val_acc"}
    assert first["val_acc"] is None  # no validation split asked for
    assert last["test_acc"] > 0.75 and last["train_acc"] > first["train_acc"]
    assert (out / "training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    net = load_weights(out / "weights.npz")
    assert (net.input_size, net.hidden_size, net.output_size) == (784, 50, 10)

    assert main(["evaluate", str(out / "weights.npz"), "--dataset", SUBSET]) == 0
    printed = capsys.readouterr().out
    assert f"test accuracy on {SUBSET}: {last['test_acc']:.4f}" in printed


def test_epochs_option_and_float64(tmp_path, capsys):
    code = main(
        [
            "train",
            "--dataset",
            SUBSET,
            "--epochs",
            "2",
            "--batch-size",
            "50",
            "--dtype",
            "float64",
            "--hidden",
            "20",
            "--out",
            str(tmp_path),
            "--no-plot",
            "--no-progress",
            "--seed",
            "1",
        ]
    )
    assert code == 0
    history = json.loads((tmp_path / "history.json").read_text())
    assert history["steps_done"] == 40 and history["config"]["dtype"] == "float64"


def test_divergence_stops_with_a_message_and_finite_weights(tmp_path, capsys):
    code = main(
        [
            "train",
            "--dataset",
            SUBSET,
            "--iters",
            "200",
            "--lr",
            "1e30",
            "--out",
            str(tmp_path),
            "--no-plot",
            "--no-progress",
            "--seed",
            "0",
        ]
    )
    err = capsys.readouterr().err
    assert code == 3
    assert "diverged at step" in err
    net = load_weights(tmp_path / "weights.npz")
    assert all(np.all(np.isfinite(p)) for p in net.params.values())
    history = json.loads((tmp_path / "history.json").read_text())
    assert history["stopped"] == "diverged"


def test_gradcheck_command(capsys):
    assert main(["gradcheck", "--dataset", SUBSET]) == 0
    printed = capsys.readouterr().out
    assert "W1:" in printed and "passed" in printed


@pytest.mark.parametrize(
    "argv,words",
    [
        (["train", "--dataset", "nope"], "unknown dataset"),
        (["train", "--dataset", "csv:/no/such.csv"], "cannot read"),
        (["train", "--dataset", "idx:/no/such/dir"], "no train-images"),
        (["evaluate", "/no/such/weights.npz", "--dataset", SUBSET], "no such file"),
    ],
)
def test_errors_are_messages_not_tracebacks(argv, words, capsys):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("fastnet: error:") and words in err


def test_python_dash_m_fastnet(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "fastnet",
            "train",
            "--dataset",
            SUBSET,
            "--iters",
            "20",
            "--out",
            str(tmp_path),
            "--no-plot",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "train acc, test acc |" in result.stdout


def test_training_on_pixel_codes_equals_training_on_floats(monkeypatch):
    """fastnet.train gathers 8-bit codes when they reproduce the inputs exactly: same run, bit for bit."""
    from fastnet import TwoLayerNet
    from fastnet import train as training
    from fastnet.datasets import load_idx_dir

    (x, t), test, _ = load_idx_dir(SUBSET.split(":", 1)[1])
    runs = []
    for encode in (True, False):
        if not encode:
            monkeypatch.setattr(training, "pixel_codes", lambda x: None)
        net = TwoLayerNet(784, 30, 10, seed=4)
        history = training.train(
            net, (x, t), test, iters=120, batch_size=32, seed=5, progress=False, log=lambda s: None
        )
        runs.append((history, net))
    (coded, coded_net), (floats, float_net) = runs
    assert coded.config["pixel_divisor"] == 255 and floats.config["pixel_divisor"] is None
    assert coded.step_losses.tolist() == floats.step_losses.tolist()
    for key in coded_net.params:
        assert coded_net.params[key].tobytes() == float_net.params[key].tobytes(), key


def test_train_a_deeper_network_with_adam_then_evaluate_it(tmp_path, capsys):
    out = tmp_path / "deep"
    args = ["train", "--dataset", SUBSET, "--hidden", "64,32", "--optimizer", "adam", "--activation", "relu",
            "--init", "he", "--weight-decay", "1e-4", "--epochs", "5", "--seed", "1", "--out", str(out),
            "--no-progress", "--no-plot"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "MultiLayerNet 784-64-32-10" in printed and "Adam(lr=0.001)" in printed
    history = json.loads((out / "history.json").read_text())
    assert history["config"]["optimizer"] == "Adam" and history["config"]["layers"] == "784-64-32-10"
    assert history["config"]["blocks"] >= 1 and history["epochs"][-1]["test_acc"] > 0.7  # 1,000 images, 5 epochs
    net = load_weights(out / "weights.npz")
    assert type(net).__name__ == "MultiLayerNet" and net.hidden_size_list == [64, 32]
    assert net.weight_decay_lambda == 1e-4
    assert main(["evaluate", str(out / "weights.npz"), "--dataset", SUBSET]) == 0
    assert f"{history['epochs'][-1]['test_acc']:.4f}" in capsys.readouterr().out


@pytest.mark.parametrize("hidden", ["0", "100,x", "100,,5"])
def test_bad_hidden_sizes_are_one_line_errors(hidden, capsys):
    assert main(["train", "--dataset", SUBSET, "--hidden", hidden, "--iters", "1", "--no-plot"]) == 1
    assert "--hidden" in capsys.readouterr().err


def test_validation_split_and_early_stopping_keep_the_best_weights(tmp_path, capsys):
    out = tmp_path / "early"
    args = ["train", "--dataset", SUBSET, "--hidden", "32", "--optimizer", "sgd", "--lr", "0.5", "--epochs", "40",
            "--validation", "0.2", "--early-stopping", "2", "--seed", "3", "--out", str(out),
            "--no-progress"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    history = json.loads((out / "history.json").read_text())
    assert history["config"]["validation_size"] == 200 and history["config"]["train_size"] == 800
    vals = [r["val_acc"] for r in history["epochs"]]
    assert all(v is not None for v in vals) and ", val acc " in printed
    best = max(vals)
    # stopped early: the last two evaluations brought nothing better than the best
    assert history["stopped"] == "early-stopped" and max(vals[-2:]) <= best and len(vals) < 41
    net = load_weights(out / "weights.npz")  # the best epoch's weights were kept and saved
    assert history["best_epoch"] == history["epochs"][vals.index(best)]["epoch"]
    assert f"best validation accuracy {best:.4f}" in printed
    assert (out / "training.png").exists() and net.hidden_size_list == [32]


@pytest.mark.parametrize("extra,words", [
    (["--validation", "1.5"], "validation must be a fraction in [0, 1)"),
    (["--early-stopping", "3"], "early_stopping needs a validation split"),
    (["--validation", "0.2", "--early-stopping", "0"], "early_stopping must be a positive number"),
])  # fmt: skip
def test_bad_validation_options(extra, words, capsys):
    assert main(["train", "--dataset", SUBSET, "--iters", "1", "--no-plot", *extra]) == 1
    assert words in capsys.readouterr().err
