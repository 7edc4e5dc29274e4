"""The committed reports are what `archspec report specs/*.yaml` writes today."""

from __future__ import annotations

from pathlib import Path

from archspec.commands import report_command, write_reports
from conftest import ROOT, SPECS


def test_reports_are_not_stale(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    specs = sorted(str(p.relative_to(ROOT)) for p in SPECS.glob("*.yaml"))
    write_reports(specs, tmp_path, command=report_command(specs, "reports"), charts=False)
    committed = ROOT / "reports"
    stale = []
    for fresh in sorted(tmp_path.glob("*.md")):
        old = committed / fresh.name
        if not old.exists() or old.read_text() != fresh.read_text():
            stale.append(fresh.name)
    extra = sorted({p.name for p in committed.glob("*.md")} - {p.name for p in tmp_path.glob("*.md")})
    assert not stale and not extra, (
        f"stale reports {stale}, orphaned {extra}: run `archspec report specs/*.yaml --out-dir reports/`"
    )


def test_report_refuses_to_write_outside_its_folder(tmp_path):
    import pytest

    from archspec.errors import UsageError
    from archspec.report.files import inside

    with pytest.raises(UsageError):
        inside(Path(tmp_path), "../escape.md")


def test_readme_reports_and_help_share_the_conventions(capsys):
    """Each convention is written once (archspec/report/conventions.py) and used everywhere."""
    from archspec.cli import main
    from archspec.ops import Dropout, ReLU
    from archspec.report import conventions

    assert conventions.markdown() in (ROOT / "README.md").read_text()
    assert conventions.markdown() in (ROOT / "reports" / "alexnet.md").read_text()
    assert main(["analyze", "--help"]) == 0
    assert conventions.plain() in capsys.readouterr().out
    # The text states what the code does: the ops marked `view` are the ones it calls views, the ops
    # marked `in_place` the ones it says run in place (dropout is a view, never "in place").
    from archspec.ops import OP_CLASSES

    text = " ".join(conventions.markdown().split())
    views = text.split(" are views of their input")[0].rsplit("(outputs stay alive; ", 1)[1]
    in_place = text.split(" run in place when")[0].rsplit("input, and ", 1)[1]
    for cls in OP_CLASSES:
        tag = cls.model_fields["op"].annotation.__args__[0]
        assert (tag in views.replace(" and ", ", ").split(", ")) == bool(cls.view), tag
        assert (tag in in_place.lower().replace(" and ", ", ").split(", ")) == bool(cls.in_place), tag
    assert Dropout.view and not Dropout.in_place and ReLU.in_place
