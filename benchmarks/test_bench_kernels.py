"""fastnet's kernels next to the numpy reference: per operation, per (batch, hidden)."""

import numpy as np
import pytest
from bench_support import CONFIGS, IMPLS, N_TRAIN, PREDICT_ROWS, C, D, impl_dtype, make_net, run, step_flops

from fastnet import kernels, reference

pytestmark = pytest.mark.parametrize("impl", IMPLS)
configs = pytest.mark.parametrize("batch,hidden", CONFIGS, ids=[f"B{b}-H{h}" for b, h in CONFIGS])


@configs
def test_affine_relu_forward(benchmark, data, impl, batch, hidden):
    dtype = impl_dtype(impl)
    x = np.ascontiguousarray(data[0][:batch], dtype=dtype)
    net = make_net(impl, hidden)
    W, b = net.params["W1"], net.params["b1"]
    if impl.startswith("fastnet"):
        out = np.empty((batch, hidden), dtype)
        func = lambda: kernels.affine_relu_forward(x, W, b, out)  # noqa: E731
    else:
        affine, relu = reference.Affine(W, b), reference.Relu()
        func = lambda: relu.forward(affine.forward(x))  # noqa: E731
    run(benchmark, func, flops=2 * batch * D * hidden, group=f"affine_relu_forward B{batch}-H{hidden}")


@pytest.mark.parametrize("batch", [100, 1000], ids=["B100", "B1000"])
def test_softmax_cross_entropy(benchmark, data, impl, batch):
    dtype = impl_dtype(impl)
    rng = np.random.default_rng(1)
    z = (3 * rng.standard_normal((batch, C))).astype(dtype)
    t = data[1][:batch]
    if impl.startswith("fastnet"):
        dz = np.empty_like(z)
        func = lambda: kernels.softmax_cross_entropy(z, t, dz)  # noqa: E731
    else:
        layer = reference.SoftmaxWithLoss()
        func = lambda: (layer.forward(z, t), layer.backward())  # noqa: E731
    run(benchmark, func, flops=5 * batch * C, group=f"softmax_cross_entropy B{batch}")


@configs
def test_backward(benchmark, data, impl, batch, hidden):
    """Both layers' backward from dz (the forward's state given)."""
    dtype = impl_dtype(impl)
    x = np.ascontiguousarray(data[0][:batch], dtype=dtype)
    t = data[1][:batch]
    net = make_net(impl, hidden)
    flops = 2 * batch * D * hidden + 4 * batch * hidden * C
    if impl.startswith("fastnet"):
        p = net.params
        hid = np.maximum(x @ p["W1"] + p["b1"], 0).astype(dtype)
        z = hid @ p["W2"] + p["b2"]
        dz = np.empty_like(z)
        kernels.softmax_cross_entropy(z, t, dz)
        dW2, db2, dhid = np.empty((hidden, C), dtype), np.empty(C, dtype), np.empty((batch, hidden), dtype)
        dW1, db1 = np.empty((D, hidden), dtype), np.empty(hidden, dtype)

        def func():
            kernels.affine_relu_backward(dz, hid, p["W2"], dW2, db2, dhid)
            kernels.affine_backward_params(x, dhid, dW1, db1)
    else:
        net.loss(x, t)
        layers = list(net.layers.values())[::-1]

        def func():
            dout = net.last_layer.backward(1)
            for layer in layers:
                dout = layer.backward(dout)

    run(benchmark, func, flops=flops, group=f"backward B{batch}-H{hidden}")


@configs
def test_training_step(benchmark, data, impl, batch, hidden):
    """The book's loop body: draw a batch, gradient, SGD update."""
    dtype = impl_dtype(impl)
    x = np.ascontiguousarray(data[0][:N_TRAIN], dtype=dtype)
    t = data[1][:N_TRAIN]
    net = make_net(impl, hidden)
    idx = np.random.default_rng(2).integers(0, N_TRAIN, batch)
    if impl.startswith("fastnet"):
        func = lambda: net.step_indices(x, t, idx, 0.01)  # noqa: E731
    else:
        func = lambda: net.step(x[idx], t[idx], 0.01)  # noqa: E731
    run(benchmark, func, flops=step_flops(batch, hidden), group=f"training_step B{batch}-H{hidden}")


@pytest.mark.parametrize("hidden", [50, 1000], ids=["H50", "H1000"])
def test_predict(benchmark, data, impl, hidden):
    dtype = impl_dtype(impl)
    x = np.ascontiguousarray(data[0][:PREDICT_ROWS], dtype=dtype)
    net = make_net(impl, hidden)
    run(
        benchmark, net.predict, x, flops=2 * PREDICT_ROWS * hidden * (D + C), group=f"predict N{PREDICT_ROWS}-H{hidden}"
    )


def test_matmul_peak(benchmark, impl):
    """The machine's float32 matmul peak, measured in the same run (numpy, all threads)."""
    if impl != "reference-f32":
        pytest.skip("one peak measurement per run")
    n = 2048
    a = np.random.default_rng(3).random((n, n), dtype=np.float32)
    out = np.empty_like(a)
    run(benchmark, np.matmul, a, a, out, flops=2 * n**3, group="peak float32 matmul")
