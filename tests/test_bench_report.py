"""scripts/bench_report.py reads a pytest-benchmark JSON and writes the report: checked on a
small run written here, so the script cannot rot between benchmark runs."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench_report.py"


def _bench(group, impl, seconds, flops):
    return {
        "group": group,
        "params": {"impl": impl},
        "extra_info": {"flops": flops, "fastnet_blas": "mkl"},
        "stats": {"median": seconds, "min": seconds * 0.9},
    }


def test_report_from_a_json_run(tmp_path):
    flops = 2 * 100 * 784 * 50 * 2 + 6 * 100 * 50 * 10
    run = {
        "machine_info": {"cpu": {"brand_raw": "Test CPU"}},
        "benchmarks": [
            _bench("training_step B100-H50", "fastnet-f32", 200e-6, flops),
            _bench("training_step B100-H50", "reference-f64", 1000e-6, flops),
            _bench("training_step B100-H50", "reference-f32", 500e-6, flops),
            _bench("peak matmul", "fastnet-f32", 0.1, 20e9),  # fastest round 0.09 s: 222 GFLOP/s
        ],
    }
    path = tmp_path / "run.json"
    path.write_text(json.dumps(run))
    subprocess.run(
        [sys.executable, str(SCRIPT), "--json", str(path), "--out", str(tmp_path)], check=True, capture_output=True
    )
    report = (tmp_path / "REPORT.md").read_text()
    assert "Test CPU" in report and "**222 GFLOP/s**" in report
    # fastnet: 200 µs, 5.00x the f64 reference, 2.50x the f32 one; floor 15.98 MFLOP / 222 GFLOP/s
    assert "| training_step B100-H50 | fastnet-f32 | 200.0 | 5.00 | 2.50 |" in report
    assert "| B100-H50 | 200.0 | 71.9 | 2.78 |" in report
    assert (tmp_path / "steps.png").stat().st_size > 1000
