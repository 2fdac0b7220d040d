"""The IDX file format (MNIST's), the four files of a dataset, and their checks: magic number,
dimensions and length of every file; checksums when the dataset publishes them."""

import gzip
import hashlib
import zlib
from pathlib import Path

import numpy as np


class DataError(ValueError):
    """A data file is missing, corrupt, truncated, or not what it claims to be."""


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


def find_file(directory, part):
    """The IDX file for ``part`` in ``directory`` (uncompressed or .gz), or None."""
    for name in (FILE_NAMES[part], FILE_NAMES[part] + ".gz"):
        p = Path(directory) / name
        if p.is_file():
            return p
    return None
