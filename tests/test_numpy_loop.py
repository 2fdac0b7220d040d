"""fastnet next to NumPy's BLAS: what fastnet changes for the threads, and what it must not wake."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fastnet import _cores

HERE = Path(__file__).parent
SUBSET = "idx:" + str(HERE / "data" / "mnist-subset")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads per-thread CPU time from /proc")
def test_fastnet_train_leaves_numpys_blas_threads_asleep(tmp_path):
    """`fastnet train` runs no numpy matrix products, so NumPy's OpenBLAS workers (which spin after
    every product they take part in, taking the cores fastnet's blocks need) never run during it.
    The control shows that numpy products do run them on this machine."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    result = subprocess.run([sys.executable, str(HERE / "numpy_idle_probe.py"), SUBSET, str(tmp_path)],
                            capture_output=True, text=True, env=env, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    assert probe["code"] == 0
    if probe["workers"] == 0 or probe["control"] == 0:
        pytest.skip(f"NumPy's BLAS runs no worker threads here ({probe})")
    assert probe["during_train"] == 0, probe


def test_numbas_pool_started_with_fastnets_short_spin_or_the_users_choice():
    user_set = any(name in os.environ for name in _cores.USER_OPENMP_SETTINGS)
    assert (
        _cores.OPENMP_SETTINGS == ("user" if user_set else _cores.QUIET_OPENMP) or _cores.OPENMP_SETTINGS == "too late"
    )
    assert "GOMP_SPINCOUNT" not in os.environ or user_set  # the environment was restored


def test_exclusive_cores_holds_other_blas_at_one_thread_and_restores():
    from threadpoolctl import threadpool_info

    def numpy_blas_threads():
        return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]

    before = numpy_blas_threads()
    with _cores.exclusive_cores():
        assert set(numpy_blas_threads()) == {1}
    assert numpy_blas_threads() == before


LOOP = """
import sys, time, warnings
import numpy as np
import fastnet
mode = sys.argv[1]
rng = np.random.default_rng(0)
x, t = rng.random((500, 784), dtype=np.float32), rng.integers(0, 10, 500)
a = rng.random((256, 256), dtype=np.float32)
net = fastnet.TwoLayerNet(784, 50, 10, seed=0)
time.sleep(fastnet._cores.WATCH_GRACE_S)
inside = fastnet.exclusive_cores() if mode == "exclusive" else warnings.catch_warnings()
with warnings.catch_warnings(record=True) as caught, inside:
    warnings.simplefilter("always")
    for _ in range(200):
        if mode != "alone":
            a @ a  # the user's own product: NumPy's BLAS at its default threads
        net.step_indices(x, t, rng.integers(0, 500, 100), 0.01)
print(len(fastnet._cores._pool_threads_before))
for w in caught:
    print(w.category.__name__, w.message)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads thread states from /proc")
@pytest.mark.parametrize("mode", ["mixed", "exclusive", "alone"])
def test_a_loop_that_mixes_numpy_products_is_warned_once(mode):
    """NumPy's OpenBLAS workers spin after each product, on the cores fastnet's next call needs:
    fastnet cannot stop them, so it says so once, naming the fix; nothing is said inside
    exclusive_cores() or without the numpy products."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    result = subprocess.run([sys.executable, "-c", LOOP, mode], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    foreign, *warned = result.stdout.strip().splitlines()
    if int(foreign) == 0:
        pytest.skip("no thread pool of another library runs here (NumPy's BLAS has one thread?)")
    if mode == "mixed":
        assert len(warned) == 1 and warned[0].startswith("SharedCoresWarning"), warned
        assert "fastnet.exclusive_cores()" in warned[0] and "OPENBLAS_THREAD_TIMEOUT" in warned[0]
    else:
        assert warned == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads thread states from /proc")
def test_a_running_thread_is_seen_running_and_a_gone_one_is_skipped():
    import threading

    assert _cores._running_threads([threading.get_native_id()]) == 1  # this thread, reading: running
    assert _cores._running_threads([2**31 - 1]) == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads thread states from /proc")
def test_a_busy_python_thread_of_the_user_is_not_taken_for_a_blas_pool():
    """Threads that existed before fastnet started its pool are watched, but the user's own Python
    threads among them are not another library's pool: no warning for them."""
    code = """
import hashlib, threading, time, warnings
stop = False
def spin():  # busy on a core without holding the GIL (hashlib lets it go for large inputs)
    data = bytes(1 << 20)
    while not stop:
        hashlib.sha256(data).digest()
worker = threading.Thread(target=spin)
worker.start()  # before fastnet: among the threads it watches
import numpy as np
import fastnet
rng = np.random.default_rng(0)
x, t = rng.random((500, 784), dtype=np.float32), rng.integers(0, 10, 500)
net = fastnet.TwoLayerNet(784, 50, 10, seed=0)
time.sleep(fastnet._cores.WATCH_GRACE_S)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for _ in range(64):
        net.step_indices(x, t, rng.integers(0, 500, 100), 0.01)
stop = True
worker.join()
print(worker.native_id in fastnet._cores._pool_threads_before, len(caught))
"""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["True", "0"]
