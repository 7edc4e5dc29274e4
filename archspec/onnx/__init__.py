"""ONNX interchange: export a spec to an ONNX model and import an ONNX model as a spec.

onnx is an optional dependency (`pip install 'archspec[onnx]'`): nothing here imports it at module
level, so analyzing a YAML spec never pays for it, and every command that needs it says what to install.
"""

from __future__ import annotations

from archspec.errors import UsageError

INSTALL_HINT = "pip install 'archspec[onnx]'"


def require_onnx():
    """The onnx module, or a one-line usage error saying what to install."""
    try:
        import onnx
    except ImportError:
        raise UsageError(f"error: ONNX support needs the 'onnx' package: {INSTALL_HINT}") from None
    return onnx


def is_onnx_path(path: str) -> bool:
    return str(path).lower().endswith(".onnx")
