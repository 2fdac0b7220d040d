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


def test_every_book_figure_reads_without_the_docs(subset, tmp_path, monkeypatch):
    """The figures of short runs (one epoch, a few steps) as matplotlib drew them: each has a title;
    every curve shows its points (a marker, so a one-point curve is not invisible); axes with curves
    say what they plot; an epoch axis has whole-number ticks (not 0.96 ... 1.04)."""
    import matplotlib.figure

    from fastnet.book import ch7, ch8

    drawn = []
    savefig = matplotlib.figure.Figure.savefig
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, *a, **k: (drawn.append(fig),
                                                                                  savefig(fig, *a, **k)))  # fmt: skip
    for name in CH6_EXPERIMENTS:
        ch6.run(name, tmp_path, data=subset, **{k: 1 for k in SHORT[name]})
    for name in ch7.CH7_EXPERIMENTS:
        ch7.run(name, tmp_path, data=subset, epochs=1)
    for name in ("train-deepnet", "misclassified", "half-float"):
        ch8.run(name, tmp_path, data=subset, epochs=1)
    assert len(drawn) == len(CH6_EXPERIMENTS) + 6
    suptitles = [fig._suptitle.get_text() for fig in drawn if fig._suptitle]
    assert any(t.startswith("apply-filter: the 30 first-layer filters") for t in suptitles), suptitles
    for fig in drawn:
        titles = [fig._suptitle.get_text() if fig._suptitle else ""] + [ax.get_title(loc) for ax in fig.axes
                                                                         for loc in ("left", "center")]  # fmt: skip
        assert any(titles), "a figure without a title"
        for ax in fig.axes:
            if ax.lines:
                assert ax.get_xlabel() or any(a.get_xlabel() for a in fig.axes), titles
            for line in ax.lines:
                assert line.get_marker() not in (None, "None", "", " "), (titles, line.get_label())
            if ax.get_xlabel() == "epochs":
                fig.canvas.draw()
                low, high = ax.get_xlim()
                ticks = [t for t in ax.get_xticks() if low <= t <= high]
                assert ticks and all(float(t).is_integer() for t in ticks), (titles, ticks)
