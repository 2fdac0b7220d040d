"""The fastnet command: train, evaluate, gradcheck, fetch, export, book (the book's chapter 6, 7
and 8 experiments) and sweep (hyperparameter search on Optuna). Its parser and ``main`` are here,
the commands in ``commands``, what the options mean and their checks in ``options``.

  fastnet train                             the book's two-layer run on MNIST
  fastnet train --preset accurate           784-256-256-10, >= 98 % on MNIST in under a minute
  fastnet train --preset accurate-conv      a batch-norm convnet: 99.47 % on MNIST in about 6 minutes
  fastnet train --layers conv8x3p1,bn,relu,pool2,affine10    a network of your own design
  fastnet train --net simple-conv           chapter 7's SimpleConvNet (Adam, 20 epochs)
  fastnet evaluate fastnet-run/weights.npz
  fastnet book ch6 optimizer-compare        chapter 6's experiments (figure and data)
  fastnet book ch7 train-convnet            chapter 7's
  fastnet train --net deep-conv             chapter 8's DeepConvNet
  fastnet book ch8 train-deepnet            chapter 8's experiments
  fastnet sweep --trials 100                the book's hyperparameter search
  fastnet gradcheck                         the book's gradient check
"""

import argparse
import sys

from .book import CH6_EXPERIMENTS, CH6_SEARCH, CH7_EXPERIMENTS, CH8_EXPERIMENTS
from .commands import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    cmd_book,
    cmd_evaluate,
    cmd_export,
    cmd_fetch,
    cmd_gradcheck,
    cmd_sweep,
    cmd_train,
)
from .layers import LAYERS_HELP
from .options import check_output_path, load_dataset  # noqa: F401  (load_dataset: for scripts and tests)
from .presets import CONVNETS, MNIST_LAYERS, PRESETS


