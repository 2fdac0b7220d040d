"""Who owns the cores: which BLAS the kernels call, and Numba's threading layer.

Both are settled once per process, when ``fastnet.kernels`` is imported.

BLAS
----

The kernels' matrix products call the Fortran routines ``sgemm``/``dgemm``
through two symbols, ``fastnet_sgemm`` and ``fastnet_dgemm``, which this module
binds to the chosen library's functions (``llvmlite.binding.add_symbol``).
Compiled code, and so Numba's on-disk cache, names only these symbols: the
library can differ from one process to the next without recompiling.

* **Intel MKL** (the ``mkl`` wheel, a dependency on x86-64 Linux and Windows),
  sequential. Measured on this project's 2-core Xeon, the products of a
  training step ran 1.3-1.9x faster than with OpenBLAS at every benchmarked
  shape (e.g. forward (1000,784)x(784,1000): 259 vs 171 GFLOP/s; (100,784)x
  (784,50): 114 vs 84). Its results did not depend on the arrays' alignment
  (checked at offsets 0-60 bytes), so runs repeat bitwise.
* **SciPy's OpenBLAS** (``scipy.linalg.cython_blas``, the library behind
  Numba's own ``np.dot``) otherwise, held at one thread with threadpoolctl.

Either way BLAS runs one thread per call: the kernels call it from inside
``prange`` blocks, one block per core, and two layers of threads on the same
cores fight (measured: a 16 ms stall per step). NumPy's own BLAS, which the
reference uses, is a third library and is left alone.

``FASTNET_BLAS=mkl`` or ``FASTNET_BLAS=openblas`` forces the choice (``mkl``
fails loudly if MKL cannot be used).

Threading layer
---------------
Numba picks TBB first when it is installed, and the ``mkl`` wheel brings TBB
along. OpenMP measured 5-10 % faster per training step here, so unless you
chose (``NUMBA_THREADING_LAYER`` or ``NUMBA_THREADING_LAYER_PRIORITY``), fastnet
asks for the order omp, tbb, workqueue. This holds for the whole process (Numba
has one layer, started at the first parallel call, by fastnet or anyone else).
"""

import ctypes
import importlib.metadata
import os

import llvmlite.binding as llvm
from numba.extending import get_cython_function_address

MKL_THREADING_SEQUENTIAL = 1  # mkl_service.h
MKL_INTERFACE_LP64 = 0  # 32-bit integers, as the kernels pass them

BACKEND = None  # "mkl" or "openblas", once select_blas() has run


def _find_mkl():
    """The MKL runtime library of the ``mkl`` wheel, loaded, or None."""
    try:
        files = importlib.metadata.files("mkl") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.name.startswith(("libmkl_rt.so", "mkl_rt.")) and not f.name.endswith(".lib"):
            path = f.locate()
            if os.path.exists(path):
                return ctypes.CDLL(str(path))
    return None


def _mkl_gemm_addresses():
    """(sgemm, dgemm) addresses in MKL made sequential, or a reason it cannot be used."""
    try:
        mkl = _find_mkl()
    except OSError as error:
        return f"MKL did not load: {error}"
    if mkl is None:
        return "the mkl package is not installed"
    # Both settings take effect only before MKL's first call. If something in
    # this process already used MKL (a NumPy built on MKL, say) they report
    # what is in force instead, and MKL could start its own threads: don't use it.
    if mkl.MKL_Set_Threading_Layer(MKL_THREADING_SEQUENTIAL) != MKL_THREADING_SEQUENTIAL:
        return "MKL is already in use in this process with a threaded layer"
    if mkl.MKL_Set_Interface_Layer(MKL_INTERFACE_LP64) != MKL_INTERFACE_LP64:
        return "MKL is already in use in this process with 64-bit integers"
    return tuple(ctypes.cast(getattr(mkl, name), ctypes.c_void_p).value for name in ("sgemm", "dgemm"))


def _openblas_gemm_addresses():
    import scipy
    from threadpoolctl import ThreadpoolController

    addresses = tuple(get_cython_function_address("scipy.linalg.cython_blas", name) for name in ("sgemm", "dgemm"))
    scipy_dir = os.path.dirname(scipy.__file__)  # also a prefix of the wheel's "scipy.libs"
    for lib in ThreadpoolController().lib_controllers:  # sees SciPy's BLAS once cython_blas is loaded
        if lib.user_api == "blas" and lib.filepath.startswith(scipy_dir):
            lib.set_num_threads(1)
    return addresses


def prefer_openmp():
    """Numba's threading layer order omp, tbb, workqueue, unless the user set one."""
    import numba

    if "NUMBA_THREADING_LAYER" not in os.environ and "NUMBA_THREADING_LAYER_PRIORITY" not in os.environ:
        numba.config.THREADING_LAYER_PRIORITY = ["omp", "tbb", "workqueue"]


def select_blas():
    """Bind fastnet_sgemm/fastnet_dgemm to MKL or OpenBLAS (once); return the backend's name."""
    global BACKEND
    if BACKEND is not None:
        return BACKEND
    wanted = os.environ.get("FASTNET_BLAS", "auto").strip().lower()
    if wanted not in ("auto", "mkl", "openblas"):
        raise ValueError(f"FASTNET_BLAS must be 'mkl', 'openblas' or unset, not {wanted!r}")
    addresses = _mkl_gemm_addresses() if wanted != "openblas" else "FASTNET_BLAS=openblas"
    if isinstance(addresses, str):
        if wanted == "mkl":
            raise RuntimeError(f"FASTNET_BLAS=mkl, but {addresses}")
        addresses, BACKEND = _openblas_gemm_addresses(), "openblas"
    else:
        BACKEND = "mkl"
    llvm.add_symbol("fastnet_sgemm", addresses[0])
    llvm.add_symbol("fastnet_dgemm", addresses[1])
    return BACKEND
