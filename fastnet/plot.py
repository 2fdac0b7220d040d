"""A PNG of a training run: loss per step and train/test accuracy per epoch."""

import io

import numpy as np

from ._atomic import atomic_write_bytes


def plot_history(history, path, title="fastnet TwoLayerNet"):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.2))
    losses = np.asarray(history.step_losses, dtype=float)
    if losses.size:
        ax_loss.plot(np.arange(losses.size), losses, lw=0.4, alpha=0.4, color="tab:blue", label="per step")
        window = min(100, losses.size)
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        ax_loss.plot(np.arange(window - 1, losses.size), smooth, color="tab:blue", label=f"mean of {window}")
    ax_loss.set(xlabel="iteration", ylabel="training loss (cross-entropy)", title="loss")
    ax_loss.legend()
    epochs = [r.epoch for r in history.epochs]
    ax_acc.plot(epochs, [r.train_acc for r in history.epochs], marker="o", label="train")
    ax_acc.plot(epochs, [r.test_acc for r in history.epochs], marker="s", linestyle="--", label="test")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1.0))
    ax_acc.legend(loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
