from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

# One BLAS thread per test process, set before NumPy loads (a variable already set is kept). The tests
# check numbers, not speed, and on a busy 2-core machine OpenBLAS's threads wait on each other at every
# small product: sampling stochastic-depth masks of ResNet-110 ran 40x slower in wall time with 2 threads.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"


@pytest.fixture
def write_spec(tmp_path):
    """Write a spec (dict or YAML text) to a temporary file and return its path as a string."""

    def _write(content, name="spec.yaml"):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        text = content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False)
        path.write_text(text)
        return str(path)

    return _write
