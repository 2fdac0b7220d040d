"""fastnet._cores: which BLAS the kernels call, and the choice by FASTNET_BLAS (in fresh processes:
the choice is made once, at import)."""

import os
import subprocess
import sys

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


@pytest.mark.skipif(_cores._find_mkl() is None, reason="the mkl wheel is not installed")
def test_mkl_forced_works_where_installed():
    result = run_probe(FASTNET_BLAS="mkl")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "mkl"
