"""Atomic file writes: a reader, or a crash at any moment, sees the old file or the new one.

The data goes to a temporary file in the target's directory, is flushed and
fsynced, then renamed over the target (``os.replace`` is atomic on POSIX and
Windows). An exception or Ctrl-C before the rename removes the temporary file
and leaves the target untouched.
"""

import contextlib
import os
import tempfile
from pathlib import Path


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


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
