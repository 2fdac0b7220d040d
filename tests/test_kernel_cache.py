"""Numba's on-disk cache notices a change in *another* module of the kernels package.

Stock Numba stamps a cached function with its own file only: a kernel in
api.py whose callee or constant in _blas.py changed would keep its old machine
code. fastnet's cache locators (fastnet/kernels/_cache.py) stamp every kernel
with a hash of the whole package. This test runs a kernel in a copy of the
package, changes a module-level constant in a different module, and runs it
again in a new process.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

import fastnet
from fastnet.kernels import _cache

PROBE = """
import json, numpy as np
from fastnet.kernels import api, affine_forward
x = np.arange(16.0).reshape(4, 4); W = np.arange(16.0).reshape(4, 4) % 5
out = affine_forward(x, W, np.zeros(4), np.empty((4, 4)))
stats = api._checked_affine_forward.stats
print(json.dumps({"out": out.tolist(), "hits": sum(stats.cache_hits.values()),
                  "misses": sum(stats.cache_misses.values())}))
"""


def run_probe(root):
    env = {**os.environ, "PYTHONPATH": str(root)}
    env.pop("NUMBA_CACHE_DIR", None)  # the copy's own __pycache__, fresh
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, cwd=root, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_constant_changed_in_another_module_reaches_the_cached_kernel(tmp_path):
    shutil.copytree(Path(fastnet.__file__).parent, tmp_path / "fastnet", ignore=shutil.ignore_patterns("__pycache__"))
    x, W = np.arange(16.0).reshape(4, 4), np.arange(16.0).reshape(4, 4) % 5

    first = run_probe(tmp_path)
    assert first["misses"] == 1 and np.array_equal(first["out"], x @ W)
    second = run_probe(tmp_path)  # the cache works: loaded, not compiled
    assert second["hits"] == 1 and second["misses"] == 0 and second["out"] == first["out"]

    # api.py calls layers.py, which reads _blas.py's transpose flags: swap them there.
    blas = tmp_path / "fastnet" / "kernels" / "_blas.py"
    source = blas.read_text()
    assert 'AS_IS, TRANSPOSED = ord("n"), ord("t")' in source
    blas.write_text(source.replace('AS_IS, TRANSPOSED = ord("n"), ord("t")', 'AS_IS, TRANSPOSED = ord("t"), ord("n")'))

    changed = run_probe(tmp_path)
    assert changed["misses"] == 1, "the cached kernel did not notice the change in _blas.py"
    assert np.array_equal(changed["out"], x.T @ W.T)  # the new constant's behaviour
    assert run_probe(tmp_path)["hits"] == 1  # and the new code is cached in turn


def test_the_stamp_covers_every_module_of_the_package():
    names = {p.name for p in _cache.PACKAGE_DIR.glob("*.py")}
    assert {"api.py", "layers.py", "_blas.py", "partition.py", "step.py"} <= names
    assert json.dumps(_cache.package_stamp()) == json.dumps(_cache._STAMP)


def test_a_cold_cache_is_seen_and_said_once_on_a_terminal(tmp_path):
    """A fresh copy of the package has nothing cached: ``is_cached`` says so (the train command then
    prints one line on a terminal); the kernels this process has run are cached."""
    import io

    from fastnet.kernels import engine, step
    from fastnet.options import say_if_compiling

    shutil.copytree(Path(fastnet.__file__).parent, tmp_path / "fastnet", ignore=shutil.ignore_patterns("__pycache__"))
    probe = ("from fastnet.kernels import _cache, engine, step; "
             "print(_cache.is_cached(engine.engine_steps), _cache.is_cached(step.train_steps_unchecked))")  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    env.pop("NUMBA_CACHE_DIR", None)
    cold = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert cold.stdout.split() == ["False", "False"], cold.stderr[-2000:]

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    x, t, batches = np.ones((2, 4), np.float32), np.array([0, 1]), np.zeros((1, 2), np.int64)
    fastnet.MultiLayerNet(4, [3], 2, seed=0).steps(x, t, batches, fastnet.optim.SGD(0.1))  # cached from here on
    fastnet.TwoLayerNet(4, 3, 2, seed=0).steps(x, t, batches, 0.1)
    assert _cache.is_cached(engine.engine_steps) and _cache.is_cached(step.train_steps_unchecked)
    terminal, pipe = Terminal(), io.StringIO()
    say_if_compiling(terminal)
    assert terminal.getvalue() == ""  # warm: nothing said
    original = _cache.is_cached
    try:
        _cache.is_cached = lambda dispatcher: False  # as the copy above: cold
        say_if_compiling(terminal)
        say_if_compiling(pipe)
    finally:
        _cache.is_cached = original
    assert terminal.getvalue().startswith("compiling the kernels for this machine, once") and pipe.getvalue() == ""
