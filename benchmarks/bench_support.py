"""Shared helpers for the benchmark groups: one group per operation and shape, the Numba
kernel and the numpy reference side by side on identical inputs.

Every benchmark calls its function once before timing (Numba compiles on first
call, and the cache load is not what we measure) and records its FLOPs in
``extra_info`` so the report can show GFLOP/s.
"""

import numpy as np

from fastnet import TwoLayerNet, _cores, reference

D, C = 784, 10
CONFIGS = [(100, 50), (100, 1000), (1000, 50), (1000, 1000)]  # (batch, hidden)
IMPLS = ["fastnet-f32", "reference-f64", "reference-f32"]
N_TRAIN = 2000  # rows the training-step benchmarks draw their batches from
PREDICT_ROWS = 10_000


def step_flops(batch, hidden):
    """The matrix products of one training step: forward 1, dW1, and the three of layer 2."""
    return 2 * batch * D * hidden * 2 + 6 * batch * hidden * C


def impl_dtype(impl):
    return np.float32 if impl.endswith("f32") else np.float64


def make_net(impl, hidden, seed=0):
    if impl.startswith("fastnet"):
        return TwoLayerNet(D, hidden, C, dtype=impl_dtype(impl), seed=seed)
    return reference.TwoLayerNet(D, hidden, C, dtype=impl_dtype(impl), seed=seed)


def run(benchmark, func, *args, flops, group):
    """Warm up (compile), record FLOPs, then time ``func(*args)``."""
    func(*args)
    benchmark.group = group
    benchmark.extra_info["flops"] = flops
    benchmark.extra_info["fastnet_blas"] = _cores.BACKEND  # "mkl" or "openblas"
    return benchmark(func, *args)
