"""Chapter 7 (B = 100, MNIST-shaped images): the conv and pool kernels and the SimpleConvNet
training step (Adam) and ``predict``, fastnet float32 next to the book's numpy reference in float64
and float32, and next to PyTorch eager and JAX jit (float32) where they are installed; a large
float32 GEMM gives the machine's peak, so the report can put each step against its floor."""

import numpy as np
import pytest

from fastnet import DeepConvNet, SimpleConvNet, _cores, kernels, optim, reference

B, FN, FS, HIDDEN = 100, 30, 5, 100
CONV_MACS = B * 24 * 24 * FS * FS * FN  # one conv pass (forward, or dW)
AFFINE_MACS = B * (FN * 12 * 12 * HIDDEN + HIDDEN * 10)
STEP_FLOPS = 2 * (2 * CONV_MACS + 3 * AFFINE_MACS)  # forward, dW1 (no dx), and three products per affine
PREDICT_FLOPS = 2 * 10 * (CONV_MACS + AFFINE_MACS)  # 1,000 images
IMPLS = ["fastnet-f32", "reference-f64", "reference-f32", "torch-f32", "jax-f32"]
PREDICT_IMPLS = [*IMPLS, "onnxruntime-f32"]  # an inference engine: the same network exported (fastnet.export)


def record(benchmark, group, flops):
    benchmark.group = group
    benchmark.extra_info["flops"] = flops
    benchmark.extra_info["fastnet_blas"] = _cores.BACKEND


def images(data, n, dtype):
    return np.ascontiguousarray(data[0][:n].reshape(n, 1, 28, 28), dtype=dtype)


def need(impl):
    if impl.startswith("torch"):
        torch = pytest.importorskip("torch", reason="PyTorch is not installed")
        torch.set_num_threads(_cores.BLOCKS or 1)
        return torch
    if impl.startswith("jax"):
        return pytest.importorskip("jax", reason="JAX is not installed")
    if impl.startswith("onnxruntime"):
        pytest.importorskip("onnx", reason="onnx is not installed")
        return pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    return None


def test_gemm_peak(benchmark):
    """The machine's float32 matmul peak (NumPy's BLAS, all its threads): the floor's denominator."""
    rng = np.random.default_rng(0)
    a, b = rng.random((2048, 2048), dtype=np.float32), rng.random((2048, 2048), dtype=np.float32)
    out = np.empty_like(a)
    np.matmul(a, b, out=out)
    record(benchmark, "gemm_peak 2048³ float32", 2 * 2048**3)
    benchmark(np.matmul, a, b, out=out)


@pytest.mark.parametrize("impl", IMPLS[:3])
def test_conv_forward_backward(benchmark, data, impl):
    dtype = np.float32 if impl.endswith("f32") else np.float64
    x = images(data, B, dtype)
    rng = np.random.default_rng(1)
    W, b = (0.1 * rng.standard_normal((FN, 1, FS, FS))).astype(dtype), np.zeros(FN, dtype)
    dout = rng.standard_normal((B, FN, 24, 24)).astype(dtype)
    if impl.startswith("fastnet"):
        out, dW, db = np.empty((B, FN, 24, 24), dtype), np.empty_like(W), np.empty_like(b)

        def func():
            kernels.conv_forward(x, W, b, out, relu=True)
            kernels.conv_backward(x, W, dout, dW, db)
    else:
        layer = reference.Convolution(W, b)

        def func():
            np.maximum(layer.forward(x), 0)
            layer.backward(dout)

    func()
    record(benchmark, "conv 1→30 5×5 forward+ReLU, backward (dW, db) B100", 2 * 2 * CONV_MACS)
    benchmark(func)


@pytest.mark.parametrize("impl", IMPLS[:3])
def test_pool_forward_backward(benchmark, data, impl):
    dtype = np.float32 if impl.endswith("f32") else np.float64
    rng = np.random.default_rng(2)
    x = rng.standard_normal((B, FN, 24, 24)).astype(dtype)
    dout = rng.standard_normal((B, FN, 12, 12)).astype(dtype)
    if impl.startswith("fastnet"):
        out, winners, dx = np.empty((B, FN, 12, 12), dtype), np.empty((B, FN, 12, 12), np.int64), np.empty_like(x)

        def func():
            kernels.pool_forward(x, out, winners)
            kernels.pool_backward(dout, winners, dx)
    else:
        layer = reference.Pooling(2, 2, 2)

        def func():
            layer.forward(x)
            layer.backward(dout)

    func()
    record(benchmark, "max pool 2×2 forward, backward B100 30×24×24", 0)
    benchmark(func)


