"""Who owns the cores: which BLAS the kernels call, how many blocks their loops split into,
and Numba's threading layer.

All three are settled once per process, when ``fastnet.kernels`` is imported.

BLAS
----

The kernels' matrix products call the Fortran routines ``sgemm``/``dgemm``
through two symbols, ``fastnet_sgemm`` and ``fastnet_dgemm``, which this module
binds to the chosen library's functions (``llvmlite.binding.add_symbol``).
Compiled code, and so Numba's on-disk cache, names only these symbols: the
library can differ from one process to the next without recompiling.

* **Intel MKL** (the ``mkl`` wheel: ``pip install "fastnet-dlfs[mkl]"``), sequential,
  when installed. Measured on this project's 2-core Xeon, the products of a
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

Blocks
------
Every parallel loop splits its work into at most ``BLOCKS`` blocks (fewer where
the work is small: ``fastnet.kernels.partition``): by default the threads Numba
is configured for (``NUMBA_NUM_THREADS``, the machine's cores), or
``FASTNET_BLOCKS``. Results depend on the block count, never on the number of
threads that run the blocks; so weights are bitwise identical with 1 thread or
many on one machine, and may differ in the last bits between machines with
different core counts (set ``FASTNET_BLOCKS`` alike to make them agree). The
count reaches compiled code through the symbol ``fastnet_max_blocks``, read at
run time: a cache compiled on one machine stays right on another.

Sharing the cores
-----------------
Numba's OpenMP workers spin after each parallel region; so do NumPy's OpenBLAS
workers after each product. In a user's loop that alternates the two, each
pool's spinning takes the core the other needs and both slowed 20x on 2 cores.
``start_threads`` starts Numba's pool at import with a short GNU OpenMP spin
(``QUIET_OPENMP``) unless the user set one; ``exclusive_cores()`` holds the
other BLAS pools at one thread for a loop that wants the cores to itself; and
``watch_cores`` (through each network's ``CallLock``) warns once when it sees
another pool's threads busy as a fastnet call begins, which fastnet cannot stop.

Threading layer
---------------
Numba picks TBB first when it is installed, and the ``mkl`` wheel brings TBB
along. OpenMP measured 5-10 % faster per training step here, so unless you
chose (``NUMBA_THREADING_LAYER`` or ``NUMBA_THREADING_LAYER_PRIORITY``), fastnet
asks for the order omp, tbb, workqueue. This holds for the whole process (Numba
has one layer, started at the first parallel call, by fastnet or anyone else).
"""

import contextlib
import ctypes
import importlib.metadata
import os
import sys
import threading
import time
import warnings
from pathlib import Path

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
    """Bind fastnet_sgemm/fastnet_dgemm to MKL or OpenBLAS (once); return the backend's name.

    fastnet_sgemm_narrow/fastnet_dgemm_narrow, for products with few output columns
    (``kernels._blas.NARROW``), are SciPy's OpenBLAS either way: MKL's kernels for them
    ran 2-4x slower than OpenBLAS's on an AMD EPYC (docs/PERFORMANCE.md, "Which BLAS").
    """
    global BACKEND
    if BACKEND is not None:
        return BACKEND
    wanted = os.environ.get("FASTNET_BLAS", "auto").strip().lower()
    if wanted not in ("auto", "mkl", "openblas"):
        raise ValueError(f"FASTNET_BLAS must be 'mkl', 'openblas' or unset, not {wanted!r}")
    addresses = _mkl_gemm_addresses() if wanted != "openblas" else "FASTNET_BLAS=openblas"
    openblas = _openblas_gemm_addresses()
    if isinstance(addresses, str):
        if wanted == "mkl":
            raise RuntimeError(f"FASTNET_BLAS=mkl, but {addresses}")
        addresses, BACKEND = openblas, "openblas"
    else:
        BACKEND = "mkl"
    llvm.add_symbol("fastnet_sgemm", addresses[0])
    llvm.add_symbol("fastnet_dgemm", addresses[1])
    llvm.add_symbol("fastnet_sgemm_narrow", openblas[0])
    llvm.add_symbol("fastnet_dgemm_narrow", openblas[1])
    return BACKEND


