"""How fastnet's steps scale with the cores of a machine, next to PyTorch on the same shapes.

    python scripts/scaling.py [--threads 1,2,4,8,16] [--seconds 1.5] [--out DIR]

Each thread count runs in a fresh process with NUMBA_NUM_THREADS (so fastnet's
block count) and PyTorch's threads set to it; every figure is a median over
``--seconds`` of repeated calls after a warm-up, on random data (speed does not
depend on the pixels). Then, at the most threads: K networks as one NetStack
next to K single networks; P worker processes of T threads each sharing the
machine (steps per second of all of them, as ``fastnet sweep --workers P``
sizes them); and a user's numpy product alternating with fastnet calls. Prints
one JSON line per measurement and writes them all to DIR/scaling.json.
"""

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

D, C, N = 784, 10, 10_000
TWO_LAYER = [(100, 50), (1000, 50), (100, 1000), (1000, 1000)]  # (batch, hidden)
DEEP, DEEP_BATCH = [100, 100, 100, 100], 128  # the book's optimizer comparison


def median_seconds(call, seconds, setup=None):
    """Median time of ``call()`` over about ``seconds`` of repetitions (``setup()`` untimed before each)."""
    call()
    call()
    times, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 5:
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def two_layer_flops(batch, hidden):
    return 2 * batch * D * hidden * 2 + 6 * batch * hidden * C


def deep_flops(batch, sizes):
    dims = [D, *sizes, C]
    return 6 * batch * sum(a * b for a, b in zip(dims, dims[1:]))


def data():
    import numpy as np

    rng = np.random.default_rng(0)
    return rng.random((N, D), dtype=np.float32), rng.integers(0, C, N), rng


# -- one thread count, in its own process ------------------------------------------------------


