"""Atomic file writes: a reader, or a crash at any moment, sees the old file or the new one.

The data goes to a temporary file in the target's directory, is flushed and
fsynced, then renamed over the target (``os.replace`` is atomic on POSIX and
Windows). An exception or Ctrl-C before the rename removes the temporary file
and leaves the target untouched.
"""

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def atomic_path(target):
    """Yield a temporary path next to ``target``; on success, move it over ``target``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    os.close(fd)
    tmp = Path(tmp)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
    try:
        yield tmp
        with open(tmp, "rb+") as f:  # make the bytes durable before the rename publishes them
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(target, data):
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(target, text):
    atomic_write_bytes(target, text.encode("utf-8"))


def json_ready(value):
    """``value`` with every NaN or infinity (a diverged network's loss, say) replaced by None and
    numpy scalars and arrays made plain: what strict JSON (a browser's ``JSON.parse``) reads."""
    if isinstance(value, dict):
        return {key: json_ready(v) for key, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [json_ready(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def json_text(value, **options):
    """Strict JSON of ``value``: NaN and infinities written as null (``json_ready``)."""
    return json.dumps(json_ready(value), allow_nan=False, **options)


def atomic_write_json(target, value, **options):
    """Write ``json_text(value)`` atomically (and a final newline)."""
    atomic_write_text(target, json_text(value, **options) + "\n")


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
