"""The book's experiments, run on fastnet (``fastnet book ch6|ch7|ch8 NAME``); see ``ch6``, ``ch7``, ``ch8``."""

# named here so that the command line lists them without importing the kernels
CH6_EXPERIMENTS = ("optimizer-compare", "weight-init-compare", "batch-norm", "overfit-weight-decay", "overfit-dropout")
CH6_SEARCH = "hyperparameter-search"  # fastnet.sweep with its defaults: the book's search
CH7_EXPERIMENTS = ("train-convnet", "visualize-filter", "apply-filter")
CH8_EXPERIMENTS = ("train-deepnet", "misclassified", "half-float")


def save_figure(fig, path):
    """Lay out ``fig``, write it as a PNG at ``path`` atomically (old file or new one), close it."""
    import io

    import matplotlib.pyplot as plt

    from .._atomic import atomic_write_bytes

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
