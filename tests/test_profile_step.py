"""scripts/profile_step.py's reading of perf's report and of Numba's symbol names: checked on
lines written here (perf itself, and a minute of compiling, are not needed for that)."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "profile_step.py"
spec = importlib.util.spec_from_file_location("profile_step", SCRIPT)
profile_step = importlib.util.module_from_spec(spec)
spec.loader.exec_module(profile_step)


def test_readable_names_from_numbas_symbols():
    mangled = "_ZN7fastnet7kernels4conv13_weight_tilesB4v307B38c8tJTIeFIjxB2IKSgI4CrvQClQZ6FczSBAA_3dE5Arr"
    assert profile_step.readable(mangled) == "fastnet.kernels.conv._weight_tiles"
    parfor = "_ZN13_3cdynamic_3e36__numba_parfor_gufunc_0x7f9ef33b3850B4v322B104c8tJTC_2fWQAliW1xhDE"
    assert profile_step.readable(parfor) == "a parallel region's body"
    assert profile_step.readable("NRT_decref") == "NRT_decref"


def test_shares_by_function_from_a_report():
    lines = [
        "    36.94%  libmkl_def.so.3                     [.] mkl_blas_def_sgemm_kernel_0_zen",
        "     2.45%  libmkl_def.so.3                     [.] mkl_blas_def_sgemm_scopy_down16_bdz",
        "    11.78%  [JIT] tid 28810                     [.] fastnet.kernels.conv._weight_tiles",
        "     1.00%  [JIT] tid 28810                     [.] _ZN7fastnet7kernels4conv6_tilesB4v189B54c8tJE",
        "     0.43%  [kernel.kallsyms]                   [k] _raw_spin_unlock_irqrestore",
        "",
        "# a comment line",
    ]
    shares = profile_step.shares_by_function(lines)
    assert shares == {
        "libmkl_def": 36.94 + 2.45,
        "fastnet.kernels.conv._weight_tiles": 11.78,
        "fastnet.kernels.conv._tiles": 1.00,
        "the operating system's kernel": 0.43,
    }
