"""The chapter 7 speed table: run benchmarks/test_bench_convnet.py (or read its JSON) and print
each group's medians as markdown, with each time over fastnet's and, for the step and predict,
over the floor (the FLOPs over the float32 GEMM peak measured in the same run).

    python scripts/convnet_report.py               # run the benchmarks (about a minute), then print
    python scripts/convnet_report.py --json F.json # print from an existing run
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(json_path):
    target = str(ROOT / "benchmarks" / "test_bench_convnet.py")
    cmd = [sys.executable, "-m", "pytest", target, "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
           f"--benchmark-json={json_path}", "--benchmark-disable-gc"]  # fmt: skip
    subprocess.run(cmd, check=True, cwd=ROOT)


def table(data):
    groups = {}
    for bench in data["benchmarks"]:
        groups.setdefault(bench["group"], []).append(bench)
    peak = None
    for bench in groups.get("gemm_peak 2048³ float32", []):
        peak = bench["extra_info"]["flops"] / bench["stats"]["median"]
    lines = [f"float32 GEMM peak (2048³, NumPy's BLAS): {peak / 1e9:.0f} GFLOP/s" if peak else "no GEMM peak measured"]
    for group, benches in groups.items():
        if group.startswith("gemm_peak"):
            continue
        fast = next((b for b in benches if "[fastnet" in b["name"] or "[multilayer" in b["name"]), benches[0])
        flops = benches[0]["extra_info"].get("flops", 0)
        floor = flops / peak if peak and flops else None
        lines += ["", f"**{group}**" + (f" (floor {floor * 1e3:.2f} ms)" if floor else ""), "",
                  "| implementation | median ms | × fastnet |" + (" × floor |" if floor else ""),
                  "|---|---:|---:|" + ("---:|" if floor else "")]  # fmt: skip
        for b in sorted(benches, key=lambda b: b["stats"]["median"]):
            median = b["stats"]["median"]
            impl = b["name"].split("[", 1)[-1].rstrip("]")
            row = f"| {impl} | {median * 1e3:.2f} | {median / fast['stats']['median']:.2f} |"
            lines.append(row + (f" {median / floor:.2f} |" if floor else ""))
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="a pytest-benchmark JSON file of test_bench_convnet.py")
    args = parser.parse_args()
    if args.json:
        path = Path(args.json)
    else:
        path = Path(tempfile.mkdtemp()) / "convnet.json"
        run(path)
    print(table(json.loads(path.read_text())))


if __name__ == "__main__":
    main()