def _torch_net(torch):
    torch.manual_seed(0)
    nn = torch.nn
    return nn.Sequential(nn.Conv2d(1, FN, FS), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(FN * 144, HIDDEN),
                         nn.ReLU(), nn.Linear(HIDDEN, 10))  # fmt: skip


def _jax_adam(jax, loss, keyed=False):
    """The book's Adam (lr 0.001) on ``loss`` as one jitted step (p, m, v, i, x, t) -> (p, m, v, i);
    with ``keyed`` the loss also takes a PRNG key made from the step number (dropout masks)."""
    jnp = jax.numpy

    @jax.jit
    def step(p, m, v, i, x, t):
        g = jax.grad(loss)(p, x, t, jax.random.PRNGKey(i)) if keyed else jax.grad(loss)(p, x, t)
        i = i + 1
        lr_t = 0.001 * jnp.sqrt(1 - 0.999**i) / (1 - 0.9**i)
        m = jax.tree_util.tree_map(lambda m, g: m + 0.1 * (g - m), m, g)
        v = jax.tree_util.tree_map(lambda v, g: v + 0.001 * (g * g - v), v, g)
        p = jax.tree_util.tree_map(lambda p, m, v: p - lr_t * m / (jnp.sqrt(v) + 1e-7), p, m, v)
        return p, m, v, i

    return step


def _predictor(impl, lib, x, fast, ref, torch_model, jax_model):
    """A function computing the logits of images x with ``impl``: fastnet's predict in one call, the
    reference in the book's batches of 100 (its accuracy()), PyTorch without autograd, JAX's jitted
    predict; each network built by its maker (jax_model: lib -> (params, predict))."""
    if impl.startswith("fastnet"):
        net = fast()
        return lambda: net.predict(x)
    if impl.startswith("reference"):
        net = ref()

        def func():
            for i in range(0, len(x), 100):
                net.predict(x[i : i + 100])

        return func
    if impl.startswith("onnxruntime"):  # fastnet's network as an ONNX graph, the machine's cores as threads
        options = lib.SessionOptions()
        options.intra_op_num_threads = _cores.BLOCKS or 1
        model = fast().to_onnx().SerializeToString()
        session = lib.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda: session.run(None, {name: x})
    if impl.startswith("torch"):
        model, xt = torch_model(lib), lib.from_numpy(x)

        def func():
            with lib.no_grad():
                model(xt)

        return func
    params, predict = jax_model(lib)
    xj = lib.numpy.asarray(x)
    return lambda: lib.block_until_ready(predict(params, xj))


def _jax_step_and_predict(jax):
    """A jitted Adam step and predict of the same network (NCHW, 'VALID' convolution)."""
    jnp = jax.numpy
    key = jax.random.PRNGKey(0)
    k1, k2, k3 = jax.random.split(key, 3)
    params = {"W1": 0.01 * jax.random.normal(k1, (FN, 1, FS, FS)), "b1": jnp.zeros(FN),
              "W2": 0.01 * jax.random.normal(k2, (FN * 144, HIDDEN)), "b2": jnp.zeros(HIDDEN),
              "W3": 0.01 * jax.random.normal(k3, (HIDDEN, 10)), "b3": jnp.zeros(10)}  # fmt: skip

    def predict(p, x):
        h = jax.lax.conv_general_dilated(x, p["W1"], (1, 1), "VALID") + p["b1"][None, :, None, None]
        h = jnp.maximum(h, 0)
        h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
        h = jnp.maximum(h.reshape(h.shape[0], -1) @ p["W2"] + p["b2"], 0)
        return h @ p["W3"] + p["b3"]

    def loss(p, x, t):
        z = predict(p, x)
        return -jnp.mean(jax.nn.log_softmax(z)[jnp.arange(z.shape[0]), t])

    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    return params, zeros, _jax_adam(jax, loss), jax.jit(predict)