def peak_gflops(threads, seconds):
    """numpy's float32 2048² product at ``threads`` BLAS threads: the machine's matmul peak."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    a = np.random.default_rng(1).random((2048, 2048), dtype=np.float32)
    out = np.empty_like(a)
    with threadpool_limits(threads, user_api="blas"):
        return 2 * 2048**3 / median_seconds(lambda: np.matmul(a, a, out), seconds) / 1e9


def fastnet_steps(seconds):
    import fastnet
    from fastnet import optim

    x, t, rng = data()
    for batch, hidden in TWO_LAYER:
        net = fastnet.TwoLayerNet(D, hidden, C, seed=0)
        idx = rng.integers(0, N, batch)
        yield (
            f"fastnet step ({batch},{hidden})",
            two_layer_flops(batch, hidden),
            median_seconds(lambda: net.step_indices(x, t, idx, 0.01), seconds),
        )
    for name in ("SGD", "Adam"):
        net = fastnet.MultiLayerNet(D, DEEP, C, seed=0)
        opt = getattr(optim, name)()
        idx = rng.integers(0, N, DEEP_BATCH)
        yield (
            f"fastnet deep {name}",
            deep_flops(DEEP_BATCH, DEEP),
            median_seconds(lambda: net.step_indices(x, t, idx, opt), seconds),
        )


def torch_steps(threads, seconds):
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(threads)
    x, t, rng = data()
    xt, tt = torch.from_numpy(x), torch.from_numpy(t)

    def model_step(sizes, batch, opt_class, lr):
        dims = [D, *sizes, C]
        layers = []
        for a, b in zip(dims, dims[1:]):
            layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
        model = torch.nn.Sequential(*layers[:-1])
        opt = opt_class(model.parameters(), lr=lr)
        idx = torch.from_numpy(rng.integers(0, N, batch))

        def step():
            opt.zero_grad(set_to_none=False)
            torch.nn.functional.cross_entropy(model(xt[idx]), tt[idx]).backward()
            opt.step()

        return step

    for batch, hidden in TWO_LAYER:
        step = model_step([hidden], batch, torch.optim.SGD, 0.01)
        yield f"torch step ({batch},{hidden})", two_layer_flops(batch, hidden), median_seconds(step, seconds)
    for name, cls, lr in (("SGD", torch.optim.SGD, 0.01), ("Adam", torch.optim.Adam, 0.001)):
        step = model_step(DEEP, DEEP_BATCH, cls, lr)
        yield f"torch deep {name}", deep_flops(DEEP_BATCH, DEEP), median_seconds(step, seconds)


def child_threads(threads, seconds):
    record = {"threads": threads, "peak GFLOP/s": round(peak_gflops(threads, seconds), 1)}
    for name, flops, sec in [*fastnet_steps(seconds), *torch_steps(threads, seconds)]:
        record[name] = {"us": round(sec * 1e6, 1), "GFLOP/s": round(flops / sec / 1e9, 1)}
    return record


# -- many networks at once, workers, the numpy loop: at the most threads ---------------------


def child_stack(seconds):
    import fastnet
    from fastnet import optim

    x, t, rng = data()
    record = {}
    for members, sizes in ((32, [50]), (16, [100] * 6)):
        batches = rng.integers(0, N, (10, 100))
        nets = [fastnet.MultiLayerNet(D, sizes, C, seed=k) for k in range(members)]
        opts = [optim.SGD(0.01) for _ in range(members)]
        stack = fastnet.NetStack(nets, opts)
        singles = [fastnet.MultiLayerNet(D, sizes, C, seed=k) for k in range(members)]
        single_opts = [optim.SGD(0.01) for _ in range(members)]

        def one_by_one(singles=singles, single_opts=single_opts, batches=batches):
            for net, opt in zip(singles, single_opts):
                net.steps(x, t, batches, opt)

        stacked = median_seconds(lambda stack=stack, batches=batches: stack.steps(x, t, batches), seconds)
        apart = median_seconds(one_by_one, seconds)
        flops = members * 10 * deep_flops(100, sizes)
        record[f"K={members} 784-{'-'.join(map(str, sizes))}-10 B100"] = {
            "stacked ms per step": round(stacked * 100, 3),
            "one-by-one ms per step": round(apart * 100, 3),
            "speed-up": round(apart / stacked, 2),
            "stacked GFLOP/s": round(flops / stacked / 1e9, 1),
        }
    return record


def child_worker(threads, start_at, seconds):
    """Steps of the book's network (784-50-10, batch 100, 10 per call) between two wall-clock times."""
    import numba

    import fastnet

    numba.set_num_threads(threads)
    x, t, rng = data()
    net = fastnet.TwoLayerNet(D, 50, C, seed=0)
    batches = rng.integers(0, N, (10, 100))
    net.steps(x, t, batches, 0.01)
    while time.time() < start_at:
        time.sleep(0.001)
    steps = 0
    while time.time() < start_at + seconds:
        net.steps(x, t, batches, 0.01)
        steps += 10
    return {"steps": steps}


def child_numpy_loop(seconds):
    """A numpy 256² float32 product (numpy's own threads) alternating with a fastnet call."""
    import numpy as np

    import fastnet

    warnings.simplefilter("ignore", fastnet.SharedCoresWarning)  # this loop, on purpose
    x, t, rng = data()
    a = rng.random((256, 256), dtype=np.float32)
    out = np.empty_like(a)
    net = fastnet.TwoLayerNet(D, 50, C, seed=0)
    idx, batches = rng.integers(0, N, 100), rng.integers(0, N, (10, 100))

    def product():
        np.matmul(a, a, out)

    calls = {
        "step": lambda: net.step_indices(x, t, idx, 0.001),
        "steps x10": lambda: net.steps(x, t, batches, 0.001),
        "accuracy 10k": lambda: net.accuracy(x, t),
    }
    numpy_alone = median_seconds(product, seconds)
    record = {"numpy alone us": round(numpy_alone * 1e6, 1)}
    for name, call in calls.items():
        alone = median_seconds(call, seconds)
        mixed = median_seconds(call, seconds, setup=product)
        numpy_mixed = median_seconds(product, seconds, setup=call)
        with fastnet.exclusive_cores():
            exclusive = median_seconds(call, seconds, setup=product)
            numpy_exclusive = median_seconds(product, seconds, setup=call)
        record[name] = {
            "alone us": round(alone * 1e6, 1),
            "mixed/alone": round(mixed / alone, 2),
            "numpy mixed/alone": round(numpy_mixed / numpy_alone, 2),
            "exclusive_cores: mixed/alone": round(exclusive / alone, 2),
            "exclusive_cores: numpy mixed/alone": round(numpy_exclusive / numpy_alone, 2),
        }
    return record


