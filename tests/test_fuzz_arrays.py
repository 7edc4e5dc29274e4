"""Fuzzing the array loaders of `archspec run` (weights .npz, input .npy): whatever the bytes, the result
is arrays or a UsageError naming the file -- never another exception (numpy's header parser raises
TokenError, SyntaxError, ValueError, EOFError ... on corrupt files).

Byte-level edits of real files: flips, truncations and insertions, in the zip structure, the .npy header
and the data. CI runs a few dozen examples; ARCHSPEC_FUZZ_EXAMPLES raises the count as for test_fuzz.py.
"""

from __future__ import annotations

import io
import os
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archspec.errors import UsageError
from archspec.reference.io import load_input, load_weights

TOTAL = int(os.environ.get("ARCHSPEC_FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=max(10, TOTAL // 10),
    deadline=5000,
    derandomize="ARCHSPEC_FUZZ_EXAMPLES" not in os.environ,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _npz_bytes() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **{"conv.weight": np.ones((4, 3, 3, 3), np.float32), "conv.bias": np.arange(4.0)})
    return buffer.getvalue()


def _npy_bytes() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((1, 3, 4, 4), np.float32))
    return buffer.getvalue()


@st.composite
def edited(draw, original: bytes) -> bytes:
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "header"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "truncate":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:  # rewrite part of a .npy header with header-like text
            text = draw(st.sampled_from([b"(((", b"'shape': (", b"{'descr': '<c8'", b"}", b"\x00", b"'<f4'"]))
            data[at : at + len(text)] = text
    return bytes(data)


def _check(loader, path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning may leak to the user's terminal either
        try:
            loader(str(path))
        except UsageError as exc:
            assert str(path) in exc.render()


@FUZZ
@given(raw=edited(_npz_bytes()))
def test_edited_weights_archives(tmp_path, raw):
    path = tmp_path / "w.npz"
    path.write_bytes(raw)
    _check(load_weights, path)


@FUZZ
@given(raw=edited(_npy_bytes()))
def test_edited_input_arrays(tmp_path, raw):
    path = tmp_path / "x.npy"
    path.write_bytes(raw)
    _check(load_input, path)


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_complex_weights_are_refused(tmp_path, dtype):
    np.savez(tmp_path / "w.npz", **{"conv.weight": np.ones(3, dtype)})
    with pytest.raises(UsageError, match=r"w\.npz: error: tensor 'conv\.weight' is complex"):
        load_weights(str(tmp_path / "w.npz"))