@pytest.mark.parametrize("impl", IMPLS)
def test_simple_convnet_step(benchmark, data, impl):
    """One training step of the book's train_convnet.py: batch 100, Adam."""
    lib = need(impl)
    dtype = np.float32 if impl.endswith("f32") else np.float64
    x_all, t_all = images(data, 2000, dtype), data[1][:2000]
    idx = np.random.default_rng(3).integers(0, 2000, B)
    if impl.startswith("fastnet"):
        net, opt = SimpleConvNet(seed=0), optim.Adam()
        rows = x_all.reshape(2000, -1)

        def func():
            net.step_indices(rows, t_all, idx, opt)
    elif impl.startswith("reference"):
        net, opt = reference.SimpleConvNet(dtype=dtype, seed=0), reference.Adam()

        def func():
            opt.update(net.params, net.gradient(x_all[idx], t_all[idx]))
    elif impl.startswith("torch"):
        model = _torch_net(lib)
        opt = lib.optim.Adam(model.parameters(), lr=0.001)
        xb, tb = lib.from_numpy(x_all[idx]), lib.from_numpy(t_all[idx])
        loss_fn = lib.nn.CrossEntropyLoss()

        def func():
            opt.zero_grad()
            loss_fn(model(xb), tb).backward()
            opt.step()
    else:
        params, zeros, step, _ = _jax_step_and_predict(lib)
        state = [params, zeros, zeros, lib.numpy.array(0, lib.numpy.int32)]
        xb, tb = lib.numpy.asarray(x_all[idx]), lib.numpy.asarray(t_all[idx])

        def func():
            state[:] = step(*state, xb, tb)
            lib.block_until_ready(state[0])

    func()
    record(benchmark, "simple_convnet_step Adam B100", STEP_FLOPS)
    benchmark(func)


@pytest.mark.parametrize("impl", PREDICT_IMPLS)
def test_simple_convnet_predict(benchmark, data, impl):
    """Logits of 1,000 images."""
    lib = need(impl)
    dtype = np.float32 if impl.endswith("f32") else np.float64
    x = images(data, 1000, dtype)
    func = _predictor(impl, lib, x, lambda: SimpleConvNet(seed=0), lambda: reference.SimpleConvNet(dtype=dtype, seed=0),
                      _torch_net, lambda jax: _jax_step_and_predict(jax)[::3])  # fmt: skip
    func()
    record(benchmark, "simple_convnet_predict 1000 images", PREDICT_FLOPS)
    benchmark(func)


def deep_flops(net, batch, forward_only=False):
    """A DeepConvNet step's products: forward, dW for every layer, dx for every layer but the first
    (``forward_only``: the forward's)."""
    from fastnet.kernels import records as engine

    total = 0
    for l, rec in enumerate(net.records):
        if rec[engine.KIND] == engine.CONV:
            macs = int(rec[engine.OUT_SIZE] * rec[engine.C] * rec[engine.FH] * rec[engine.FW])
        elif rec[engine.KIND] == engine.AFFINE:
            macs = int(rec[engine.IN_SIZE] * rec[engine.OUT_SIZE])
        else:
            continue
        total += macs * (1 if forward_only else 3 if l > 0 else 2)
    return 2 * batch * total


DEEP_CONVS = [(16, 1), (16, 1), (32, 1), (32, 2), (64, 1), (64, 1)]  # (filters, pad), 3×3 each


def _torch_deep(torch):
    nn = torch.nn
    torch.manual_seed(0)
    layers, c = [], 1
    for i, (n, pad) in enumerate(DEEP_CONVS):
        layers += [nn.Conv2d(c, n, 3, padding=pad), nn.ReLU()] + ([nn.MaxPool2d(2)] if i % 2 else [])
        c = n
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(64 * 16, 50), nn.ReLU(), nn.Dropout(0.5), nn.Linear(50, 10),
                         nn.Dropout(0.5))  # fmt: skip


