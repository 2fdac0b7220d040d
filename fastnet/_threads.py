"""Who owns the cores: fastnet's kernels parallelise with Numba threads, never with BLAS threads.

Numba's ``np.dot`` calls SciPy's OpenBLAS (``scipy.linalg.cython_blas``), a
different library from NumPy's own OpenBLAS. The kernels call it from inside
``prange`` loops, each thread on its own block of rows, so that library must run
one thread per call: two layers of threads on 2 cores fight (measured here: one
16 ms stall per step). Only SciPy's copy is limited; NumPy's BLAS, which the
reference uses, keeps its threads.
"""
import os

import scipy
import scipy.linalg.cython_blas  # noqa: F401  (loads the library Numba's np.dot calls)
from threadpoolctl import ThreadpoolController


def limit_scipy_blas_to_one_thread():
    """Set every BLAS library loaded from SciPy's wheel to one thread; return how many."""
    scipy_dir = os.path.dirname(scipy.__file__)  # also a prefix of the wheel's "scipy.libs"
    count = 0
    for lib in ThreadpoolController().lib_controllers:
        if lib.user_api == "blas" and lib.filepath.startswith(scipy_dir):
            lib.set_num_threads(1)
            count += 1
    return count