def build_parser():
    from . import __version__

    raw = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(prog="fastnet", description=__doc__, formatter_class=raw)
    p.add_argument("--version", action="version", version=f"fastnet {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def data_options(sp):
        sp.add_argument(
            "--dataset",
            default="mnist",
            help="mnist, fashion-mnist, idx:DIR (your IDX files) or csv:TRAIN[,TEST] (default mnist)",
        )
        sp.add_argument("--data-dir", help="a directory holding the IDX files (else the cache, else download)")

    t = sub.add_parser("train", help="train a network (by default the book's TwoLayerNet run)")
    data_options(t)
    t.add_argument("--net", choices=CONVNETS,
                   help="simple-conv: chapter 7's SimpleConvNet (conv 30×5×5, pool, 100); deep-conv: chapter 8's "
                        "DeepConvNet (six 3×3 convs, dropout 0.5, --dropout to change it); both Adam 0.001, "
                        "20 epochs. Without it, a TwoLayerNet or MultiLayerNet from the options below")  # fmt: skip
    t.add_argument("--layers", metavar="SPEC",
                   help="a network of your own design (a fastnet.Sequential, Adam 0.001 unless --optimizer/--lr): "
                        + LAYERS_HELP)  # fmt: skip
    t.add_argument("--preset", choices=sorted(PRESETS),
                   help="accurate: 784-256-256-10, dropout 0.2, Adam lr 1e-3 x 0.9 per epoch, 20 epochs; "
                        f"accurate-conv: a batch-norm convnet, {PRESETS['accurate-conv']['layers']} (see --layers), "
                        "Adam lr 1e-3, --eval-size 10000; on mnist with batch norm after each pool, "
                        f"{MNIST_LAYERS}, --shift 2, x 0.88 per epoch, 25 epochs; on "
                        "fashion-mnist --flip, x 0.85 per epoch, 15 epochs (else as fashion-mnist without --flip); "
                        "accurate-deep-conv: the book's DeepConvNet, Adam lr 1e-3 x 0.9 per epoch, 15 epochs "
                        "(options you give override a preset's)")  # fmt: skip
    t.add_argument(
        "--hidden",
        help="hidden sizes, e.g. 50 or 100,100,100 (50); a convnet: its one hidden layer "
        "(SimpleConvNet 100, DeepConvNet 50)",
    )
    t.add_argument("--batch-size", type=int, help="minibatch size (100)")
    t.add_argument("--lr", type=float, help="learning rate (0.1 for the book's run, else the optimizer's default)")
    t.add_argument("--optimizer", choices=["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"],
                   help="the optimizer (default: sgd for a dense net, adam for a convnet or --layers)")  # fmt: skip
    t.add_argument("--activation", choices=["relu", "sigmoid"], help="hidden activation (a MultiLayerNet; relu)")
    t.add_argument("--init", choices=["he", "relu", "xavier", "sigmoid"],
                   help="weight initialisation (a MultiLayerNet; he, or --weight-init-std)")  # fmt: skip
    t.add_argument("--weight-decay", type=float, help="weight decay lambda (a MultiLayerNet; 0)")
    t.add_argument("--dropout", type=float, metavar="RATIO", help="dropout after each hidden layer (a MultiLayerNet)")
    t.add_argument("--batchnorm", action="store_true", help="batch normalization in each hidden layer")
    t.add_argument(
        "--validation", type=float, default=0.0,
        help="hold out this fraction of the training set and report its accuracy (0)",
    )  # fmt: skip
    t.add_argument(
        "--early-stopping", type=int, metavar="N",
        help="stop after N evaluations without a better validation accuracy; keep the best weights",
    )  # fmt: skip
    t.add_argument("--lr-decay", type=float, help="multiply the learning rate by this after each epoch (1)")
    t.add_argument(
        "--shift",
        type=int,
        metavar="PIXELS",
        help="a convnet: move each training image by up to PIXELS in each direction, afresh each epoch (0)",
    )
    t.add_argument(
        "--flip",
        action="store_true",
        default=None,
        help="a convnet: mirror a random half of the training images each epoch (clothes, not digits)",
    )
    t.add_argument("--rotate", type=float, metavar="DEGREES",
                   help="a convnet: turn each training image by a random angle of up to DEGREES either way, "
                        "afresh each epoch (0)")  # fmt: skip
    t.add_argument("--zoom", type=float, metavar="FRACTION",
                   help="a convnet: scale each training image by a random factor in 1 ± FRACTION, afresh each "
                        "epoch (0)")  # fmt: skip
    t.add_argument("--train-size", type=int, metavar="N",
                   help="train on the first N training images, and test on the first N test images: a quick "
                        "first run (all)")  # fmt: skip
    t.add_argument("--eval-size", type=int, metavar="N",
                   help="score the training accuracy on N training images (drawn once) at each evaluation: "
                        "shorter evaluations (all)")  # fmt: skip
    t.add_argument("--iters", type=int, help="training steps (10000; a convnet: 20 epochs' worth)")
    t.add_argument("--epochs", type=float, help="train this many epochs instead of --iters")
    t.add_argument("--weight-init-std", type=float, help="initial weight std (the book's run: 0.01)")
    t.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                   help="the floats the network computes in (float32; float64 for checking)")  # fmt: skip
    t.add_argument(
        "--seed", type=int, help="seed for weights and batches (drawn and recorded in the history if not given)"
    )
    t.add_argument("--threads", type=int, help="Numba threads (default: all cores)")
    t.add_argument("--out", default="fastnet-run", help="output directory (fastnet-run)")
    t.add_argument("--history", help="history JSON path (default OUT/history.json)")
    t.add_argument("--no-plot", action="store_true", help="do not write training.png")
    t.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar (default: when stderr is a terminal)",
    )
    t.set_defaults(func=cmd_train)

    b = sub.add_parser("book", help="the book's experiments on real MNIST: a figure (PNG) and its data (JSON)",
                       description="The book's experiments on real MNIST, each writing its figure (PNG) and data "
                                   "(JSON). `fastnet book CHAPTER --help` lists a chapter's experiments and "
                                   "options.", formatter_class=raw)  # fmt: skip
    chapters = b.add_subparsers(dest="chapter", required=True, metavar="CHAPTER")
    for chapter, title in BOOK_CHAPTERS.items():
        listing = "\n".join(f"  {name:<22} {BOOK_EXPERIMENTS[name]}" for name in BOOK_EXPERIMENT_NAMES[chapter])
        usage = f"Chapter {chapter[2:]}, {title}: fastnet book {chapter} NAME, NAME one of\n\n{listing}"
        c = chapters.add_parser(chapter, help=title, description=usage, formatter_class=raw)
        c.add_argument("name", metavar="NAME", help="the experiment (listed above)")
        data_options(c)
        c.add_argument("--out", default="fastnet-book", help="output directory (fastnet-book)")
        c.add_argument("--seed", type=int, default=0, help="seed for the weights and the batches (0)")
        if chapter == "ch6":
            c.add_argument("--method", choices=["fastnet", "reference"], default="fastnet",
                           help="fastnet (float32), or the book's numpy code (reference, float64)")  # fmt: skip
        else:
            trainer = BOOK_EXPERIMENT_NAMES[chapter][0]
            c.add_argument("--epochs", type=int, help=f"{trainer}: epochs (the book's 20)")
            book_file = "params.pkl" if chapter == "ch7" else "deep_convnet_params.pkl"
            c.add_argument(
                "--params",
                help=f"the other experiments: trained weights (the book's {book_file} "
                f"or a fastnet weights file; default: what {trainer} wrote in --out)",
            )
        if chapter == "ch7":
            c.add_argument("--image", type=int, default=0, help="apply-filter: which test image (0)")
        c.set_defaults(func=cmd_book)

    w = sub.add_parser("sweep", help="hyperparameter search on Optuna (the book's defaults), K trials at a time")
    data_options(w)
    w.add_argument("--study", default="fastnet-sweep", help="the study's name (fastnet-sweep)")
    w.add_argument("--storage", help="database URL shared by workers, e.g. postgresql://user@host/db "
                                     "(default: an SQLite file in --out)")  # fmt: skip
    w.add_argument("--join", action="store_true", help="join an existing study (an error if there is none)")
    w.add_argument("--trials", type=int, default=100, help="trials this worker runs (100)")
    w.add_argument("--stack", type=int, default=16, help="trials trained together in one NetStack (16)")
    w.add_argument("--net", choices=["dense", "simple-conv", "deep-conv"],
                   help="what each trial trains: dense, a MultiLayerNet of --hidden (the book's search); "
                        "simple-conv, deep-conv: the book's convnets on square images (dense)")  # fmt: skip
    w.add_argument("--hidden", help="hidden sizes of a dense net (100,100,100,100,100,100)")
    w.add_argument("--layers", metavar="SPEC",
                   help="each trial a network of your own design instead (as train --layers; the trial's weight "
                        "decay on each affine and conv layer)")  # fmt: skip
    w.add_argument("--train-size", type=int, help="training images used, validation included (500)")
    w.add_argument("--validation", type=float, help="share of them held out to score trials (0.2)")
    w.add_argument("--epochs", type=int, help="epochs per trial (50)")
    w.add_argument("--batch-size", type=int, help="minibatch size (100)")
    w.add_argument("--lr", help="learning-rate range LOW:HIGH[:log] (1e-6:1e-2:log)")
    w.add_argument("--weight-decay", help="weight-decay range LOW:HIGH[:log] (1e-8:1e-4:log)")
    w.add_argument("--sampler", choices=["random", "tpe"], help="Optuna's sampler (random, as the book)")
    w.add_argument("--seed", type=int, help="seed for the data split, the weights and the batches (0)")
    w.add_argument("--workers", type=int, help="workers sharing this machine: each takes cores / N threads")
    w.add_argument("--threads", type=int, help="Numba threads for this worker (default: all cores)")
    w.add_argument("--heartbeat", type=int, default=30,
                   help="seconds between heartbeats (30). A killed worker's trials stay 'running' until their "
                        "heartbeat is 3 intervals old and a worker starts: then they are failed and queued again "
                        "(--trials 0 does only that; docs/SWEEPS.md)")  # fmt: skip
    w.add_argument("--out", default="fastnet-sweep", help="output directory (fastnet-sweep)")
    w.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar over trials (default: when stderr is a terminal)")  # fmt: skip
    w.set_defaults(func=cmd_sweep)

    e = sub.add_parser("evaluate", help="accuracy of saved weights on a test set")
    e.add_argument("weights", help="a fastnet weights file (.npz), or the book's .pkl with --net")
    e.add_argument("--net", choices=CONVNETS, help="the network of a book's .pkl file: simple-conv (params.pkl) "
                                                   "or deep-conv (deep_convnet_params.pkl)")  # fmt: skip
    data_options(e)
    e.add_argument("--train", action="store_true", help="also report training accuracy")
    e.set_defaults(func=cmd_evaluate)

    g = sub.add_parser("gradcheck", help="the book's gradient check on real images (float64)")
    data_options(g)
    g.add_argument("--batch", type=int, default=3, help="images in the checked batch (3, the book's)")
    g.add_argument("--hidden", type=int, default=50, help="hidden units of the checked TwoLayerNet (50)")
    g.add_argument("--seed", type=int, default=0, help="seed of its initial weights (0)")
    g.add_argument("--threshold", type=float, default=1e-6,
                   help="the largest mean difference from backprop that passes (1e-6)")  # fmt: skip
    g.set_defaults(func=cmd_gradcheck)

    x = sub.add_parser("export", help="a weights file as an ONNX model (needs the onnx extra)")
    x.add_argument("weights", help="a fastnet weights file (.npz)")
    x.add_argument("output", help="the ONNX file to write, e.g. model.onnx")
    x.set_defaults(func=cmd_export)

    f = sub.add_parser("fetch", help="download and verify a dataset into the cache")
    f.add_argument("--dataset", default="mnist", choices=["mnist", "fashion-mnist"], help="which one (mnist)")
    f.add_argument("--data-dir", help="where to keep it (default: the user cache, docs/DATA.md)")
    f.set_defaults(func=cmd_fetch)
    return p


