"""One training step of the book's optimizer-comparison network, 784-[100,100,100,100]-10 at batch
128, with SGD and with Adam: fastnet float32 next to the reference in float64 and float32."""

import numpy as np
import pytest
from bench_support import IMPLS, N_TRAIN, C, D, impl_dtype

from fastnet import MultiLayerNet, _cores, optim, reference

HIDDEN = [100, 100, 100, 100]
BATCH = 128


def step_flops():
    """Forward, weight-gradient and input-gradient products of one step (no input gradient for layer 1)."""
    sizes = [D, *HIDDEN, C]
    pairs = [a * b for a, b in zip(sizes[:-1], sizes[1:])]
    return 2 * BATCH * (2 * sum(pairs) + sum(pairs[1:]))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_multilayer_step(benchmark, data, impl, name):
    dtype = impl_dtype(impl)
    x = np.ascontiguousarray(data[0][:N_TRAIN], dtype=dtype)
    t = data[1][:N_TRAIN]
    idx = np.random.default_rng(2).integers(0, N_TRAIN, BATCH)
    if impl.startswith("fastnet"):
        net, opt = MultiLayerNet(D, HIDDEN, C, dtype=dtype, seed=0), getattr(optim, name)()

        def func():
            net.step_indices(x, t, idx, opt)
    else:
        net, opt = reference.MultiLayerNet(D, HIDDEN, C, dtype=dtype, seed=0), getattr(reference, name)()

        def func():
            opt.update(net.params, net.gradient(x[idx], t[idx]))

    func()
    benchmark.group = f"multilayer_step {name} 784-100x4-10 B{BATCH}"
    benchmark.extra_info["flops"] = step_flops()
    benchmark.extra_info["fastnet_blas"] = _cores.BACKEND
    benchmark(func)
