"""`fastnet book ch6 NAME`: the chapter's experiments, shortened, on a real MNIST subset (offline)."""

import json

import numpy as np
import pytest
from test_cli import SUBSET

from fastnet.book import CH6_EXPERIMENTS, ch6
from fastnet.cli import load_dataset, main

SHORT = {
    "optimizer-compare": {"iterations": 40},
    "weight-init-compare": {"iterations": 40},
    "batch-norm": {"epochs": 3},
    "overfit-weight-decay": {"epochs": 4},
    "overfit-dropout": {"epochs": 4},
}


@pytest.fixture(scope="module")
def subset():
    (x, t), (x_test, t_test), _ = load_dataset(SUBSET)
    return (x, t), (x_test, t_test)


@pytest.mark.parametrize("name", CH6_EXPERIMENTS)
def test_each_experiment_writes_its_figure_and_data(name, subset, tmp_path):
    result, line = ch6.run(name, tmp_path, data=subset, **SHORT[name])
    assert line.startswith(f"{name}: ") and "fastnet" in line
    assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((tmp_path / f"{name}.json").read_text())
    assert saved["experiment"] == name and saved["seconds"] > 0
    if "loss" in saved:
        assert all(len(curve) == SHORT[name]["iterations"] for curve in saved["loss"].values())
    if "runs" in saved:
        assert len(saved["runs"]) == 16 and all(len(run["batchnorm"]) == 3 for run in saved["runs"])
    if "test_acc" in saved:
        assert len(saved["train_acc"]) == len(saved["test_acc"]) == SHORT[name]["epochs"]


@pytest.mark.parametrize("name", ["optimizer-compare", "weight-init-compare", "overfit-weight-decay"])
def test_fastnet_runs_the_experiment_the_book_runs(name, subset):
    """Same initial weights and minibatches: fastnet in float32 follows the reference in float64."""
    fast = ch6.EXPERIMENTS[name][0](ch6.Fastnet(), ch6.load_data(ch6.Fastnet(), subset), **SHORT[name])
    book = ch6.EXPERIMENTS[name][0](ch6.BookMethod(), ch6.load_data(ch6.BookMethod(), subset), **SHORT[name])
    if "loss" in fast:
        for key in book["loss"]:
            np.testing.assert_allclose(fast["loss"][key][:5], book["loss"][key][:5], rtol=1e-4)
            np.testing.assert_allclose(fast["loss"][key], book["loss"][key], rtol=2e-2)
    else:
        np.testing.assert_allclose(fast["train_acc"], book["train_acc"], atol=0.01)
        np.testing.assert_allclose(fast["test_acc"], book["test_acc"], atol=0.01)


def test_batch_norm_experiment_keeps_diverged_networks_out_of_the_json(subset, tmp_path):
    """At weight scale 1 the plain 6-layer net blows up; its accuracy is recorded as null, not NaN."""
    result, _ = ch6.run("batch-norm", tmp_path, data=subset, epochs=2)
    text = (tmp_path / "batch-norm.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert all(0 <= a <= 1 for run in result["runs"] for a in run["batchnorm"])


def test_command_line(tmp_path, capsys):
    assert main(["book", "ch6", "overfit-dropout", "--dataset", SUBSET, "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "overfit-dropout: after 301 epochs" in printed and (tmp_path / "overfit-dropout.png").exists()
    with pytest.raises(SystemExit) as info:
        main(["book", "ch6", "no-such-experiment"])
    assert info.value.code == 2
