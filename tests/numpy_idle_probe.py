"""Run by tests/test_numpy_loop.py in a process of its own: does `fastnet train` wake NumPy's BLAS?

Prints JSON: the CPU ticks NumPy's OpenBLAS worker threads used during 50 numpy products (the
control: they do run), and during a `fastnet train` run on the MNIST subset (they should not).
"""

import json
import os
import sys
import time

import numpy as np


def thread_ticks():
    """{thread id: user + system CPU ticks} of this process's threads (Linux /proc)."""
    ticks = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # the thread ended
            continue
        ticks[int(tid)] = int(fields[11]) + int(fields[12])
    return ticks


def used(before, after, tids):
    return sum(after.get(t, 0) - before.get(t, 0) for t in tids)


def main():
    a = np.random.default_rng(0).random((512, 512), dtype=np.float32)
    a @ a  # NumPy's OpenBLAS starts its workers
    numpy_workers = set(thread_ticks()) - {os.getpid()}  # before fastnet adds threads of its own
    time.sleep(1.0)
    before = thread_ticks()
    for _ in range(50):
        a @ a
    control = used(before, thread_ticks(), numpy_workers)
    time.sleep(1.0)  # the workers stop spinning

    from fastnet.cli import main as fastnet_main

    before = thread_ticks()
    code = fastnet_main(["train", "--dataset", sys.argv[1], "--iters", "600", "--seed", "0", "--out", sys.argv[2],
                         "--no-progress"])  # fmt: skip
    during = used(before, thread_ticks(), numpy_workers)
    print(json.dumps({"code": code, "workers": len(numpy_workers), "control": control, "during_train": during}))


if __name__ == "__main__":
    main()
