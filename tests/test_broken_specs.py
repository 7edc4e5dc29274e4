"""Hostile and broken input: every mistake gets exit code 2, a `path:line:col: error:` message that points
at the right spot, and no traceback.

The corpus lives in tests/broken/: one small spec per kind of mistake. Each file starts with comments
  # expect: <substring of the expected message>
  # expect-line: <line the first matching diagnostic points at>     (optional)
  # expect-col: <column it points at (expressions: the offending token inside the scalar)>  (optional)
  # expect-file: <file it points at, relative to tests/broken/>      (optional; default: the spec itself)
  # expect-count: <number of diagnostics: several independent mistakes, all reported in one run>  (optional)
Files under tests/broken/lib/ are block libraries used by the corpus, not cases.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import archspec
from archspec.cli import main
from archspec.errors import SpecError
from archspec.spec import yamlsafe
from conftest import SPECS

BROKEN = Path(__file__).resolve().parent / "broken"
CORPUS = sorted(BROKEN.glob("*.yaml"))
HEADER = re.compile(r"^(?P<path>.+?):(?P<line>\d+):(?P<col>\d+): error: ", re.MULTILINE)
GOOD = """name: t
input: [3, 32, 32]
metadata: {source: test}
nodes:
  - {name: conv, op: conv2d, out_channels: 8, kernel: 3, padding: 1}
  - {name: relu, op: relu}
