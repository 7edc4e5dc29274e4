"""`archspec verify specs/*.yaml` passes: every shipped spec's static numbers equal the measured ones."""

from __future__ import annotations

import pytest

from archspec.verify import render_report, verify_spec
from conftest import SPECS

SPEC_FILES = sorted(SPECS.glob("*.yaml"))


@pytest.mark.parametrize("path", SPEC_FILES, ids=[p.stem for p in SPEC_FILES])
def test_shipped_spec_verifies(path):
    report = verify_spec(str(path), samples=200)
    assert report.passed, render_report(report)
    assert all(check.checked for check in report.checks), render_report(report)
