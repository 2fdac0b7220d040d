"""fastnet inside a user's numpy loop: a numpy product of the user's own between fastnet calls.

Each group times one side of the loop in three settings: alone (the same call
repeated), mixed (a call of the other side, untimed, before each timed call),
and mixed inside ``fastnet.exclusive_cores()``. NumPy's BLAS runs with its
default threads, as a user's would. Mixed over alone is the cost of sharing the
cores; the report prints it.
"""

import contextlib
import warnings

import numpy as np
import pytest
from bench_support import N_TRAIN, C, D, step_flops

from fastnet import SharedCoresWarning, TwoLayerNet, _cores, exclusive_cores

USER_PRODUCT = 256  # the user's own float32 product: (256, 256) @ (256, 256)
BATCH, HIDDEN, STEPS = 100, 50, 10

SIDES = {
    "step": "fastnet step",
    "steps": f"fastnet steps x{STEPS}",
    "accuracy": "fastnet accuracy 10k",
}


@pytest.fixture(scope="module")
def loop(data):
    x = np.ascontiguousarray(data[0][:N_TRAIN], np.float32)
    t = data[1][:N_TRAIN]
    rng = np.random.default_rng(4)
    a = rng.random((USER_PRODUCT, USER_PRODUCT), dtype=np.float32)
    b = rng.random((USER_PRODUCT, USER_PRODUCT), dtype=np.float32)
    out = np.empty_like(a)
    net = TwoLayerNet(D, HIDDEN, C, seed=0)
    idx = rng.integers(0, N_TRAIN, BATCH)
    batches = rng.integers(0, N_TRAIN, (STEPS, BATCH))
    x_eval, t_eval = np.ascontiguousarray(data[0], np.float32), data[1]
    calls = {
        "step": (lambda: net.step_indices(x, t, idx, 0.001), step_flops(BATCH, HIDDEN)),
        "steps": (lambda: net.steps(x, t, batches, 0.001), STEPS * step_flops(BATCH, HIDDEN)),
        "accuracy": (lambda: net.accuracy(x_eval, t_eval), 2 * len(x_eval) * HIDDEN * (D + C)),
        "numpy": (lambda: np.matmul(a, b, out), 2 * USER_PRODUCT**3),
    }
    for call, _ in calls.values():
        call()  # compile / warm up
    return calls


@pytest.mark.parametrize("setting", ["alone", "mixed", "exclusive"])
@pytest.mark.parametrize("timed", ["fastnet", "numpy"])
@pytest.mark.parametrize("side", list(SIDES))
def test_fastnet_in_a_numpy_loop(benchmark, loop, side, timed, setting):
    fastnet_call, fastnet_flops = loop[side]
    numpy_call, numpy_flops = loop["numpy"]
    target, flops, other = (
        (fastnet_call, fastnet_flops, numpy_call) if timed == "fastnet" else (numpy_call, numpy_flops, fastnet_call)
    )
    benchmark.group = f"mixed {SIDES[side]} / numpy {USER_PRODUCT}"
    benchmark.extra_info["flops"] = flops
    benchmark.extra_info["fastnet_blas"] = _cores.BACKEND

    def the_other_side():  # untimed, before each timed call; returns None: no arguments for the target
        other()

    setup = the_other_side if setting != "alone" else None
    inside = exclusive_cores() if setting == "exclusive" else contextlib.nullcontext()
    with warnings.catch_warnings(action="ignore", category=SharedCoresWarning), inside:  # the loop, on purpose
        benchmark.pedantic(target, setup=setup, rounds=200 if side != "accuracy" else 30, warmup_rounds=3)
