"""Bad input, interruptions, crashes mid-save, concurrency: nothing crashes, nothing is lost."""

import importlib
import json
import math
import pkgutil
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from numba import njit
from numba.core.registry import CPUDispatcher

from fastnet import MultiLayerNet, TwoLayerNet, kernels, load_weights, save_weights
from fastnet.kernels import step
from fastnet.weights import WeightsError

HERE = Path(__file__).parent
SUBSET = "idx:" + str(HERE / "data" / "mnist-subset")


# -- adversarial inputs, in a subprocess so that a crash fails instead of killing the run --


def test_adversarial_inputs_fail_only_in_the_documented_way(tmp_path):
    tally = tmp_path / "tally.json"
    result = subprocess.run(
        [sys.executable, str(HERE / "adversarial.py"), "--examples", "100", "--json", str(tally)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr[-4000:]}"
    counts = json.loads(tally.read_text())
    assert sum(counts["tried"].values()) > 700 and sum(counts["wrong"].values()) == 0
    print(result.stdout)


# -- NaN checks cannot be optimised away --------------------------------------


def test_no_kernel_uses_fastmath():
    """fastmath assumes no NaN and may delete isfinite checks; fastnet's checks rely on it being off.
    Every compiled function of every module of the kernels package is looked at."""
    modules = [importlib.import_module(f"fastnet.kernels.{m.name}") for m in pkgutil.iter_modules(kernels.__path__)]
    dispatchers = [
        v
        for m in modules
        for v in vars(m).values()
        if isinstance(v, CPUDispatcher) and v.py_func.__module__ == m.__name__
    ]
    assert {m.__name__.rsplit(".", 1)[1] for m in modules} >= {"layers", "step", "api", "forward", "codes"}
    assert len(dispatchers) > 40
    for d in dispatchers:
        assert not d.targetoptions.get("fastmath"), d.py_func.__name__


def test_divergence_is_still_caught_when_the_step_is_compiled_with_fastmath():
    """Under fastmath the kernel's own finite-loss guard may vanish, but the training loop
    tests the returned loss in Python, where fastmath cannot reach."""
    fast_step = njit(fastmath=True, parallel=True)(step._train_step.py_func)  # the step's whole body
    net = TwoLayerNet(20, 8, 3, weight_init_std=1.0, dtype=np.float32, seed=0)
    x = np.random.default_rng(0).standard_normal((50, 20)).astype(np.float32) * 100
    t = np.random.default_rng(1).integers(0, 3, 50)
    ws = net._workspace(10)
    losses = []
    for i in range(200):
        idx = np.arange(i % 5 * 10, i % 5 * 10 + 10)
        params, grads = kernels.Params(*net._live_params()), kernels.Grads(*net._grads)
        losses.append(fast_step(x, t, idx, params, grads, ws.work, 1e30, 1.0, None))
        if not math.isfinite(losses[-1]):
            break
    assert not math.isfinite(losses[-1]), "a huge lr must make the loss non-finite"


# -- weights files --------------------------------------------------------------


def test_weights_from_another_architecture_or_corrupt_are_rejected(tmp_path):
    path = tmp_path / "w.npz"
    save_weights(path, TwoLayerNet(6, 4, 3, seed=0))
    with pytest.raises(WeightsError, match="architecture 6-4-3 does not match"):
        load_weights(path, TwoLayerNet(6, 5, 3))
    with pytest.raises(
        WeightsError, match=r"6-4-3 does not match the network's 6-4-3 \(TwoLayerNet vs MultiLayerNet\)"
    ):
        load_weights(path, MultiLayerNet(6, [4], 3))
    save_weights(tmp_path / "deep.npz", MultiLayerNet(6, [4, 5], 3, activation="sigmoid", seed=0))
    deep = load_weights(tmp_path / "deep.npz")
    assert deep.hidden_size_list == [4, 5] and deep.activation == "sigmoid"
    data = path.read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="not a readable"):
        load_weights(tmp_path / "cut.npz")
    np.savez(tmp_path / "pickled.npz", W1=np.array([object()], dtype=object))
    with pytest.raises(WeightsError):
        load_weights(tmp_path / "pickled.npz")
    np.savez(tmp_path / "keys.npz", W1=np.ones(2))
    with pytest.raises(WeightsError, match="expected arrays"):
        load_weights(tmp_path / "keys.npz")


