"""What the fastnet command's options mean and what it checks before any work: a dataset by its
spec, output paths, thread counts and the train command's numbers (each error names its option)."""

import math
import sys
import tempfile
from pathlib import Path

from .presets import CONVNETS


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


def say_if_compiling(stream=None):
    """One line on the terminal when the training kernels are not in Numba's cache yet, so a first
    run's silent minute is explained; nothing in a quiet run (``stream`` not a terminal)."""
    from .kernels import _cache, engine, step

    stream = sys.stderr if stream is None else stream
    if stream.isatty() and not all(map(_cache.is_cached, (engine.engine_steps, step.train_steps_unchecked))):
        print("compiling the kernels for this machine, once: about a minute (later runs load them from the cache)",
              file=stream, flush=True)  # fmt: skip


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
    if args.train_size is not None and args.train_size < 1:
        raise ValueError(f"--train-size {args.train_size}: must be at least 1")
    if args.layers and (args.net is not None or getattr(args, "hidden_given", False)):
        raise ValueError(f"--layers gives the whole network: leave out {'--net' if args.net else '--hidden'}")
    if getattr(args, "eval_size", None) is not None and args.eval_size < 1:
        raise ValueError(f"--eval-size {args.eval_size}: must be at least 1")
    if args.seed is not None and args.seed < 0:
        raise ValueError(f"--seed {args.seed}: must be a whole number >= 0")
    _between("--dropout", args.dropout, 0, 1)
    if args.validation is not None and not (math.isfinite(args.validation) and 0 <= args.validation < 1):
        raise ValueError(f"--validation {args.validation:g}: validation must be a fraction in [0, 1)")
    _between("--lr-decay", args.lr_decay, 0, 1, high_open=False, low_open=True)
    _between("--lr", args.lr, 0, math.inf, low_open=True)
    _between("--weight-decay", args.weight_decay, 0, math.inf)
    if args.early_stopping is not None and args.early_stopping < 1:
        raise ValueError(f"--early-stopping {args.early_stopping}: early_stopping must be a positive number")
    if args.shift is not None and args.shift < 0:
        raise ValueError(f"--shift {args.shift}: must be a whole number of pixels >= 0")
    _between("--rotate", args.rotate, 0, 180, high_open=True)
    _between("--zoom", args.zoom, 0, 1, high_open=True)
    images = args.net in CONVNETS or (args.layers and any(w.strip().startswith(("conv", "pool"))
                                                          for w in args.layers.split(",")))  # fmt: skip
    moved = [name for name in ("shift", "flip", "rotate", "zoom") if getattr(args, name)]
    if moved and not images:
        given = "--" + moved[0]
        raise ValueError(f"{given} moves pixels of images, and this network takes flat rows: give a convnet "
                         "(--net simple-conv, --net deep-conv, or --layers with convolutions)")  # fmt: skip
