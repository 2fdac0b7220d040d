"""Where a convnet's training step spends its time, by compiled function: Linux ``perf`` samples
the steps of a child process, whose Numba functions get their names through a perf map.

    python scripts/profile_step.py [--net simple-conv|deep-conv | --layers SPEC] [--seconds 20]

The child compiles every kernel anew into a temporary cache (Numba's cached code loads without the
names perf needs: a minute or two), then runs steps (B = 100, Adam, random 28×28 images) while
``perf record`` samples it, and at its exit writes /tmp/perf-PID.map, each compiled function's
address and name, which ``perf report`` reads. Prints a markdown table: each function's share of the
CPU samples (all threads; BLAS, OpenMP's waits and the kernel by library) and what that share is of
the CPU time a step took (every thread's, measured over the same steps). Needs ``perf`` (linux-perf) and
/proc/sys/kernel/perf_event_paranoid at 2 or lower.
"""

import argparse
import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readable(symbol):
    """fastnet.kernels.conv._weight_tiles from Numba's mangled _ZN7fastnet7kernels4conv13_weight_tilesB4v3...E."""
    if not symbol.startswith("_ZN"):
        return symbol
    i, parts = 3, []
    while i < len(symbol) and symbol[i].isdigit():
        j = i
        while symbol[j].isdigit():
            j += 1
        parts.append(symbol[j : j + int(symbol[i:j])])
        i = j + int(symbol[i:j])
    name = ".".join(parts)
    return "a parallel region's body" if "numba_parfor_gufunc" in name else name


def shares_by_function(lines):
    """{name: per cent of the samples} from ``perf report --sort dso,sym --stdio -q`` lines: Numba's
    functions by name, every other library (BLAS, OpenMP, Python) as one entry."""
    shares = {}
    for line in lines:
        fields = line.split()  # share, library ("[JIT] tid PID" for Numba's code), [.] or [k], symbol
        marks = [i for i, field in enumerate(fields) if field in ("[.]", "[k]")]
        if not fields or not fields[0].endswith("%") or not marks:
            continue
        library, symbol = fields[1], " ".join(fields[marks[0] + 1 :])
        if library.startswith("[JIT]"):
            name = readable(symbol)
        elif library == "[kernel.kallsyms]":
            name = "the operating system's kernel"
        else:
            name = library.split(".so")[0]
        shares[name] = shares.get(name, 0.0) + float(fields[0].rstrip("%"))
    return shares


def write_perf_map():
    """/tmp/perf-PID.map: the address, size and name of every function Numba compiled in this process."""
    from numba.core.registry import cpu_target

    engine = cpu_target.target_context.codegen()._engine
    starts = sorted(
        (address, name)
        for name in engine._defined_symbols
        if (address := engine._ee.get_function_address(name))
    )  # fmt: skip
    with open(f"/tmp/perf-{os.getpid()}.map", "w") as f:
        for (address, name), (following, _) in zip(starts, starts[1:] + [(starts[-1][0] + 4096, "")]):
            f.write(f"{address:x} {following - address:x} {readable(name)}\n")


def child(args):
    import numpy as np

    from fastnet import DeepConvNet, Sequential, SimpleConvNet, optim

    atexit.register(write_perf_map)
    if args.layers:
        net = Sequential.from_spec(f"1x28x28:{args.layers}", seed=0)
    else:
        net = (SimpleConvNet if args.net == "simple-conv" else DeepConvNet)(seed=0)
    rng = np.random.default_rng(0)
    x = rng.random((2000, 1, 28, 28), dtype=np.float32)
    t = rng.integers(0, 10, len(x))
    adam = optim.Adam(1e-3)
    net.steps(x, t, rng.integers(0, len(x), (2, 100)), adam)  # compiles, outside the samples
    Path(args.ready).write_text("ready")
    time.sleep(0.5)  # perf attaches
    steps, start, cpu = 0, time.perf_counter(), time.process_time()  # process_time: every thread's
    while time.perf_counter() - start < args.seconds + 1:
        net.steps(x, t, rng.integers(0, len(x), (10, 100)), adam)
        steps += 10
    Path(args.ready).write_text(f"{(time.perf_counter() - start) / steps} {(time.process_time() - cpu) / steps}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--net", choices=["simple-conv", "deep-conv"], default="simple-conv")
    parser.add_argument("--layers", help="a network as fastnet train --layers takes it, instead of --net")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long perf samples the steps (20)")
    parser.add_argument("--rows", type=int, default=25, help="functions listed (25)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ready", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    if shutil.which("perf") is None:
        sys.exit("profile_step.py: perf is not installed (Debian: apt install linux-perf)")
    with tempfile.TemporaryDirectory() as tmp:
        ready, data = Path(tmp) / "ready", Path(tmp) / "perf.data"
        env = dict(os.environ, NUMBA_CACHE_DIR=str(Path(tmp) / "numba-cache"))
        command = [sys.executable, __file__, "--child", "--ready", str(ready), "--seconds", str(args.seconds)]
        command += ["--layers", args.layers] if args.layers else ["--net", args.net]
        print("compiling every kernel anew in a child process ...", file=sys.stderr)
        process = subprocess.Popen(command, env=env, cwd=ROOT)
        while not ready.exists():
            if process.poll() is not None:
                sys.exit(f"profile_step.py: the child process failed (exit code {process.returncode})")
            time.sleep(0.2)
        record = ["perf", "record", "-q", "-F", "2000", "-p", str(process.pid), "-o", str(data)]
        subprocess.run([*record, "--", "sleep", str(args.seconds)], check=True)
        if process.wait() != 0:
            sys.exit(f"profile_step.py: the child process failed (exit code {process.returncode})")
        step, cpu = (float(value) for value in ready.read_text().split())
        report = ["perf", "report", "-i", str(data), "--no-children", "--sort", "dso,sym", "--stdio", "-q"]
        lines = subprocess.run(report, check=True, capture_output=True, text=True).stdout.splitlines()
    shares = shares_by_function(lines)
    what = args.layers or args.net
    print(f"{what}: {step * 1e3:.2f} ms a step, {cpu * 1e3:.2f} ms of CPU time (all threads; B = 100, Adam); "
          f"perf's samples over {args.seconds:g} s")  # fmt: skip
    print()
    print("| function (or library) | share of the samples | ms of CPU time a step |")
    print("|---|---:|---:|")
    for name, share in sorted(shares.items(), key=lambda item: -item[1])[: args.rows]:
        print(f"| {name} | {share:.1f} % | {share / 100 * cpu * 1e3:.3f} |")


if __name__ == "__main__":
    main()
