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