"""


def directives(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_bytes().decode("utf-8", "replace").splitlines()[:6]:
        match = re.match(r"# (expect(?:-\w+)?): (.*)", line)
        if match:
            found[match.group(1)] = match.group(2).strip()
    return found


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def diagnostics(err: str) -> list[tuple[str, int, int, str]]:
    """(path, line, col, full text of the diagnostic incl. hint and notes) for each error in `err`."""
    starts = list(HEADER.finditer(err))
    result = []
    for i, match in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(err)
        result.append((match["path"], int(match["line"]), int(match["col"]), err[match.start() : end]))
    return result


def test_corpus_is_large_and_every_case_says_what_it_expects():
    assert len(CORPUS) >= 40
    for path in CORPUS:
        assert "expect" in directives(path), f"{path.name} has no '# expect:' line"


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_broken_spec(path, capsys):
    want = directives(path)
    code, out, err = run_cli(capsys, "analyze", str(path))
    assert code == 2, f"exit code {code}\n{err}"
    assert "Traceback" not in out + err and "internal error" not in err
    assert want["expect"] in err, err
    found = diagnostics(err)
    assert found, f"no 'path:line:col: error:' diagnostic in\n{err}"
    for where, line, col, _ in found:
        assert line >= 1 and col >= 1
        assert Path(where).resolve().is_relative_to(BROKEN), where
    if "expect-line" in want:
        where, line, _, _ = next(d for d in found if want["expect"] in d[3])
        expected_file = BROKEN / want.get("expect-file", path.name)
        assert Path(where).resolve() == expected_file.resolve(), err
        assert line == int(want["expect-line"]), err
    if "expect-col" in want:
        _, _, col, _ = next(d for d in found if want["expect"] in d[3])
        assert col == int(want["expect-col"]), err
    if "expect-count" in want:
        assert len(found) == int(want["expect-count"]), err


@pytest.mark.parametrize("name", ["python_tag", "alias_bomb", "non_utf8", "huge_expansion"])
def test_broken_spec_through_a_real_process(name):
    """The installed entry point, not just main(): exit status 2 and no traceback."""
    path = BROKEN / f"{name}.yaml"
    proc = subprocess.run(
        [sys.executable, "-m", "archspec", "analyze", str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert directives(path)["expect"] in proc.stderr


def test_python_tag_runs_no_code(tmp_path, capsys):
    marker = tmp_path / "pwned"
    path = tmp_path / "spec.yaml"
    path.write_text(f"!!python/object/apply:os.system ['touch {marker}']\n")
    code, _, err = run_cli(capsys, "analyze", str(path))
    assert code == 2 and "is not allowed" in err
    assert not marker.exists()


def test_debug_shows_the_traceback(capsys):
    code, _, err = run_cli(capsys, "--debug", "analyze", str(BROKEN / "unknown_op.yaml"))
    assert code == 2 and "Traceback" in err and "did you mean 'max_pool2d'?" in err


# ---- made at runtime: things that cannot (or should not) live in git ---------------------------------


def test_empty_file(tmp_path, capsys):
    for content in (b"", b"   \n\n  \n"):
        path = tmp_path / "empty.yaml"
        path.write_bytes(content)
        code, _, err = run_cli(capsys, "analyze", str(path))
        assert code == 2 and f"{path}:1:1: error: spec file is empty" in err


def test_nul_character(tmp_path, capsys):
    path = tmp_path / "nul.yaml"
    path.write_bytes(GOOD.encode() + b"# \x00\n")
    code, _, err = run_cli(capsys, "analyze", str(path))
    assert code == 2 and "NUL" in err and err.startswith(f"{path}:")


def test_file_too_large_is_refused_before_parsing(tmp_path, capsys):
    path = tmp_path / "big.yaml"
    path.write_bytes(GOOD.encode() + b"#" * yamlsafe.MAX_FILE_BYTES)
    code, _, err = run_cli(capsys, "analyze", str(path))
    assert code == 2 and f"the limit is {yamlsafe.MAX_FILE_BYTES:,}" in err


def test_too_many_yaml_values(tmp_path, capsys):
    path = tmp_path / "many.yaml"
    path.write_text(GOOD + "train_outputs: [" + "x, " * yamlsafe.MAX_YAML_NODES + "x]\n")
    code, _, err = run_cli(capsys, "analyze", str(path))
    assert code == 2 and f"more than {yamlsafe.MAX_YAML_NODES:,} YAML values" in err


def test_include_symlink_escape(tmp_path, capsys):
    """A block library inside the spec folder that is really a symlink to a file outside it."""
    outside = tmp_path / "outside.yaml"
    outside.write_text("blocks:\n  unit:\n    nodes: [{name: r, op: relu}]\n")
    specs = tmp_path / "specs"
    (specs / "blocks").mkdir(parents=True)
    (specs / "blocks" / "lib.yaml").symlink_to(outside)
    spec = specs / "spec.yaml"
    spec.write_text(GOOD.replace("nodes:\n", "include: [blocks/lib.yaml]\nnodes:\n") + "  - {name: u, block: unit}\n")
    code, _, err = run_cli(capsys, "analyze", str(spec))
    assert code == 2
    assert f"{spec}:4:11: error: include 'blocks/lib.yaml' points outside the spec folder" in err
    assert "unknown block" not in err  # the failed include explains the missing block


def test_include_inside_the_folder_still_works(tmp_path, capsys):
    specs = tmp_path / "specs"
    (specs / "blocks").mkdir(parents=True)
    (specs / "blocks" / "lib.yaml").write_text("blocks:\n  unit:\n    nodes: [{name: r, op: relu}]\n")
    spec = specs / "spec.yaml"
    spec.write_text(GOOD.replace("nodes:\n", "include: [blocks/lib.yaml]\nnodes:\n") + "  - {name: u, block: unit}\n")
    code, out, err = run_cli(capsys, "analyze", str(spec))
    assert code == 0, err


# ---- huge but valid shapes: exact integers in analyze; verify/run refuse to allocate ---------------------

HUGE = """name: huge
input: [3, 1000000000000000000, 1000000000000000000]
metadata: {source: test}
nodes:
  - {name: conv, op: conv2d, out_channels: 64, kernel: 3, stride: 2, padding: 1}
  - {name: relu, op: relu}
  - {name: pool, op: adaptive_avg_pool2d, output_size: 7}
  - {name: flat, op: flatten}
  - {name: fc, op: linear, out_features: 1000}
