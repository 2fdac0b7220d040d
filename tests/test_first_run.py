"""What a new user trips on: each test here failed before its fix (issue: a run lost to a bad
``--out``, invalid history JSON, kernel errors as tuples, a bare ``fastnet``, install hints that
fetch someone else's package)."""

import json
import os
import re
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest

from fastnet import MultiLayerNet, NetStack, SimpleConvNet, TwoLayerNet, optim
from fastnet.cli import main

ROOT = Path(__file__).parent.parent
SUBSET = "idx:" + str(Path(__file__).parent / "data" / "mnist-subset")


def strict_json(text):
    """json.loads as a browser's JSON.parse: NaN and Infinity are not JSON."""

    def refuse(name):
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


# -- nothing lost: the output directory is checked before any work --------------------------------


@pytest.mark.parametrize("command", [["train", "--iters", "100000"], ["book", "ch6", "optimizer-compare"],
                                     ["sweep", "--trials", "50"]])  # fmt: skip
def test_an_output_path_that_is_a_file_is_refused_before_training(tmp_path, capsys, command):
    blocker = tmp_path / "text.txt"
    blocker.write_text("mine")
    started = time.perf_counter()
    code = main([*command, "--dataset", SUBSET, "--out", str(blocker)])
    err = capsys.readouterr().err
    assert code == 1 and "--out" in err and "not a directory" in err, err
    assert time.perf_counter() - started < 20  # no training happened
    assert blocker.read_text() == "mine"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_an_unwritable_output_directory_is_refused(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert main(["train", "--dataset", SUBSET, "--out", str(locked / "run")]) == 1
    assert "--out" in capsys.readouterr().err


def test_an_output_directory_under_a_file_or_proc_is_refused(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    for out in (tmp_path / "file" / "run", Path("/proc/nope")):
        assert main(["train", "--dataset", SUBSET, "--out", str(out), "--iters", "100000"]) == 1
        err = capsys.readouterr().err
        assert "--out" in err and str(out) in err, err
    assert main(["train", "--dataset", SUBSET, "--history", str(tmp_path / "file" / "h.json")]) == 1
    assert "--history" in capsys.readouterr().err


def test_a_failed_book_run_leaves_no_empty_output_directory(tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["book", "ch7", "apply-filter", "--dataset", "idx:/no/such/dir", "--out", str(out)]) == 1
    assert not out.exists()


# -- JSON that any parser reads --------------------------------------------------------------------


def test_history_of_a_diverged_run_is_strict_json(tmp_path, capsys):
    code = main(["train", "--dataset", SUBSET, "--iters", "200", "--lr", "1e30", "--out", str(tmp_path),
                 "--no-plot", "--no-progress", "--seed", "0"])  # fmt: skip
    assert code == 3
    text = (tmp_path / "history.json").read_text()
    history = strict_json(text)
    assert history["stopped"] == "diverged"
    assert "NaN" not in text and "Infinity" not in text


def test_json_files_write_non_finite_numbers_as_null(tmp_path):
    from fastnet._atomic import atomic_write_json

    atomic_write_json(tmp_path / "x.json", {"a": [1.0, np.nan, np.float32(np.inf)], "b": np.int64(3),
                                            "c": np.array([0.5, -np.inf])})  # fmt: skip
    assert strict_json((tmp_path / "x.json").read_text()) == {"a": [1.0, None, None], "b": 3, "c": [0.5, None]}


# -- errors a person can read ----------------------------------------------------------------------

TUPLE = re.compile(r"\('|\) =|', \d")  # what a tuple of message and values prints as


def message(call):
    with pytest.raises(ValueError) as caught:
        call()
    return str(caught.value)


def test_errors_from_compiled_code_are_sentences_with_their_values():
    rng = np.random.default_rng(0)
    x, t = rng.random((6, 5)), np.array([0, 1, 2, 3, 10, 1])
    net = MultiLayerNet(5, [4], 11 - 1, dtype=np.float64)
    text = message(lambda: net.steps(x, t, np.array([[0, 4]]), optim.SGD()))
    assert text == "MultiLayerNet.steps: labels must lie in [0, C), C = 10 classes: label 10 in row 4", text
    text = message(lambda: net.steps(x, t % 10, np.array([[0, 9]]), optim.SGD()))
    assert (
        text == "MultiLayerNet.steps: a batch index lies outside [0, len(x)) = [0, 6): (position, index) = (1, 9) "
        "in batch 0"
    ), text
    bad = x.copy()
    bad[3, 2] = np.nan
    assert message(lambda: net.steps(bad, t % 10, np.array([[0, 3]]), optim.SGD())).endswith("NaN or infinity in row 3")
    stack = NetStack([MultiLayerNet(5, [4], 10, dtype=np.float64) for _ in range(2)], [optim.SGD(), optim.SGD()])
    text = message(lambda: stack.steps(bad, t % 10, np.array([[0, 3]])))
    assert text == "NetStack.steps: x has NaN or infinity in row 3", text
    conv = SimpleConvNet((1, 6, 6), {"filter_num": 2, "filter_size": 3, "pad": 0, "stride": 1}, 4, 3)
    text = message(lambda: conv.step(rng.random((2, 36)).astype(np.float32), np.array([0, 3]), optim.SGD()))
    assert "label 3" in text and not TUPLE.search(text), text
    two = TwoLayerNet(5, 4, 10)
    text = message(lambda: two.steps(x.astype(np.float32), t, np.array([[0, 4]]), 0.1))
    assert "label 10 in row 4" in text and not TUPLE.search(text), text


def test_kernel_entry_points_name_their_values():
    from fastnet.kernels import conv_forward, pool_forward

    x = np.zeros((1, 2, 5, 5), np.float32)
    text = message(lambda: conv_forward(x, np.zeros((3, 2, 2, 2), np.float32), np.zeros(3, np.float32),
                                        np.zeros((1, 3, 2, 2), np.float32), 2, 0))  # fmt: skip
    assert "height 5, window 2, stride 2, pad 0" in text and not TUPLE.search(text), text
    text = message(lambda: pool_forward(x, np.zeros((1, 2, 2, 2), np.float32), np.zeros((1, 2, 2, 2), np.int64), 0,
                                        2, 2, 0))  # fmt: skip
    assert "at least 1×1, not 0×2" in text, text


# -- help ------------------------------------------------------------------------------------------


def test_fastnet_without_a_command_lists_the_commands(capsys):
    assert main([]) == 2
    printed = capsys.readouterr()
    text = printed.out + printed.err
    for command in ("train", "evaluate", "book", "sweep", "fetch", "gradcheck"):
        assert command in text


# -- the package's name ----------------------------------------------------------------------------


def test_the_distribution_name_is_not_taken_and_every_install_hint_uses_it():
    """PyPI's ``fastnet`` is another project (a PyTorch wrapper): ``pip install 'fastnet[...]'`` in a
    fresh environment would install it. The distribution is ``fastnet-dlfs``; the import name stays."""
    name = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"]
    assert name == "fastnet-dlfs"
    hint = re.compile(r"pip install[^\n`]*?[\"']?fastnet\[")
    for path in [*ROOT.glob("*.md"), *(ROOT / "docs").glob("*.md"), *(ROOT / "fastnet").rglob("*.py")]:
        assert not hint.search(path.read_text()), f"{path}: an install hint names PyPI's other fastnet"
    from fastnet import sweep

    text = sweep.dashboard_hint(None, "out", "s")
    assert "fastnet-dlfs[dashboard]" in text and '-e ".[dashboard]"' in text


def test_every_option_says_what_it_does():
    import argparse

    from fastnet.cli import build_parser

    def commands(parser, prefix=""):  # every (sub)command: `train`, `book ch7`, ...
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield f"{prefix}{name}", sub
                    yield from commands(sub, f"{prefix}{name} ")

    found = dict(commands(build_parser()))
    assert {"train", "book", "book ch6", "book ch7", "book ch8", "sweep"} <= set(found)
    missing = [f"{name} {option.option_strings[0]}" for name, sub in found.items() for option in sub._actions
               if option.option_strings and option.help in (None, "") and option.dest != "help"]  # fmt: skip
    assert not missing, f"options without a description: {missing}"


@pytest.mark.parametrize(
    ("chapter", "has", "lacks"),
    [
        ("ch6", ["optimizer-compare", "hyperparameter-search", "--method"], ["--params", "train-convnet"]),
        ("ch7", ["train-convnet", "apply-filter", "--image", "--params"], ["--method", "train-deepnet"]),
        ("ch8", ["train-deepnet", "half-float", "deep_convnet_params.pkl"], ["--method", "--image", "apply-filter"]),
    ],
)
def test_each_chapters_help_lists_its_experiments_and_options(capsys, chapter, has, lacks):
    with pytest.raises(SystemExit) as exit_:
        main(["book", chapter, "--help"])
    text = capsys.readouterr().out
    assert exit_.value.code == 0 and all(word in text for word in has) and not any(word in text for word in lacks)


def test_the_train_header_names_the_network_once(tmp_path, capsys):
    code = main(["train", "--dataset", SUBSET, "--net", "simple-conv", "--iters", "1", "--out", str(tmp_path),
                 "--no-plot", "--no-progress"])  # fmt: skip
    header = capsys.readouterr().out.splitlines()[0]
    assert code == 0 and header.count("SimpleConvNet") == 1 and "1 step of batch 100" in header, header


NO_DATA = "idx:/no/such/dir"  # loading it fails: an error about an option shows the check came first


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (["--seed", "-1"], "--seed -1: must be a whole number >= 0"),
        (["--dropout", "1.5"], "--dropout 1.5: must lie in [0, 1)"),
        (["--validation", "1"], "--validation 1: validation must be a fraction in [0, 1)"),
        (["--lr", "0"], "--lr 0: must lie in (0, inf)"),
        (["--lr-decay", "1.5"], "--lr-decay 1.5: must lie in (0, 1]"),
        (["--shift", "2"], "--shift moves pixels of images"),
        (["--flip"], "--flip moves pixels of images"),
        (["--rotate", "5"], "--rotate moves pixels of images"),
        (["--net", "simple-conv", "--rotate", "-5"], "--rotate -5: must lie in [0, 180)"),
        (["--net", "simple-conv", "--zoom", "1"], "--zoom 1: must lie in [0, 1)"),
        (["--early-stopping", "0"], "--early-stopping 0: early_stopping must be a positive number"),
    ],
)
def test_train_options_are_checked_before_the_data_is_loaded(options, words, capsys):
    assert main(["train", "--dataset", NO_DATA, *options]) == 1
    err = capsys.readouterr().err
    assert words in err and "no train-images" not in err, err