# -- the parent -----------------------------------------------------------------------------


def run_child(args, env_threads, extra_env=None, wait=True):
    root = str(Path(__file__).resolve().parent.parent)  # fastnet importable without installing it
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, NUMBA_NUM_THREADS=str(env_threads), PYTHONPATH=path, **(extra_env or {}))
    proc = subprocess.Popen([sys.executable, __file__, *args], env=env, stdout=subprocess.PIPE, text=True)
    if not wait:
        return proc
    return json.loads(finish(proc))


def finish(proc):
    out, _ = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"child {proc.args[2:]} failed with status {proc.returncode}")
    return out.strip().splitlines()[-1]


def parent(threads, seconds, out, parts):
    most = max(threads)
    results = []

    def report(record):
        print(json.dumps(record), flush=True)
        results.append(record)
        out.mkdir(parents=True, exist_ok=True)
        (out / "scaling.json").write_text(json.dumps(results, indent=1))

    t0 = time.perf_counter()
    run_child(["--child", "compile"], most)
    report({"compile and first calls s": round(time.perf_counter() - t0, 1)})
    if "threads" in parts:
        for n in threads:
            report(run_child(["--child", "threads", str(n), "--seconds", str(seconds)], n))
    if "stack" in parts:
        report({"stack": run_child(["--child", "stack", "--seconds", str(seconds)], most)})
    if "numpy_loop" in parts:
        report({"numpy loop": run_child(["--child", "numpy_loop", "--seconds", str(seconds)], most)})
    if "workers" not in parts:
        return
    for workers in sorted({1, 2, most // 4, most // 2, most} - {0}):
        for per_worker in sorted({most // workers, most}):
            start_at = time.time() + 3 + workers * 0.2  # every worker compiled-cache-loaded by then
            procs = [
                run_child(["--child", "worker", str(per_worker), str(start_at), str(3 * seconds)], most, wait=False)
                for _ in range(workers)
            ]
            steps = sum(json.loads(finish(p))["steps"] for p in procs)
            report({"workers": workers, "threads each": per_worker, "steps/s": round(steps / (3 * seconds))})


def child_compile():
    """Compile (or load from the cache) every kernel path measured, once, before any timing."""
    import fastnet
    from fastnet import optim

    x, t, rng = data()
    net = fastnet.TwoLayerNet(D, 50, C, seed=0)
    net.step_indices(x, t, rng.integers(0, N, 100), 0.01)
    net.steps(x, t, rng.integers(0, N, (2, 100)), 0.01)
    net.accuracy(x[:1000], t[:1000])
    for name in ("SGD", "Adam"):
        deep = fastnet.MultiLayerNet(D, DEEP, C, seed=0)
        deep.step_indices(x, t, rng.integers(0, N, 100), getattr(optim, name)())
        deep.steps(x, t, rng.integers(0, N, (2, 100)), getattr(optim, name)())
    stack = fastnet.NetStack([fastnet.MultiLayerNet(D, [50], C, seed=k) for k in range(2)], [optim.SGD(), optim.SGD()])
    stack.steps(x, t, rng.integers(0, N, (2, 100)))
    return {}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default=",".join(str(2**i) for i in range(5) if 2**i <= os.cpu_count()))
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--parts", default="threads,stack,numpy_loop,workers", help="what to measure")
    parser.add_argument("--child", nargs="+")
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        result = {
            "compile": lambda: child_compile(),
            "threads": lambda: child_threads(int(rest[0]), args.seconds),
            "stack": lambda: child_stack(args.seconds),
            "worker": lambda: child_worker(int(rest[0]), float(rest[1]), float(rest[2])),
            "numpy_loop": lambda: child_numpy_loop(args.seconds),
        }[kind]()
        print(json.dumps(result))
        return
    parent([int(n) for n in args.threads.split(",")], args.seconds, args.out, args.parts.split(","))


if __name__ == "__main__":
    main()
