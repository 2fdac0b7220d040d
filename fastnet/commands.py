"""The fastnet command's commands: train, export, book, sweep, evaluate, gradcheck, fetch (the
parser and ``main`` are in ``cli``)."""

import math
import sys
from pathlib import Path

import numpy as np

from .book import CH6_SEARCH
from .options import check_output_path, check_threads, check_train_options, load_dataset, plural, say_if_compiling
from .presets import CONVNETS, apply_preset, build_network, new_convnet, parse_sizes

EXIT_ERROR, EXIT_USAGE, EXIT_DIVERGED, EXIT_INTERRUPTED = 1, 2, 3, 130


def cmd_train(args):
    from .plot import plot_history
    from .train import resolve_seed, train
    from .weights import describe, save_weights

    if args.threads is not None:
        check_threads("--threads", args.threads)
    if args.net in CONVNETS and args.iters is None and args.epochs is None and args.preset is None:
        args.epochs = 20  # the book's train_convnet.py and train_deepnet.py
    apply_preset(args)
    if args.epochs is not None and not (math.isfinite(args.epochs) and args.epochs > 0):
        raise ValueError(f"--epochs {args.epochs:g}: must be a number of epochs > 0")
    if args.iters is not None and args.iters < 1:
        raise ValueError(f"--iters {args.iters}: must be at least 1")
    check_train_options(args)
    (x_train, t_train), (x_test, t_test), classes = load_dataset(args.dataset, args.data_dir)
    if args.train_size is not None:  # a quick first run: the first N training images (and as many test images)
        if args.train_size > len(x_train):
            raise ValueError(f"--train-size {args.train_size}: {args.dataset} has {len(x_train)} training images")
        x_train, t_train = x_train[: args.train_size], t_train[: args.train_size]
        x_test, t_test = x_test[: args.train_size], t_test[: args.train_size]
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
    say_if_compiling()
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
        rotate=args.rotate,
        zoom=args.zoom,
        eval_size=args.eval_size,
    )
    history.config["dataset"] = args.dataset
    steps_s = history.train_seconds - history.eval_seconds
    print(
        f"{plural(history.steps_done, 'step')} in {history.train_seconds:.2f} s "
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
        say_if_compiling()
        with tempfile.TemporaryDirectory() as scratch:  # a fresh study each run, as the book's script
            study = sweep.run(CH6_SEARCH, 100, args.out, storage_url=f"sqlite:///{scratch}/study.db",
                              settings=sweep.Settings(seed=args.seed), data=((x, t), (x_test, t_test)),
                              progress=sys.stderr.isatty())  # fmt: skip
            line = sweep.summary(study)
        print(line)
        say_wrote(args.out, ["sweep.png", "trials.json", "trials.csv", "best.json"])
        return 0
    if getattr(args, "epochs", None) is not None and args.epochs < 1:
        raise ValueError(f"--epochs {args.epochs}: must be at least 1")
    (x, t), (x_test, t_test), classes = load_dataset(args.dataset, args.data_dir)
    if x.shape[1] != 784 or classes > 10:
        raise ValueError(f"--dataset {args.dataset}: the experiments take 28×28 images of 10 classes")
    say_if_compiling()
    if args.chapter in ("ch7", "ch8"):
        from .book import ch7, ch8

        chapter = ch7 if args.chapter == "ch7" else ch8
        options = {"image": args.image} if args.chapter == "ch7" else {}
        epochs = 20 if args.epochs is None else args.epochs  # the book's
        _, line = chapter.run(args.name, args.out, data=((x, t), (x_test, t_test)), seed=args.seed, epochs=epochs,
                              params=args.params, **options)  # fmt: skip
        print(line)
        trained = {"train-convnet": "params.pkl", "train-deepnet": ch8.PARAMS_FILE}.get(args.name)
        say_wrote(args.out, [args.name + ".png", args.name + ".json"] + ([trained, "weights.npz"] if trained else []))
        return 0
    _, line = ch6.run(args.name, args.out, method=args.method, data=((x, t), (x_test, t_test)), seed=args.seed)
    print(line)
    say_wrote(args.out, [args.name + ".png", args.name + ".json"])
    return 0


def say_wrote(directory, names):
    """'wrote a.png, a.json in DIR': every file named the same way."""
    print(f"wrote {', '.join(names)} in {directory}")


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
    "layers",
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
        say_if_compiling()
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