def _jax_deep(jax):
    """A jitted Adam step (with dropout) and predict of the book's DeepConvNet."""
    jnp = jax.numpy
    keys = jax.random.split(jax.random.PRNGKey(0), 9)
    params, c = {}, 1
    for i, (n, _) in enumerate(DEEP_CONVS):
        params[f"W{i}"], params[f"b{i}"] = 0.1 * jax.random.normal(keys[i], (n, c, 3, 3)), jnp.zeros(n)
        c = n
    params["W6"], params["b6"] = 0.05 * jax.random.normal(keys[6], (64 * 16, 50)), jnp.zeros(50)
    params["W7"], params["b7"] = 0.1 * jax.random.normal(keys[7], (50, 10)), jnp.zeros(10)

    def forward(p, x, key, train):
        h = x
        for i, (_, pad) in enumerate(DEEP_CONVS):
            h = jax.lax.conv_general_dilated(h, p[f"W{i}"], (1, 1), [(pad, pad), (pad, pad)])
            h = jnp.maximum(h + p[f"b{i}"][None, :, None, None], 0)
            if i % 2:
                h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
        h = jnp.maximum(h.reshape(h.shape[0], -1) @ p["W6"] + p["b6"], 0)
        if train:
            h = h * jax.random.bernoulli(key, 0.5, h.shape)
        z = h @ p["W7"] + p["b7"]
        return z * jax.random.bernoulli(jax.random.fold_in(key, 1), 0.5, z.shape) if train else z * 0.5

    def loss(p, x, t, key):
        z = forward(p, x, key, True)
        return -jnp.mean(jax.nn.log_softmax(z)[jnp.arange(z.shape[0]), t])

    predict = jax.jit(lambda p, x: forward(p, x, None, False))
    return params, jax.tree_util.tree_map(jnp.zeros_like, params), _jax_adam(jax, loss, keyed=True), predict


@pytest.mark.parametrize("impl", IMPLS)
def test_deep_convnet_step(benchmark, data, impl):
    """One training step of the book's train_deepnet.py: batch 100, Adam, dropout 0.5."""
    lib = need(impl)
    dtype = np.float32 if impl.endswith("f32") else np.float64
    x_all, t_all = images(data, 2000, dtype), data[1][:2000]
    idx = np.random.default_rng(5).integers(0, 2000, B)
    rounds = None
    if impl.startswith("fastnet"):
        net, opt = DeepConvNet(seed=0), optim.Adam()
        rows = x_all.reshape(2000, -1)

        def func():
            net.step_indices(rows, t_all, idx, opt)
    elif impl.startswith("reference"):
        net, opt, rounds = reference.DeepConvNet(dtype=dtype, seed=0), reference.Adam(), 3  # ~0.5 s a step

        def func():
            opt.update(net.params, net.gradient(x_all[idx], t_all[idx]))
    elif impl.startswith("torch"):
        model = _torch_deep(lib)
        opt = lib.optim.Adam(model.parameters(), lr=0.001)
        xb, tb = lib.from_numpy(x_all[idx]), lib.from_numpy(t_all[idx])
        loss_fn = lib.nn.CrossEntropyLoss()

        def func():
            opt.zero_grad()
            loss_fn(model(xb), tb).backward()
            opt.step()
    else:
        params, zeros, step, _ = _jax_deep(lib)
        state = [params, zeros, zeros, lib.numpy.array(0, lib.numpy.int32)]
        xb, tb = lib.numpy.asarray(x_all[idx]), lib.numpy.asarray(t_all[idx])

        def func():
            state[:] = step(*state, xb, tb)
            lib.block_until_ready(state[0])

    func()
    record(benchmark, "deep_convnet_step Adam B100", deep_flops(DeepConvNet(), B))
    if rounds:
        benchmark.pedantic(func, rounds=rounds, iterations=1)
    else:
        benchmark(func)


@pytest.mark.parametrize("impl", PREDICT_IMPLS)
def test_deep_convnet_predict(benchmark, data, impl):
    """Logits of 1,000 images (dropout at test time: the scaling)."""
    lib = need(impl)
    dtype = np.float32 if impl.endswith("f32") else np.float64
    x = images(data, 1000, dtype)
    rounds = 2 if impl.startswith("reference") else None  # seconds per call
    func = _predictor(impl, lib, x, lambda: DeepConvNet(seed=0), lambda: reference.DeepConvNet(dtype=dtype, seed=0),
                      lambda torch: _torch_deep(torch).eval(), lambda jax: _jax_deep(jax)[::3])  # fmt: skip
    func()
    record(benchmark, "deep_convnet_predict 1000 images", deep_flops(DeepConvNet(), 1000, forward_only=True))
    if rounds:
        benchmark.pedantic(func, rounds=rounds, iterations=1)
    else:
        benchmark(func)
