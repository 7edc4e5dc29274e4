"""`archspec analyze` loads only what analysis needs (issue 11, target 2: the whole process in 0.3 s).

NumPy (70 ms to import), tabulate, matplotlib, networkx and onnx are for other commands; the start-up
figures themselves are printed by benchmarks/startup.py, not tested here (no timed tests).
"""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import ROOT

NOT_FOR_ANALYZE = ("numpy._core", "tabulate", "wcwidth", "matplotlib", "networkx", "onnx")


def _modules_after(argv: list[str]) -> set[str]:
    code = (
        "import contextlib, io, sys\n"
        "from archspec.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert main({argv!r}) == 0\n"
        "print('\\n'.join(sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=120, capture_output=True)
    return set(done.stdout.decode().split())


def test_analyze_loads_no_numpy_tabulate_plotting_or_onnx():
    loaded = _modules_after(["analyze", "specs/resnet152.yaml", "--train"])
    assert not {m for m in loaded if m.split(".")[0] in NOT_FOR_ANALYZE or m in NOT_FOR_ANALYZE}


def test_lazy_numpy_is_the_real_module_once_used():
    code = (
        "import sys\n"
        "from archspec.lazy import numpy as np\n"
        "assert 'numpy._core' not in sys.modules\n"
        "assert np.zeros(3).sum() == 0 and 'numpy._core' in sys.modules\n"
        "import numpy\n"
        "assert numpy is np and sys.modules['numpy'] is np\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=120)
