"""`archspec verify`: every static number against what the NumPy forward pass measures.

- shapes, activations: from the arrays each kernel returns;
- params, buffers: from the tensors each kernel actually read (kernels check them against the
  arrays they are given, never against the static rule);
- MACs: from the operands of the matrix products the kernels executed;
- live memory: from the buffers behind the real arrays alive after every node;
- receptive fields: by propagating band images through the real kernels (receptive_field.py);
- stochastic depth: the mean MACs over sampled drop masks, against the static expectation.
"""

from __future__ import annotations

from archspec.model import Model, load
from archspec.report.grid import grid
from archspec.verify.checks import Check, VerifyReport
from archspec.verify.numbers import check_forward
from archspec.verify.receptive_field import check_receptive_fields, probe_spans
from archspec.verify.stochastic_depth import check_stochastic_depth


def verify_model(model: Model, path: str, seed: int = 0, samples: int = 400, input_shape=None) -> VerifyReport:
    """Every check at the spec's input, or at `input_shape` (C, H, W): a smaller input verifies the
    same layers, rules and kernels of a very large model at a fraction of the cost."""
    analysis = model.analyze(input_shape)
    checks = check_forward(model, analysis, seed)
    checks.append(check_receptive_fields(model.graph, analysis))
    sd = check_stochastic_depth(model, analysis, seed, samples)
    if sd is not None:
        checks.append(sd)
    return VerifyReport(path, analysis.name, checks)


def verify_spec(path: str, seed: int = 0, samples: int = 400, input_shape=None) -> VerifyReport:
    return verify_model(load(path), path, seed, samples, input_shape)


def render_report(report: VerifyReport, max_lines: int = 10) -> str:
    rows = []
    for c in report.checks:
        status = "MISMATCH" if c.mismatches else "ok"
        notes = [n for n in c.skipped if not n.startswith("info:")]
        detail = f"{len(notes)} not checkable" if notes else ""
        rows.append([c.what, c.checked, len(c.mismatches), status, detail])
    text = f"{report.path} ({report.name}): {'PASS' if report.passed else 'FAIL'}\n"
    headers = ["check", "checked", "mismatches", "status", "notes"]
    text += grid(rows, headers, "simple", ("left", "right", "right", "left", "left")) + "\n"
    for c in report.checks:
        for line in c.mismatches[:max_lines]:
            text += f"  mismatch: {c.what}: {line}\n"
        if len(c.mismatches) > max_lines:
            text += f"  ... and {len(c.mismatches) - max_lines} more {c.what} mismatches\n"
        for line in c.skipped[:max_lines]:
            text += f"  note: {c.what}: {line.removeprefix('info: ')}\n"
        if len(c.skipped) > max_lines:
            text += f"  ... and {len(c.skipped) - max_lines} more notes\n"
    return text + "\n"


__all__ = [
    "Check",
    "VerifyReport",
    "check_forward",
    "check_receptive_fields",
    "check_stochastic_depth",
    "probe_spans",
    "render_report",
    "verify_model",
    "verify_spec",
]
