"""K networks 784-50-10 at batch 100 trained together (NetStack.steps) next to K single fastnet
networks stepping one after another on the same batches; time per step of all K."""

import numpy as np
import pytest
from bench_support import N_TRAIN, C, D

from fastnet import MultiLayerNet, NetStack, _cores, optim

HIDDEN, BATCH, STEPS = 50, 100, 10


@pytest.mark.parametrize("members", [1, 8, 32])
@pytest.mark.parametrize("impl", ["stacked", "one-by-one"])
def test_stack_step(benchmark, data, impl, members):
    x = np.ascontiguousarray(data[0][:N_TRAIN], dtype=np.float32)
    t = data[1][:N_TRAIN]
    batches = np.random.default_rng(3).integers(0, N_TRAIN, (STEPS, BATCH))
    nets = [MultiLayerNet(D, [HIDDEN], C, seed=k) for k in range(members)]
    opts = [optim.SGD(0.01) for _ in range(members)]
    if impl == "stacked":
        stack = NetStack(nets, opts)

        def func():
            stack.steps(x, t, batches)
    else:

        def func():
            for net, opt in zip(nets, opts):
                net.steps(x, t, batches, opt)

    func()
    benchmark.group = f"stack_step K={members} 784-{HIDDEN}-10 B{BATCH}, {STEPS} steps"
    benchmark.extra_info["flops"] = 2 * 3 * members * STEPS * BATCH * (D * HIDDEN + HIDDEN * C)
    benchmark.extra_info["fastnet_blas"] = _cores.BACKEND
    benchmark(func)