def test_evaluate_refuses_a_net_option_the_file_contradicts(tmp_path, capsys):
    from fastnet import SimpleConvNet

    SimpleConvNet((1, 28, 28), seed=0).save_params(tmp_path / "w.npz")
    assert main(["evaluate", str(tmp_path / "w.npz"), "--net", "deep-conv", "--dataset", NO_DATA]) == 1
    assert "holds a SimpleConvNet, not a DeepConvNet" in capsys.readouterr().err


def test_the_loaders_docs_data_names_are_importable():
    import fastnet

    text = (ROOT / "docs" / "DATA.md").read_text()
    for name in re.findall(r"fastnet\.(load_\w+)", text) + re.findall(r"`(load_\w+)`", text):
        assert hasattr(fastnet, name), f"docs/DATA.md names {name}, which fastnet does not export"


# -- figures a person reads without the docs ---------------------------------------------------


def test_the_sweep_figure_has_a_legend_labels_and_visible_one_epoch_curves():
    from fastnet.sweep import sweep_figure

    best = [{"val_curve": [0.5 + i / 10], "train_curve": [0.55], "val_acc": 0.5 + i / 10, "lr": 1e-3 * (i + 1),
             "weight_decay": 1e-5} for i in range(3)]  # fmt: skip
    fig = sweep_figure(best)
    legend = [text.get_text() for legend in fig.legends for text in legend.get_texts()]
    assert legend == ["validation accuracy", "training accuracy"]
    shown = [ax for ax in fig.axes if ax.get_visible() and ax.lines]
    assert len(shown) == 3 and len(fig.axes) == 3  # a row of three panels, not a canvas for five
    for ax in shown:
        assert ax.get_xlabel() == "epoch" and not ax.texts  # nothing written over the curves
        assert all(line.get_marker() not in (None, "None", "") for line in ax.lines)  # one epoch: a visible point
        assert "lr" in ax.get_title() and "wd" in ax.get_title()
    assert shown[0].get_ylabel() == "accuracy"