# -- How many blocks the parallel loops split into --------------------------------

BLOCKS = None  # the most blocks a parallel loop uses, once select_blocks() has run
_blocks_cell = ctypes.c_int64(0)  # what compiled code reads, through the symbol fastnet_max_blocks


def select_blocks():
    """Bind ``fastnet_max_blocks`` to the block count (once): FASTNET_BLOCKS, else the threads
    Numba is configured for (NUMBA_NUM_THREADS: by default the machine's cores). Returns it."""
    global BLOCKS
    if BLOCKS is not None:
        return BLOCKS
    import numba

    text = os.environ.get("FASTNET_BLOCKS")
    if text is None:
        blocks = numba.config.NUMBA_NUM_THREADS
    else:
        try:
            blocks = int(text.strip())
        except ValueError:
            blocks = 0
        if blocks < 1:
            raise ValueError(
                f"FASTNET_BLOCKS must be a positive integer (the most blocks a parallel loop "
                f"splits its work into), not {text!r}"
            )
    _blocks_cell.value = blocks
    llvm.add_symbol("fastnet_max_blocks", ctypes.addressof(_blocks_cell))
    BLOCKS = blocks
    return BLOCKS


# -- Sharing the cores with other thread pools in the process ------------------------------

# GNU OpenMP (Numba's omp layer on Linux) reads these when it loads, which is when Numba
# starts its thread pool. Its default keeps each worker spinning for ~300,000 pauses after a
# parallel region: on a machine with few cores that spinning takes the core another pool's
# thread (NumPy's OpenBLAS, say) needs, and the two pools stall each other by a scheduler
# slice per call. A short spin keeps the workers warm between the regions of one step and lets
# them sleep soon after it.
QUIET_OPENMP = {"GOMP_SPINCOUNT": "1000"}
USER_OPENMP_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
OPENMP_SETTINGS = None  # what Numba's pool started with: fastnet's quiet settings, "user", or "too late"


@contextlib.contextmanager
def exclusive_cores():
    """Inside: other BLAS libraries of the process (NumPy's OpenBLAS, ...) run one thread per call.

    For a training loop that calls numpy products of its own between fastnet calls: the other
    library's workers then never spin on a core that fastnet's blocks need. Restored on exit.
    (It changes those libraries for the whole process while inside.)
    """
    global _exclusive_depth
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        _exclusive_depth += 1
        try:
            yield
        finally:
            _exclusive_depth -= 1


class SharedCoresWarning(RuntimeWarning):
    """Another library's threads were busy on the cores when a fastnet call began (shown once)."""


# OpenBLAS (NumPy's BLAS) keeps its workers spinning for up to 2^28 cycles (~0.1 s) after each
# product, without yielding the core (since OpenBLAS 0.3.27), and offers no call that puts them
# to sleep: fastnet cannot fix this from inside. It can see it: those workers exist before
# fastnet starts its own pool, and a worker found running when a fastnet call begins is taking
# a core the call's blocks need. Looked at on call 1, 2, 4, 8, ... (cheap: a few /proc reads
# per look), never in the first WATCH_GRACE_S after import (a BLAS spins once when it loads).
WATCH_GRACE_S = 0.5
_pool_threads_before = ()  # native ids of the threads other than this one when fastnet started its pool
_watch = {"calls": 0, "next": 1, "warned": False, "since": 0.0}
_exclusive_depth = 0


def _running_threads(native_ids):
    """How many of the threads ``native_ids`` are running or runnable now (Linux; 0 elsewhere)."""
    running = 0
    for tid in native_ids:
        try:  # os.read, not open(): no 8 KB file buffer (a training step allocates next to nothing)
            fd = os.open(f"/proc/self/task/{tid}/stat", os.O_RDONLY)
            try:
                stat = os.read(fd, 1024)
            finally:
                os.close(fd)
        except OSError:
            continue  # gone, or no /proc
        running += stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] == b"R"  # the state follows "(name) "
    return running


