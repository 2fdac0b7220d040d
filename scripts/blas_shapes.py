"""One-thread float32 GFLOP/s per product shape of a training step, for choosing a BLAS.

    FASTNET_BLAS=mkl NUMBA_NUM_THREADS=1 FASTNET_BLOCKS=1 python scripts/blas_shapes.py kernels
    FASTNET_BLAS=openblas NUMBA_NUM_THREADS=1 FASTNET_BLOCKS=1 python scripts/blas_shapes.py kernels
    python scripts/blas_shapes.py blis        # needs `pip install blis`; compares with SciPy's OpenBLAS

``kernels`` times fastnet's own forward kernel (``affine_forward_unchecked``) on the BLAS that
FASTNET_BLAS picks; ``blis`` times the ``blis`` package's gemm against SciPy's ``sgemm``, both
called from Python on the same arrays, held at one thread. Prints medians as JSON.
"""

import json
import sys
import time

import numpy as np

SHAPES = {  # (M, K, N) of (M, K) @ (K, N)
    "fwd 100-50": (100, 784, 50),
    "fwd 1000-50": (1000, 784, 50),
    "fwd 100-1000": (100, 784, 1000),
    "fwd 1000-1000": (1000, 784, 1000),
    "layer2 100x50x10": (100, 50, 10),
}


def gflops(call, flops, budget=3e8):
    call()
    rounds = max(5, int(budget // flops))
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return round(flops / sorted(times)[rounds // 2] / 1e9, 1)


def main():
    which = sys.argv[1] if len(sys.argv) > 1 else "kernels"
    rng = np.random.default_rng(0)
    result = {}
    if which == "kernels":
        from fastnet import _cores, kernels

        result["blas"] = _cores.BACKEND
        for name, (M, K, N) in SHAPES.items():
            x, W = rng.random((M, K), dtype=np.float32), rng.random((K, N), dtype=np.float32)
            b, out = np.zeros(N, np.float32), np.empty((M, N), np.float32)
            result[name] = gflops(lambda: kernels.affine_forward_unchecked(x, W, b, out), 2 * M * K * N)
    else:
        import blis.py
        import scipy.linalg.blas as scipy_blas
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):
            for name, (M, K, N) in SHAPES.items():
                a, b = rng.random((M, K), dtype=np.float32), rng.random((K, N), dtype=np.float32)
                out = np.empty((M, N), np.float32)
                result[name] = {
                    "blis": gflops(lambda: blis.py.gemm(a, b, out=out), 2 * M * K * N),
                    # C-ordered arrays as BLAS's transposes: Cᵀ = bᵀ aᵀ, no copies
                    "openblas": gflops(lambda: scipy_blas.sgemm(1.0, b.T, a.T), 2 * M * K * N),
                }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
