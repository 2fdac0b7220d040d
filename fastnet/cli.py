"""The fastnet command: train, evaluate, gradcheck, fetch, book (the book's chapter 6, 7 and 8
experiments) and sweep (hyperparameter search on Optuna).

  fastnet train                             the book's two-layer run on MNIST
  fastnet train --preset accurate           784-256-256-10, >= 98 % on MNIST in under a minute
  fastnet train --preset accurate-conv      DeepConvNet, Adam with a decaying rate, 15 epochs
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
import math
import sys
import tempfile
from pathlib import Path

import numpy as np

from .book import CH6_EXPERIMENTS, CH6_SEARCH, CH7_EXPERIMENTS, CH8_EXPERIMENTS
from .layers import LAYERS_HELP
from .presets import CONVNETS, DEFAULTS, PRESETS, apply_preset, build_network, new_convnet, parse_sizes  # noqa: F401

EXIT_ERROR, EXIT_USAGE, EXIT_DIVERGED, EXIT_INTERRUPTED = 1, 2, 3, 130


def load_dataset(spec, data_dir=None):
    """(train, test, num_classes) for 'mnist', 'fashion-mnist', 'idx:DIR' or 'csv:TRAIN[,TEST]'."""
    from . import datasets

    if spec == "mnist":
        return (*datasets.load_mnist(data_dir=data_dir), 10)
    if spec == "fashion-mnist":
        return (*datasets.load_fashion_mnist(data_dir=data_dir), 10)
    if spec.startswith("idx:"):
        return datasets.load_idx_dir(spec[4:])
    if spec.startswith("csv:"):
        paths = spec[4:].split(",")
        if not 1 <= len(paths) <= 2 or not all(paths):
            raise ValueError(f"--dataset {spec!r}: expected csv:TRAIN.csv or csv:TRAIN.csv,TEST.csv")
        train = datasets.load_csv(paths[0])
        test = datasets.load_csv(paths[1]) if len(paths) == 2 else train
        classes = int(max(train[1].max(), test[1].max())) + 1
        return train, test, classes
    raise ValueError(f"unknown dataset {spec!r}: use mnist, fashion-mnist, idx:DIR or csv:PATH")


def plural(count, word):
    """'1 step', '2 steps'."""
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def check_output_path(option, path, directory=True):
    """That ``path`` (a directory, or with ``directory=False`` a file) can be written, checked before
    any data is loaded or any training runs: nothing is created here (a failed run leaves no empty
    directory), the nearest existing ancestor must be a writable directory and nothing on the way
    a file. A ValueError naming ``option`` otherwise."""
    path = Path(path)
    if path.exists():
        if directory and not path.is_dir():
            raise ValueError(f"{option} {path}: not a directory (a file is in the way)")
        if not directory and path.is_dir():
            raise ValueError(f"{option} {path}: a directory, not a file")
        _probe(option, path, path if directory else path.parent)
        return
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{option} {path}: not a directory ({parent} is a file)")
    _probe(option, path, parent)


def _probe(option, path, directory):
    """Write and remove a scratch file in ``directory`` (permissions alone do not tell: root, /proc)."""
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as e:
        raise ValueError(f"{option} {path}: cannot write in {directory} ({e.strerror or e})") from None


def check_threads(option, threads):
    """``threads`` for Numba, in 1 .. NUMBA_NUM_THREADS (else a ValueError naming ``option``)."""
    import numba

    limit = numba.config.NUMBA_NUM_THREADS
    if not 1 <= threads <= limit:
        raise ValueError(f"{option} {threads}: give 1 to {limit} threads (this machine's Numba has {limit})")
    numba.set_num_threads(threads)


def _between(option, value, low, high, high_open=True, low_open=False):
    if value is None:
        return
    inside = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not (math.isfinite(value) and inside):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{option} {value:g}: must lie in {interval}")


def check_train_options(args):
    """Every train option that can be checked without the data, checked before it is loaded."""
    if args.seed is not None and args.seed < 0:
        raise ValueError(f"--seed {args.seed}: must be a whole number >= 0")
    _between("--dropout", args.dropout, 0, 1)
    _between("--validation", args.validation, 0, 1)
    _between("--lr-decay", args.lr_decay, 0, 1, high_open=False, low_open=True)
    _between("--lr", args.lr, 0, math.inf, low_open=True)
    _between("--weight-decay", args.weight_decay, 0, math.inf)
    if args.early_stopping is not None and args.early_stopping < 1:
        raise ValueError(f"--early-stopping {args.early_stopping}: must be at least 1")
    if args.shift is not None and args.shift < 0:
        raise ValueError(f"--shift {args.shift}: must be a whole number of pixels >= 0")
    images = args.net in CONVNETS or (args.layers and any(w.strip().startswith(("conv", "pool"))
                                                          for w in args.layers.split(",")))  # fmt: skip
    if (args.shift or args.flip) and not images:
        given = "--shift" if args.shift else "--flip"
        raise ValueError(f"{given} moves pixels of images, and this network takes flat rows: give a convnet "
                         "(--net simple-conv, --net deep-conv, or --layers with convolutions)")  # fmt: skip


def cmd_train(args):
    from .plot import plot_history
    from .train import resolve_seed, train
    from .weights import describe, save_weights

    if args.threads is not None:
        check_threads("--threads", args.threads)
    if args.net in CONVNETS and args.iters is None and args.epochs is None and args.preset is None:
        args.epochs = 20  # the book's train_convnet.py and train_deepnet.py
    apply_preset(args)
    if args.batch_size < 1:
        raise ValueError(f"--batch-size {args.batch_size}: must be at least 1")
    if args.epochs is not None and not (math.isfinite(args.epochs) and args.epochs > 0):
        raise ValueError(f"--epochs {args.epochs:g}: must be a number of epochs > 0")
    if args.iters is not None and args.iters < 1:
        raise ValueError(f"--iters {args.iters}: must be at least 1")
    check_train_options(args)
    (x_train, t_train), (x_test, t_test), classes = load_dataset(args.dataset, args.data_dir)
    iters = args.iters
    if args.epochs is not None:
        iters = math.ceil(args.epochs * max(len(x_train) / args.batch_size, 1))
    # one seed for the initial weights and the batches, drawn if not given and kept in the history
    seed = resolve_seed(args.seed)
    net, optimizer = build_network(args, x_train.shape[1], classes, seed)
    out = Path(args.out)
    history_path = Path(args.history) if args.history else out / "history.json"
    print(
        f"training {type(net).__name__} {describe(net)} ({args.dtype}) on {args.dataset}: "
        f"{len(x_train)} train / {len(x_test)} test, {plural(iters, 'step')} of batch {args.batch_size}, {optimizer}"
    )
    history = train(
        net,
        (x_train, t_train),
        (x_test, t_test),
        iters=iters,
        batch_size=args.batch_size,
        seed=seed,
        progress=args.progress,
        optimizer=optimizer,
        validation=args.validation,
        early_stopping=args.early_stopping,
        lr_decay=args.lr_decay,
        shift=args.shift,
        flip=args.flip,
    )
    history.config["dataset"] = args.dataset
    steps_s = history.train_seconds - history.eval_seconds
    print(
        f"{history.steps_done} steps in {history.train_seconds:.2f} s "
        f"({steps_s:.2f} s of steps, {history.eval_seconds:.2f} s of evaluation)"
    )
    try:
        save_weights(out / "weights.npz", net, dataset=args.dataset, steps=history.steps_done)
        history.save(history_path)
        if not args.no_plot:
            plot_history(
                history,
                out / "training.png",
                title=f"fastnet {type(net).__name__} {describe(net)} on {args.dataset}",
            )
    except KeyboardInterrupt:
        print("fastnet: interrupted while saving; files already written are complete", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"wrote {out / 'weights.npz'}, {history_path}" + ("" if args.no_plot else f", {out / 'training.png'}"))
    if history.stopped == "diverged":
        print(f"fastnet: {history.message}", file=sys.stderr)
        return EXIT_DIVERGED
    if history.stopped == "interrupted":
        print(f"fastnet: {history.message}; history and weights saved", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def cmd_export(args):
    from .export import OPSET, to_onnx
    from .weights import load_weights

    check_output_path("OUTPUT", args.output, directory=False)
    net = load_weights(args.weights)
    to_onnx(net, args.output)
    print(f"wrote {args.output}: {type(net).__name__} {net.describe()}, ONNX opset {OPSET}, float32")
    return 0


def cmd_book(args):
    from .book import ch6

    if args.chapter == "ch6" and args.name == CH6_SEARCH:  # the book's hyperparameter search: a sweep with its defaults
        import tempfile

        from . import sweep

        (x, t), (x_test, t_test), _ = load_dataset(args.dataset, args.data_dir)
        with tempfile.TemporaryDirectory() as scratch:  # a fresh study each run, as the book's script
            study = sweep.run(CH6_SEARCH, 100, args.out, storage_url=f"sqlite:///{scratch}/study.db",
                              settings=sweep.Settings(seed=args.seed), data=((x, t), (x_test, t_test)),
                              progress=sys.stderr.isatty())  # fmt: skip
            line = sweep.summary(study)
        print(line)
        print(f"wrote {Path(args.out) / 'sweep.png'}, trials.json, trials.csv, best.json")
        return 0
    if args.epochs is not None and args.epochs < 1:
        raise ValueError(f"--epochs {args.epochs}: must be at least 1")
    (x, t), (x_test, t_test), classes = load_dataset(args.dataset, args.data_dir)
    if x.shape[1] != 784 or classes > 10:
        raise ValueError(f"--dataset {args.dataset}: the experiments take 28×28 images of 10 classes")
    if args.chapter == "ch8":
        from .book import ch8

        _, line = ch8.run(args.name, args.out, data=((x, t), (x_test, t_test)), seed=args.seed,
                          epochs=20 if args.epochs is None else args.epochs, params=args.params)  # fmt: skip
        print(line)
        files = [ch8.PARAMS_FILE, "weights.npz"] if args.name == "train-deepnet" else []
        print(f"wrote {Path(args.out) / (args.name + '.png')}, " + ", ".join([args.name + ".json", *files]))
        return 0
    if args.chapter == "ch7":
        from .book import ch7

        _, line = ch7.run(args.name, args.out, data=((x, t), (x_test, t_test)), seed=args.seed,
                          epochs=20 if args.epochs is None else args.epochs, params=args.params,
                          image=args.image)  # fmt: skip
        print(line)
        files = ["params.pkl", "weights.npz"] if args.name == "train-convnet" else []
        print(f"wrote {Path(args.out) / (args.name + '.png')}, " + ", ".join([args.name + ".json", *files]))
        return 0
    _, line = ch6.run(args.name, args.out, method=args.method, data=((x, t), (x_test, t_test)), seed=args.seed)
    print(line)
    print(f"wrote {Path(args.out) / (args.name + '.png')}, {Path(args.out) / (args.name + '.json')}")
    return 0


SWEEP_SETTINGS = (
    "net",
    "hidden",
    "train_size",
    "validation",
    "epochs",
    "batch_size",
    "lr",
    "weight_decay",
    "sampler",
    "seed",
)


def cmd_sweep(args):
    from . import sweep

    try:
        given = {key: getattr(args, key) for key in SWEEP_SETTINGS if getattr(args, key) is not None}
        if "hidden" in given:
            given["hidden"] = parse_sizes(given["hidden"])
        for key in ("lr", "weight_decay"):
            if key in given:
                given[key] = sweep.Range.parse(given[key], "--" + key.replace("_", "-"))
        settings = sweep.Settings(**given) if given else None
        if settings is not None:
            settings.check()
        if args.workers is not None or args.threads is not None:
            import numba

            if args.threads is None and args.workers < 1:
                raise sweep.SweepError(f"--workers {args.workers}: at least 1")
            threads = (
                args.threads if args.threads is not None else max(1, numba.config.NUMBA_NUM_THREADS // args.workers)
            )
            check_threads("--threads", threads)
        data = None
        if args.dataset != "mnist" or args.data_dir:
            (x, t), (x_test, t_test), _ = load_dataset(args.dataset, args.data_dir)
            data = ((x, t), (x_test, t_test))
        study = sweep.run(args.study, args.trials, args.out, storage_url=args.storage, settings=settings,
                          join=args.join, stack=args.stack, heartbeat=args.heartbeat, data=data,
                          progress=sys.stderr.isatty() if args.progress is None else args.progress)  # fmt: skip
    except (sweep.SweepError, ValueError) as e:
        print(f"fastnet sweep: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    print(sweep.summary(study))
    print(f"wrote {Path(args.out) / 'trials.json'}, trials.csv, best.json, sweep.png")
    print(sweep.dashboard_hint(args.storage, args.out, args.study))
    return 0


def cmd_evaluate(args):
    from .weights import describe, load_weights

    if str(args.weights).endswith(".pkl"):  # the book's own weights file, for a network given by --net
        if args.net is None:
            raise ValueError(f"{args.weights}: the book's .pkl weights do not say their network; give --net "
                             "simple-conv or --net deep-conv")  # fmt: skip
        net = new_convnet(args.net)
        net.load_params(args.weights)
    else:
        net = load_weights(args.weights)
        wanted = {"simple-conv": "SimpleConvNet", "deep-conv": "DeepConvNet"}.get(args.net)
        if wanted is not None and type(net).__name__ != wanted:
            raise ValueError(f"--net {args.net}: {args.weights} holds a {type(net).__name__}, not a {wanted} "
                             "(--net is for the book's .pkl files, which do not say)")  # fmt: skip
    (x_train, t_train), (x_test, t_test), classes = load_dataset(args.dataset, args.data_dir)
    if net.input_size != x_test.shape[1] or net.output_size < classes:
        raise ValueError(
            f"{args.weights}: a {type(net).__name__} {describe(net)} network "
            f"does not fit {args.dataset} ({x_test.shape[1]} inputs, {classes} classes)"
        )
    test_acc = net.accuracy(x_test, t_test)
    print(f"{args.weights}: test accuracy on {args.dataset}: {test_acc:.4f} ({plural(len(x_test), 'image')})")
    if args.train:
        print(f"train accuracy: {net.accuracy(x_train, t_train):.4f} ({plural(len(x_train), 'image')})")
    return 0


def cmd_gradcheck(args):
    from .gradcheck import check_network
    from .net import TwoLayerNet

    (x_train, t_train), _, classes = load_dataset(args.dataset, args.data_dir)
    net = TwoLayerNet(x_train.shape[1], args.hidden, classes, dtype=np.float64, seed=args.seed)
    x = x_train[: args.batch].astype(np.float64)
    report = check_network(net, x, t_train[: args.batch], threshold=args.threshold)
    for row in report.rows:  # the book's lines
        print(f"{row.name}:{row.mean_abs_diff}")
    print(report)
    return 0 if report.passed else EXIT_ERROR


def cmd_fetch(args):
    from . import datasets

    loader = {"mnist": datasets.load_mnist, "fashion-mnist": datasets.load_fashion_mnist}[args.dataset]
    (x_train, _), (x_test, _) = loader(data_dir=args.data_dir)
    print(
        f"{args.dataset}: {len(x_train)} training and {len(x_test)} test images, cached in "
        f"{args.data_dir or datasets.cache_dir(datasets.MNIST if args.dataset == 'mnist' else datasets.FASHION_MNIST)}"
    )
    return 0


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
                        "accurate-conv: the book's DeepConvNet, Adam lr 1e-3 x 0.9 per epoch, 15 epochs; "
                        "bn-conv: a batch-norm convnet of 32-32-64-64 3×3 filters (see --layers), Adam lr 1e-3 "
                        "x 0.85 per epoch, shifted images, 15 epochs "
                        "(options you give override it)")  # fmt: skip
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
                                   "(JSON).\n\n  ch6 (training techniques): "
                                   + ", ".join((*CH6_EXPERIMENTS, CH6_SEARCH))
                                   + "\n  ch7 (convolutional networks): " + ", ".join(CH7_EXPERIMENTS)
                                   + "\n  ch8 (the deep convnet): " + ", ".join(CH8_EXPERIMENTS),
                       formatter_class=raw)  # fmt: skip
    b.add_argument("chapter", choices=["ch6", "ch7", "ch8"],
                   help="ch6: training techniques; ch7: convolutional networks; ch8: the deep convnet")  # fmt: skip
    b.add_argument("name", metavar="NAME", help="the experiment (listed above)")
    data_options(b)
    b.add_argument("--out", default="fastnet-book", help="output directory (fastnet-book)")
    b.add_argument("--seed", type=int, default=0, help="seed for the weights and the batches (0)")
    b.add_argument("--method", choices=["fastnet", "reference"], default="fastnet",
                   help="ch6: fastnet (float32), or the book's numpy method (reference, float64)")  # fmt: skip
    b.add_argument("--epochs", type=int, help="ch7 train-convnet, ch8 train-deepnet: epochs (the book's 20)")
    b.add_argument("--params", help="the other ch7 and ch8 experiments: trained weights (the book's params.pkl or "
                                    "deep_convnet_params.pkl, or a fastnet weights file; default: the file "
                                    "train-convnet or train-deepnet wrote in --out)")  # fmt: skip
    b.add_argument("--image", type=int, default=0, help="ch7 apply-filter: which test image (0)")
    b.set_defaults(func=cmd_book)

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


BOOK_EXPERIMENTS = {"ch6": CH6_EXPERIMENTS + (CH6_SEARCH,), "ch7": CH7_EXPERIMENTS, "ch8": CH8_EXPERIMENTS}


def main(argv=None):
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:  # a bare `fastnet`: what it can do, not only an error
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    args = parser.parse_args(argv)
    if args.command == "book" and args.name not in BOOK_EXPERIMENTS[args.chapter]:  # a usage error, exit 2
        names = BOOK_EXPERIMENTS[args.chapter]
        parser.error(f"fastnet book {args.chapter}: no experiment {args.name!r}; {args.chapter} has {', '.join(names)}")
    hidden = getattr(args, "hidden", 1)  # train parses its list itself (parse_sizes)
    if (getattr(args, "batch_size", 1) or 1) < 1 or (isinstance(hidden, int) and hidden < 1):
        print("fastnet: error: --batch-size and --hidden must be at least 1", file=sys.stderr)
        return EXIT_ERROR
    try:
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
