"""fastnet's convnet training steps against PyTorch eager's, interleaved in one process.

    python scripts/vs_torch.py [--rounds 10]

The benchmarks' networks and data (``benchmarks/test_bench_convnet.py``: the book's SimpleConvNet
and DeepConvNet, B = 100, Adam, float32, PyTorch at as many threads as fastnet has blocks): each
round times a run of steps of one, then of the other, a pause between them so that neither's
spinning threads take the cores from the next. The per-round ratio cancels what the shared
machine does meanwhile; ``pytest-benchmark`` times each in its own window, minutes apart.
Prints a markdown table: ms a step, each median, and torch/fastnet per round, median (min-max).
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=10)
    args = p.parse_args()
    import torch
    from old_vs_new import row
    from test_bench_convnet import _torch_deep, _torch_net

    from fastnet import DeepConvNet, SimpleConvNet, _cores, optim

    torch.set_num_threads(_cores.BLOCKS or 1)
    rng = np.random.default_rng(0)
    x = rng.random((2000, 1, 28, 28), dtype=np.float32)
    t = rng.integers(0, 10, 2000)
    print(f"| B = 100, Adam, float32, {_cores.BLOCKS} threads | fastnet ms | PyTorch ms | PyTorch / fastnet, "
          "median (min-max) |")  # fmt: skip
    print("|---|---:|---:|---:|")
    for name, make, make_torch, steps in (("SimpleConvNet", SimpleConvNet, _torch_net, 40),
                                          ("DeepConvNet", DeepConvNet, _torch_deep, 8)):  # fmt: skip
        idx = rng.integers(0, 2000, (steps, 100))
        net, opt = make(seed=0), optim.Adam()
        rows = x.reshape(2000, -1)
        model = make_torch(torch)
        topt, loss_fn = torch.optim.Adam(model.parameters(), lr=0.001), torch.nn.CrossEntropyLoss()
        batches = [(torch.from_numpy(x[i]), torch.from_numpy(t[i])) for i in idx]

        def fast():
            net.steps(rows, t, idx, opt)

        def eager():
            for xb, tb in batches:
                topt.zero_grad()
                loss_fn(model(xb), tb).backward()
                topt.step()

        fast(), eager()  # compile (or load) and warm both
        pairs = []
        for r in range(args.rounds):  # odd rounds time PyTorch first: no order effect
            seconds = {}
            for i in (1, 0) if r % 2 else (0, 1):
                time.sleep(0.2)
                t0 = time.perf_counter()
                (fast, eager)[i]()
                seconds[i] = (time.perf_counter() - t0) / steps
            pairs.append((seconds[0], seconds[1]))
        print(row(name, pairs, unit=1e3, decimals=2))


if __name__ == "__main__":
    main()