BOOK_CHAPTERS = {"ch6": "training techniques", "ch7": "convolutional networks", "ch8": "the deep convnet"}
BOOK_EXPERIMENT_NAMES = {"ch6": CH6_EXPERIMENTS + (CH6_SEARCH,), "ch7": CH7_EXPERIMENTS, "ch8": CH8_EXPERIMENTS}
BOOK_EXPERIMENTS = {  # name: what it shows (the figure it writes)
    "optimizer-compare": "SGD, Momentum, AdaGrad, Adam on a 5-layer net: loss per step",
    "weight-init-compare": "std 0.01, Xavier, He initial weights: loss per step",
    "batch-norm": "with and without batch norm at 16 weight scales: accuracy per epoch",
    "overfit-weight-decay": "300 training images, weight decay 0.1: train and test accuracy",
    "overfit-dropout": "300 training images, dropout 0.2: train and test accuracy",
    "hyperparameter-search": "100 random lr and weight decay trials (fastnet sweep's defaults)",
    "train-convnet": "SimpleConvNet, 20 epochs: accuracy per epoch; params.pkl",
    "visualize-filter": "the 30 first-layer filters before and after training",
    "apply-filter": "a test image through the trained filters",
    "train-deepnet": "DeepConvNet, 20 epochs: accuracy per epoch; deep_convnet_params.pkl",
    "misclassified": "the test images DeepConvNet gets wrong, with its guesses",
    "half-float": "DeepConvNet's test accuracy with float16 weights and inputs",
}


def main(argv=None):
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:  # a bare `fastnet`: what it can do, not only an error
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    args = parser.parse_args(argv)
    if args.command == "book" and args.name not in BOOK_EXPERIMENT_NAMES[args.chapter]:  # a usage error, exit 2
        names = BOOK_EXPERIMENT_NAMES[args.chapter]
        parser.error(f"fastnet book {args.chapter}: no experiment {args.name!r}; {args.chapter} has {', '.join(names)}")
    try:
        for name in ("batch_size", "hidden", "batch"):  # sizes, in any command that has them (train's
            value = getattr(args, name, None)  # --hidden is a list: parse_sizes checks it)
            if isinstance(value, int) and value < 1:
                raise ValueError(f"--{name.replace('_', '-')} {value}: must be at least 1")
        if getattr(args, "out", None) is not None:  # before any data is loaded: a run is never lost to it
            check_output_path("--out", args.out)
        if getattr(args, "history", None):
            check_output_path("--history", args.history, directory=False)
        return args.func(args)
    except KeyboardInterrupt:
        print("fastnet: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, TypeError, OSError) as e:  # DataError, WeightsError are ValueErrors
        print(f"fastnet: error: {e}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
