"""Loading user arrays for `archspec run`: weights (.npz) and inputs (.npy), never pickles.

Accepted inputs: real numbers of any float or integer type and byte order (float16/32/64, big-endian
float32, int8, ...), converted to native float32 as PyTorch's `.float()` would; complex and non-numeric
arrays are refused (a complex array would silently lose its imaginary part). Weights follow the same rule.
"""

from __future__ import annotations

import tokenize
import zipfile

import numpy as np

from archspec.errors import UsageError

# What numpy raises on a corrupt archive or .npy header (a mangled header is parsed as a Python literal).
_UNREADABLE = (ValueError, OSError, EOFError, SyntaxError, tokenize.TokenError, zipfile.BadZipFile, KeyError)


def _as_float32(array: np.ndarray, what: str) -> np.ndarray:
    if np.iscomplexobj(array):
        raise UsageError(f"{what} is complex ({array.dtype}); archspec computes with real float32 values")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise UsageError(f"{what} must be a real numeric array, got dtype {array.dtype}")
    return array.astype(np.float32, copy=False)


def load_weights(path: str) -> dict[str, np.ndarray]:
    try:
        # Our own handle, closed here whatever happens: np.load leaks the file it opened when the zip
        # directory turns out to be corrupt.
        with open(path, "rb") as handle:
            archive = np.load(handle, allow_pickle=False)
            if not hasattr(archive, "files"):
                raise UsageError(f"{path}: error: expected an .npz archive of named arrays, got a single array")
            return {key: _member(archive, key, path) for key in archive.files}
    except FileNotFoundError:
        raise UsageError(f"{path}: error: no such file") from None
    except _UNREADABLE as exc:
        raise UsageError(f"{path}: error: cannot read weights ({type(exc).__name__}: {exc})") from None


def _member(archive, key: str, path: str) -> np.ndarray:
    try:
        array = archive[key]
    except _UNREADABLE as exc:
        raise UsageError(f"{path}: error: tensor '{key}' cannot be read ({type(exc).__name__}: {exc})") from None
    return _as_float32(array, f"{path}: error: tensor '{key}'")


def load_input(path: str) -> np.ndarray:
    try:
        with open(path, "rb") as handle:
            array = np.load(handle, allow_pickle=False)
            if hasattr(array, "files"):
                raise UsageError(f"{path}: error: expected a .npy array, got an .npz archive")
    except FileNotFoundError:
        raise UsageError(f"{path}: error: no such file") from None
    except _UNREADABLE as exc:
        raise UsageError(f"{path}: error: cannot read input ({type(exc).__name__}: {exc})") from None
    if not isinstance(array, np.ndarray) or array.ndim != 4:
        shape = list(getattr(array, "shape", []))
        raise UsageError(f"{path}: error: input must be an N x C x H x W array, got shape {shape}")
    if array.shape[0] == 0:
        raise UsageError(f"{path}: error: input has batch size 0 (shape {list(array.shape)}); give at least one image")
    return _as_float32(array, f"{path}: error: input")