"""


def test_huge_input_is_analyzed_with_exact_integers(write_spec, capsys):
    code, out, err = run_cli(capsys, "analyze", write_spec(HUGE), "--format", "json")
    assert code == 0, err
    conv = json.loads(out)["layers"][0]
    side = 5 * 10**17  # floor((10**18 + 2 - 3) / 2) + 1, beyond float64's exact integers
    assert conv["output_shape"] == [64, side, side]
    assert conv["activations"] == 64 * side * side
    assert conv["macs"] == 64 * side * side * 3 * 3 * 3
    code, out, _ = run_cli(capsys, "analyze", write_spec(HUGE), "--batch", "1000000")
    assert code == 0 and "432,000,000,000,000,000,000,000,000,000,003,136,000" in out


def test_verify_refuses_to_allocate_a_huge_input(write_spec, capsys):
    code, _, err = run_cli(capsys, "verify", write_spec(HUGE))
    assert code == 2 and "Traceback" not in err
    assert "GiB" in err and "is available" in err


def test_verify_refuses_to_allocate_huge_weights(write_spec, capsys):
    spec = GOOD.replace("out_channels: 8", "out_channels: 1000000000000")
    code, _, err = run_cli(capsys, "verify", write_spec(spec))
    assert code == 2 and "GiB" in err and "Traceback" not in err


def test_run_refuses_weights_it_cannot_have(write_spec, tmp_path, capsys):
    import numpy as np

    spec = write_spec(GOOD.replace("out_channels: 8", "out_channels: 1000000000000"))
    np.savez(tmp_path / "w.npz", **{"conv.weight": np.zeros((8, 3, 3, 3), np.float32)})
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 32, 32), np.float32))
    code, _, err = run_cli(
        capsys,
        "run",
        spec,
        "--weights",
        str(tmp_path / "w.npz"),
        "--input",
        str(tmp_path / "x.npy"),
        "--out",
        str(tmp_path / "y.npy"),
    )
    assert code == 2 and "[1000000000000, 3, 3, 3]" in err and "Traceback" not in err
    assert not (tmp_path / "y.npy").exists()


# ---- bad command-line input ---------------------------------------------------------------------------


def test_missing_file(tmp_path, capsys):
    code, _, err = run_cli(capsys, "analyze", str(tmp_path / "nope.yaml"))
    assert code == 2 and err.strip() == f"{tmp_path / 'nope.yaml'}: error: no such file"


def test_directory(tmp_path, capsys):
    code, _, err = run_cli(capsys, "analyze", str(tmp_path))
    assert code == 2 and "is a directory" in err


def test_name_too_long(capsys):
    code, _, err = run_cli(capsys, "analyze", "a" * 5000 + ".yaml")
    assert code == 2 and "Traceback" not in err and "internal error" not in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read a chmod 000 file; the FIFO and device tests cover it")
def test_unreadable_file(tmp_path, capsys):
    path = tmp_path / "secret.yaml"
    path.write_text(GOOD)
    path.chmod(0)
    code, _, err = run_cli(capsys, "analyze", str(path))
    assert code == 2 and "cannot read" in err


def test_fifo_is_refused_without_blocking(tmp_path, capsys):
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    code, _, err = run_cli(capsys, "analyze", str(fifo))  # reading it would wait forever for a writer
    assert code == 2 and "not a regular file" in err


def test_device_is_refused(capsys):
    code, _, err = run_cli(capsys, "analyze", "/dev/zero")  # reading it would never end
    assert code == 2 and "not a regular file" in err


@pytest.mark.parametrize(
    "bad", ["3,224", "a,b,c", "3,0,224", "-1,2,3", "3,224,224,1", "3,1_0,10", "3,2.5,7", "", "3," + "9" * 5000 + ",1"]
)
def test_bad_input_shape(capsys, bad):
    code, _, err = run_cli(capsys, "analyze", str(SPECS / "alexnet.yaml"), f"--input={bad}")
    assert code == 2 and "--input" in err and "is not a shape" in err and "Traceback" not in err


def test_negative_input_shape_as_separate_argument(capsys):
    # argparse reads "-1,2,3" after --input as an option: still a clean usage error with exit 2.
    code, _, err = run_cli(capsys, "analyze", str(SPECS / "alexnet.yaml"), "--input", "-1,2,3")
    assert code == 2 and "--input" in err and "Traceback" not in err


@pytest.mark.parametrize("option", [["--batch", "0"], ["--batch", "x"], ["--batch", "9" * 50], ["--depth", "-1"]])
def test_bad_numeric_options(capsys, option):
    code, _, err = run_cli(capsys, "analyze", str(SPECS / "alexnet.yaml"), *option)
    assert code == 2 and "Traceback" not in err


def test_input_shape_spellings(capsys):
    for text in ("3,227,227", "3x227x227", " 3, 227, 227 "):
        code, _, err = run_cli(capsys, "analyze", str(SPECS / "alexnet.yaml"), f"--input={text}")
        assert code == 0, err


def test_exit_codes_0_1_2(write_spec, capsys, monkeypatch):
    path = write_spec(GOOD)
    assert run_cli(capsys, "analyze", path)[0] == 0
    assert run_cli(capsys, "verify", path)[0] == 0
    # A static rule that disagrees with the measured forward pass is a verification mismatch: 1.
    from archspec.ops.conv import Conv2d

    honest = Conv2d.macs
    monkeypatch.setattr(Conv2d, "macs", lambda self, i, o: honest(self, i, o) + 1)
    code, out, _ = run_cli(capsys, "verify", path)
    assert code == 1 and "MISMATCH" in out
    assert run_cli(capsys, "analyze", str(BROKEN / "cycle.yaml"))[0] == 2
    assert run_cli(capsys, "frobnicate")[0] == 2  # unknown command: argparse's usage error


# ---- output files are written atomically ------------------------------------------------------------


def test_schema_into_a_missing_folder_fails_cleanly(tmp_path, capsys):
    target = tmp_path / "no" / "such" / "dir" / "schema.json"
    code, _, err = run_cli(capsys, "schema", "--out", str(target))
    assert code == 2 and "does not exist" in err and "Traceback" not in err
    assert not (tmp_path / "no").exists()


def test_schema_onto_a_directory_fails_cleanly(tmp_path, capsys):
    code, _, err = run_cli(capsys, "schema", "--out", str(tmp_path))
    assert code == 2 and "is a directory" in err


def test_failed_write_leaves_the_old_file_whole(tmp_path, capsys, monkeypatch):
    from archspec.report import files

    target = tmp_path / "schema.json"
    target.write_text("the previous, complete schema\n")

    def refuse(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", refuse)
    code, _, err = run_cli(capsys, "schema", "--out", str(target))
    assert code == 2 and "No space left on device" in err
    assert target.read_text() == "the previous, complete schema\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["schema.json"]  # no temporary file left behind


# ---- the Python API raises archspec's own error, with locations ------------------------------------------


def test_api_raises_spec_error_with_locations():
    with pytest.raises(SpecError) as info:
        archspec.load(str(BROKEN / "several_mistakes.yaml"))
    assert len(info.value.diagnostics) == 7
    assert all(d.location is not None and d.location.line > 0 for d in info.value.diagnostics)


def test_receptive_field_of_a_stride_bomb_is_printable(write_spec, capsys):
    """300 stride-10**18 convs on a 1x1 input: legal shapes (1x1 throughout), and the receptive field's
    stride is 10**5400 -- exact, and printed in full."""
    spec = """name: rf
input: [1, 1, 1]
metadata: {source: test}
blocks:
  s:
    nodes: [{name: c, op: conv2d, out_channels: 1, kernel: 1, stride: 1000000000000000000}]
nodes:
  - {name: l, block: s, repeat: 300}
"""
    path = write_spec(spec)
    code, out, err = run_cli(capsys, "analyze", path, "--format", "json")
    assert code == 0 and "Traceback" not in err
    assert '"stride": [\n' in out and str(10**5400) in out  # (10**18)**300, every digit
    code, out, err = run_cli(capsys, "verify", path)
    assert code == 0 and "Traceback" not in err