def test_weights_with_nan_are_rejected(tmp_path):
    net = TwoLayerNet(6, 4, 3, seed=0)
    net.params["W2"][0, 0] = np.nan
    save_weights(tmp_path / "w.npz", net)
    with pytest.raises(WeightsError, match="W2 contains NaN"):
        load_weights(tmp_path / "w.npz")


_SAVER = """
import sys, numpy as np
from fastnet import TwoLayerNet, save_weights
nets = [TwoLayerNet(784, 100, 10, seed=s) for s in (1, 2)]
print("ready", flush=True)
i = 0
while True:
    save_weights(sys.argv[1], nets[i % 2], round=i)
    i += 1
"""


def test_killing_a_saving_process_never_leaves_a_broken_file(tmp_path):
    path = tmp_path / "weights.npz"
    expected = [TwoLayerNet(784, 100, 10, seed=s).params["W1"] for s in (1, 2)]
    save_weights(path, TwoLayerNet(784, 100, 10, seed=1))
    rng = random.Random(0)
    for _ in range(15):
        proc = subprocess.Popen([sys.executable, "-c", _SAVER, str(path)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.15))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        net = load_weights(path)  # old file or new one, never a broken one
        assert any(np.array_equal(net.params["W1"], e) for e in expected)
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == ["weights.npz"]


# -- Ctrl-C during training ----------------------------------------------------


@pytest.mark.parametrize("delay", [0.0, 0.1, 0.6])  # evaluations run every 10 steps here: some land in one
def test_ctrl_c_stops_after_the_step_and_saves(tmp_path, delay):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fastnet",
            "train",
            "--dataset",
            SUBSET,
            "--iters",
            "100000000",
            "--out",
            str(tmp_path),
            "--no-plot",
            "--no-progress",
            "--seed",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert "training" in proc.stdout.readline()
    assert "train acc" in proc.stdout.readline()  # the first evaluation is done: steps are running
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted after" in err and "saved" in err
    history = json.loads((tmp_path / "history.json").read_text())
    assert history["stopped"] == "interrupted" and history["steps_done"] >= 1
    net = load_weights(tmp_path / "weights.npz")
    assert all(np.all(np.isfinite(p)) for p in net.params.values())


# -- concurrency ------------------------------------------------------------------


def _train(net, x, t, seed, steps=30):
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        net.step_indices(x, t, rng.integers(0, len(x), 64), 0.05)
    return {k: v.copy() for k, v in net.params.items()}


def test_two_nets_in_two_threads_match_sequential_training():
    rng = np.random.default_rng(0)
    x = rng.random((500, 784)).astype(np.float32)
    t = rng.integers(0, 10, 500)
    sequential = [_train(TwoLayerNet(784, 50, 10, seed=s), x, t, s) for s in (1, 2)]
    results = {}
    threads = [
        threading.Thread(target=lambda s=s: results.__setitem__(s, _train(TwoLayerNet(784, 50, 10, seed=s), x, t, s)))
        for s in (1, 2)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for s, expected in zip((1, 2), sequential):
        for key in expected:
            assert results[s][key].tobytes() == expected[key].tobytes()


def test_one_net_shared_by_two_threads_gives_each_its_own_gradients():
    rng = np.random.default_rng(1)
    net = TwoLayerNet(30, 8, 4, weight_init_std=0.5, dtype=np.float64, seed=0)
    batches = [(rng.random((b, 30)), rng.integers(0, 4, b)) for b in (5, 7)]
    expected = [net.gradient(x, t) for x, t in batches]
    errors = []

    def worker(i):
        x, t = batches[i]
        for _ in range(200):
            g = net.gradient(x, t)
            if any(not np.array_equal(g[k], expected[i][k]) for k in g):
                errors.append(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in (0, 1)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors


def test_nan_in_training_data_is_named_before_training(tmp_path):
    from fastnet.train import train

    x = np.ones((20, 4), np.float32)
    x[7, 2] = np.nan
    with pytest.raises(ValueError, match="training inputs.*NaN"):
        train(
            TwoLayerNet(4, 3, 2),
            (x, np.zeros(20, np.int64)),
            (x[:5], np.zeros(5, np.int64)),
            iters=5,
            log=lambda s: None,
        )
