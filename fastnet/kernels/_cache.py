"""Numba's on-disk cache, invalidated by a change to *any* module of this package.

Numba stamps each cached function with a hash of its own source file only. A
kernel whose callee (or a constant it reads) lives in another module of this
package would keep its old machine code after that module changed. So the
kernels' cache entries are stamped with one hash of every ``*.py`` file in
``fastnet/kernels/``: change any of them and every kernel recompiles once.

How: locators that Numba asks first (``CacheImpl._locator_classes``, the
mechanism pytensor uses for the same problem in ``pytensor/link/numba/cache.py``).
They take only functions defined in this package, keep Numba's usual cache
directories, and replace the source stamp. This touches a private Numba API;
``tests/test_kernel_cache.py`` pins it by changing a constant in one module in a
copy of the package and seeing a kernel in another module pick it up.
"""

import hashlib
import os
from pathlib import Path

from numba.core import caching

PACKAGE_DIR = Path(__file__).resolve().parent


def package_stamp():
    """sha256 over the names and contents of every module of this package (read once per process)."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE_DIR.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


_STAMP = package_stamp()


def _in_package(py_file):
    return Path(os.path.abspath(py_file)).parent == PACKAGE_DIR


class _PackageStamp:
    """Mixin: a source-file locator whose stamp is the whole package's hash."""

    def get_source_stamp(self):
        return _STAMP

    @classmethod
    def from_function(cls, py_func, py_file):
        return super().from_function(py_func, py_file) if _in_package(py_file) else None


class _UserProvided(_PackageStamp, caching.UserProvidedCacheLocator):
    """NUMBA_CACHE_DIR, when set."""


class _InTree(_PackageStamp, caching.InTreeCacheLocator):
    """fastnet/kernels/__pycache__, when writable."""


class _UserWide(_PackageStamp, caching.UserWideCacheLocator):
    """The user's cache directory otherwise."""


def install():
    """Put the package-stamped locators first in Numba's search order (once)."""
    locators = caching.CacheImpl._locator_classes
    for cls in reversed((_UserProvided, _InTree, _UserWide)):
        if cls not in locators:
            locators.insert(0, cls)


install()


def is_cached(dispatcher):
    """Whether the cache holds machine code of ``dispatcher`` (any signature) for the package as it
    is now: False on a first run, and after an upgrade or an edit of any kernel module. Reads Numba's
    index file (a private API): if that fails, says True, so a notice is left out rather than wrong."""
    try:
        return bool(dispatcher._cache._cache_file._load_index())
    except Exception:
        return True