def test_the_training_figure_of_a_short_run_draws_what_its_legend_names():
    from fastnet.plot import history_figure
    from fastnet.train import EpochRecord, History

    history = History(config={})
    history.step_losses = np.array([2.3, 2.1, 1.9])
    history.epochs = [EpochRecord(epoch=1, iteration=3, train_acc=0.5, test_acc=0.45, loss=1.9)]
    fig = history_figure(history)
    loss_ax, acc_ax = fig.axes
    labels = [text.get_text() for text in loss_ax.get_legend().get_texts()]
    assert labels == ["per step"]  # no "mean of N" entry without its line
    assert all(line.get_marker() not in (None, "None", "") for line in loss_ax.lines + acc_ax.lines)
    fig.canvas.draw()
    ticks = [t for t in acc_ax.get_xticks() if acc_ax.get_xlim()[0] <= t <= acc_ax.get_xlim()[1]]
    assert all(float(t).is_integer() for t in ticks), ticks  # not 0.96 ... 1.04


def test_train_size_makes_a_quick_first_run(tmp_path, capsys):
    code = main(["train", "--dataset", SUBSET, "--train-size", "200", "--epochs", "2", "--out", str(tmp_path),
                 "--no-plot", "--no-progress"])  # fmt: skip
    assert code == 0
    history = strict_json((tmp_path / "history.json").read_text())
    assert history["config"]["train_size"] == 200 and history["config"]["test_size"] == 200
    assert history["config"]["spec"] is None  # the book's TwoLayerNet; a --layers run records its text
    assert "200 train / 200 test" in capsys.readouterr().out
    assert main(["train", "--dataset", NO_DATA, "--train-size", "0"]) == 1
    assert "--train-size 0: must be at least 1" in capsys.readouterr().err