def watch_cores():
    """Note that a fastnet call into compiled code begins; now and then look whether threads of
    another library are busy on the cores, and warn once (SharedCoresWarning) if they are."""
    watch = _watch
    watch["calls"] += 1
    if watch["calls"] < watch["next"] or watch["warned"] or _exclusive_depth:
        return
    if time.monotonic() - watch["since"] < WATCH_GRACE_S:
        return  # the check at this call count is not spent: look again at the next call
    watch["next"] *= 2
    python_threads = {t.native_id for t in threading.enumerate()}  # the user's own threads are not a pool
    busy = _running_threads([tid for tid in _pool_threads_before if tid not in python_threads])
    if busy:
        watch["warned"] = True
        warnings.warn(
            f"{busy} thread(s) of another library in this process were busy on the cores when a "
            "fastnet call began (multi-threaded BLAS libraries here: "
            f"{_multithreaded_pools()}). NumPy's OpenBLAS keeps its workers spinning for up to "
            "~0.1 s after each of its products, and fastnet's calls then wait for the cores (2-6x "
            "slower in a loop that alternates the two). Run such a loop inside `with "
            "fastnet.exclusive_cores():`, or start Python with OPENBLAS_THREAD_TIMEOUT=4. (Shown once.)",
            SharedCoresWarning,
            stacklevel=_first_frame_outside_fastnet(),
        )


def _first_frame_outside_fastnet():
    """The ``stacklevel`` of the first caller outside fastnet (and the contextlib it enters
    locks with): the user's line."""
    ours = (str(Path(__file__).resolve().parent), contextlib.__file__)
    frame, level = sys._getframe(1), 1
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(ours):
        frame, level = frame.f_back, level + 1
    return level


def _multithreaded_pools():
    """'numpy's openblas, 16 threads' and the like, for the warning."""
    try:
        from threadpoolctl import threadpool_info

        pools = [
            f"{Path(p['filepath']).parent.name.replace('.libs', '')}'s {p['internal_api']}, {p['num_threads']} threads"
            for p in threadpool_info()
            if p["num_threads"] > 1 and p["user_api"] == "blas"
        ]
    except Exception:  # a description only: never let it hide the warning
        pools = []
    return "; ".join(pools) or "none identified"


class CallLock:
    """A network's lock (re-entrant) that also calls ``watch_cores`` as a call begins."""

    def __init__(self):
        self._lock = threading.RLock()

    def __enter__(self):
        self._lock.acquire()
        watch_cores()
        return self

    def __exit__(self, *exc):
        self._lock.release()


def start_threads():
    """Start Numba's thread pool now, with QUIET_OPENMP in the environment while it starts, unless
    the user set OMP_WAIT_POLICY or GOMP_SPINCOUNT or the pool is already running. The
    environment is restored afterwards: child processes see what the user set, nothing more."""
    global OPENMP_SETTINGS
    from numba.np.ufunc import parallel

    if parallel._is_initialized:
        OPENMP_SETTINGS = OPENMP_SETTINGS or "too late"
        return
    if any(name in os.environ for name in USER_OPENMP_SETTINGS):
        OPENMP_SETTINGS = "user"
        _note_threads_before()
        parallel._launch_threads()
        return
    os.environ.update(QUIET_OPENMP)
    try:
        _note_threads_before()
        parallel._launch_threads()
    finally:
        for name in QUIET_OPENMP:
            os.environ.pop(name, None)
    OPENMP_SETTINGS = dict(QUIET_OPENMP)


def _note_threads_before():
    """Remember the threads that exist before Numba's pool starts (other than this one): other
    libraries' pools, which ``watch_cores`` looks at."""
    global _pool_threads_before
    try:
        ids = {int(name) for name in os.listdir("/proc/self/task")}
    except OSError:
        ids = set()
    _pool_threads_before = tuple(sorted(ids - {threading.get_native_id()}))
    _watch["since"] = time.monotonic()
