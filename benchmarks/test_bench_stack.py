"""K networks trained together (NetStack.steps) next to K single fastnet networks stepping one after
another on the same batches, batch 100: 784-50-10 at K = 1, 8, 32 and the book's search network
784-[100x6]-10 at K = 16; time per call of 10 steps of all K."""

import numpy as np
import pytest
from bench_support import N_TRAIN, C, D

from fastnet import MultiLayerNet, NetStack, _cores, optim

BATCH, STEPS = 100, 10
CASES = [([50], 1), ([50], 8), ([50], 32), ([100] * 6, 16)]  # (hidden sizes, K)


@pytest.mark.parametrize(
    ("hidden", "members"), CASES, ids=lambda v: "-".join(map(str, v)) if isinstance(v, list) else v
)
@pytest.mark.parametrize("impl", ["stacked", "one-by-one"])
def test_stack_step(benchmark, data, impl, hidden, members):
    x = np.ascontiguousarray(data[0][:N_TRAIN], dtype=np.float32)
    t = data[1][:N_TRAIN]
    batches = np.random.default_rng(3).integers(0, N_TRAIN, (STEPS, BATCH))
    nets = [MultiLayerNet(D, hidden, C, seed=k) for k in range(members)]
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
    sizes = [D, *hidden, C]
    benchmark.group = f"stack_step K={members} {'-'.join(map(str, sizes))} B{BATCH}, {STEPS} steps"
    benchmark.extra_info["flops"] = 2 * 3 * members * STEPS * BATCH * sum(a * b for a, b in zip(sizes, sizes[1:]))
    benchmark.extra_info["fastnet_blas"] = _cores.BACKEND
    benchmark(func)
