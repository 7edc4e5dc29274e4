"""The README shows real output: every block that starts with `$ archspec ...` is what that command
prints today, and the README's two commands are the ones CI runs."""

from __future__ import annotations

import contextlib
import io
import re

import pytest

from archspec.cli import main
from conftest import ROOT

README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```\n\$ (archspec [^\n]*)\n(.*?)```", README, flags=re.S)


@pytest.mark.parametrize(("command", "shown"), BLOCKS, ids=[c for c, _ in BLOCKS])
def test_readme_output_is_current(command, shown, monkeypatch):
    """What the command prints (stdout, then stderr for the error example) is what the README shows."""
    monkeypatch.chdir(ROOT)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(command.split()[1:])
    assert code == (2 if "tests/broken/" in command else 0)
    assert out.getvalue() + err.getvalue() == shown, (
        f"the README block for `{command}` is stale: paste its current output"
    )


def test_readme_starts_with_the_two_commands_ci_runs():
    commands = re.findall(r"```bash\n(.*?)\n```", README, flags=re.S)[:2]
    assert commands == [
        "pip install -e . && archspec analyze specs/alexnet.yaml",
        "pip install -e '.[test]' && python -m pytest",
    ]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python -m pytest\n" in ci and "pip install --quiet -e '.[test]'" in ci


def test_python_api_snippet_runs(monkeypatch):
    """The README's Python API example is real code: run it as written, from the repository root."""
    section = README[README.index("## Python API") :]
    snippet = section[section.index("```python\n") + len("```python\n") : section.index("```\n", 10)]
    monkeypatch.chdir(ROOT)
    namespace: dict = {}
    exec(compile(snippet, "README.md (Python API)", "exec"), namespace)
    assert namespace["logits"].shape == (1, 1000)


def test_sweep_example_runs(monkeypatch, capsys):
    """The README's design-space sweep is real code; run here over two widths (250 variants, not 1,000)."""
    section = README[README.index("**A design-space sweep.**") :]
    snippet = section[section.index("```python\n") + len("```python\n") : section.index("```\n", 10)]
    assert "WIDTHS = (32, 40, 48, 56, 64, 72, 80, 96)\n" in snippet
    snippet = snippet.replace("WIDTHS = (32, 40, 48, 56, 64, 72, 80, 96)\n", "WIDTHS = (40, 64)\n")
    monkeypatch.chdir(ROOT)
    namespace: dict = {}
    exec(compile(snippet, "README.md (sweep)", "exec"), namespace)
    out = capsys.readouterr().out
    assert out.startswith("250 variants in ")
    # torchvision's resnet50 num_params: the sweep's width 64, depths 3-4-6-3 is ResNet-50.
    assert "ResNet-50 (64, 3-4-6-3): 25,557,032 params\n" in out
