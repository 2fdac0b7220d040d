"""A PNG of a training run: loss per step and train/test accuracy per epoch."""

import io

import numpy as np

from ._atomic import atomic_write_bytes

SMOOTHED_FROM = 20  # steps at least before the loss panel adds a moving mean


def history_figure(history, title="fastnet TwoLayerNet"):
    """The figure of ``plot_history``: the loss per step (and its moving mean once there are enough
    steps), the train and test accuracy per epoch; short runs get markers, whole-epoch ticks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.2))
    losses = np.asarray(history.step_losses, dtype=float)
    if losses.size:
        few = losses.size < SMOOTHED_FROM
        ax_loss.plot(np.arange(1, losses.size + 1), losses, lw=0.8 if few else 0.4, alpha=1 if few else 0.4,
                     marker="o" if few else None, markersize=3, color="tab:blue", label="per step")  # fmt: skip
        if not few:
            window = min(100, losses.size // 2)
            smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
            ax_loss.plot(np.arange(window, losses.size + 1), smooth, color="tab:blue", label=f"mean of {window}")
        ax_loss.legend()
    ax_loss.set(xlabel="step", ylabel="training loss (cross-entropy)", title="loss")
    ax_loss.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    epochs = [r.epoch for r in history.epochs]
    ax_acc.plot(epochs, [r.train_acc for r in history.epochs], marker="o", label="train")
    ax_acc.plot(epochs, [r.test_acc for r in history.epochs], marker="s", linestyle="--", label="test")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1.0))
    if epochs and all(float(e).is_integer() for e in epochs):  # whole epochs: whole ticks, a margin of half of one
        ax_acc.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
        ax_acc.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True, min_n_ticks=1))
    ax_acc.legend(loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_history(history, path, title="fastnet TwoLayerNet"):
    """Write ``history_figure`` as a PNG (atomically)."""
    import matplotlib.pyplot as plt

    fig = history_figure(history, title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
