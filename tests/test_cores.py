"""fastnet._cores: which BLAS the kernels call, and the choice by FASTNET_BLAS (in fresh processes:
the choice is made once, at import)."""

import json
import os
import subprocess
import sys

import numba
import numpy as np
import pytest

from fastnet import _cores, kernels

PROBE = (
    "import numpy as np, fastnet; from fastnet import _cores, kernels; "
    "x = np.arange(12, dtype=np.float32).reshape(3, 4); W = np.ones((4, 2), np.float32); "
    "out = kernels.affine_forward(x, W, np.zeros(2, np.float32), np.empty((3, 2), np.float32)); "
    "print(_cores.BACKEND, out[:, 0].tolist())"
)


def run_probe(**env):
    return subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env={**os.environ, **env}, timeout=300
    )


def test_openblas_forced_gives_the_same_products():
    result = run_probe(FASTNET_BLAS="openblas")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["openblas", "[6.0,", "22.0,", "38.0]"]


def test_a_bad_choice_is_a_clear_error():
    result = run_probe(FASTNET_BLAS="atlas")
    assert result.returncode != 0
    assert "FASTNET_BLAS must be 'mkl', 'openblas' or unset, not 'atlas'" in result.stderr


def test_this_process_uses_mkl_where_the_wheel_is_installed():
    mkl_installed = _cores._find_mkl() is not None
    expected = "mkl" if mkl_installed and os.environ.get("FASTNET_BLAS", "auto") != "openblas" else "openblas"
    assert _cores.BACKEND == expected
    x = np.random.default_rng(0).random((70, 30))
    W = np.random.default_rng(1).random((30, 9))
    out = kernels.affine_forward(x, W, np.zeros(9), np.empty((70, 9)))
    np.testing.assert_allclose(out, x @ W, rtol=1e-13)


def test_products_with_few_columns_go_to_scipys_openblas_whatever_the_backend():
    """The narrow symbols are SciPy's OpenBLAS; the others the backend's (MKL or the same OpenBLAS),
    and a product on each side of NARROW columns computes the same as numpy."""
    import llvmlite.binding as llvm
    from numba.extending import get_cython_function_address

    from fastnet.kernels._blas import NARROW

    for name in ("sgemm", "dgemm"):
        openblas = get_cython_function_address("scipy.linalg.cython_blas", name)
        assert llvm.address_of_symbol(f"fastnet_{name}_narrow") == openblas
        assert (llvm.address_of_symbol(f"fastnet_{name}") == openblas) == (_cores.BACKEND == "openblas")
    rng = np.random.default_rng(2)
    x = rng.random((33, 20))
    for columns in (NARROW - 1, NARROW):
        W = rng.random((20, columns))
        out = kernels.affine_forward(x, W, np.zeros(columns), np.empty((33, columns)))
        np.testing.assert_allclose(out, x @ W, rtol=1e-13)


@pytest.mark.skipif(_cores._find_mkl() is None, reason="the mkl wheel is not installed")
def test_mkl_forced_works_where_installed():
    result = run_probe(FASTNET_BLAS="mkl")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "mkl"


# -- how many blocks: from the machine, or FASTNET_BLOCKS -----------------------------------


@pytest.mark.parametrize("value", ["0", "-3", "abc", "2.5", ""])
def test_a_bad_block_count_is_a_clear_error_at_import(value):
    result = run_probe(FASTNET_BLOCKS=value)
    assert result.returncode != 0
    assert "FASTNET_BLOCKS must be a positive integer" in result.stderr and repr(value) in result.stderr
    assert "Segmentation" not in result.stderr


def test_blocks_default_to_numbas_threads():
    expected = os.environ.get("FASTNET_BLOCKS") or numba.config.NUMBA_NUM_THREADS
    assert _cores.BLOCKS == int(expected)


EIGHT_THREADS = """
import hashlib, json, numba, numpy as np
from fastnet import TwoLayerNet, _cores, kernels
x = np.random.default_rng(0).random((1200, 784)).astype(np.float32)
t = np.random.default_rng(1).integers(0, 10, 1200)
batches = np.random.default_rng(2).integers(0, 1200, (3, 1000))
weights = {}
for threads in (1, 3, 8):
    numba.set_num_threads(threads)
    net = TwoLayerNet(784, 1000, 10, weight_init_std=0.05, seed=0)
    losses = net.steps(x, t, batches, 0.1).tolist()
    weights[threads] = [losses, [hashlib.sha256(net.params[k].tobytes()).hexdigest() for k in net.PARAM_NAMES]]
print(json.dumps({"blocks": _cores.BLOCKS, "split": kernels.product_split(1000, 784, 1000),
                  "w1_split": kernels.product_split(784, 1000, 1000), "weights": weights}))
"""


def test_eight_blocks_bitwise_identical_with_1_3_or_8_threads():
    """On 8 configured threads a (1000, 1000) step splits into 8 blocks, and the weights after
    three steps are the same bits whatever number of threads runs them (oversubscribed here)."""
    result = subprocess.run(
        [sys.executable, "-c", EIGHT_THREADS],
        capture_output=True,
        text=True,
        env={**os.environ, "NUMBA_NUM_THREADS": "8"},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["blocks"] == 8
    for split in (out["split"], out["w1_split"]):
        assert split[0] * split[1] == 8 and min(split) > 1, split  # a grid: little re-packing
    assert out["weights"]["1"] == out["weights"]["3"] == out["weights"]["8"]
