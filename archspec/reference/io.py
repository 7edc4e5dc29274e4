"""Loading user arrays for `archspec run`: weights (.npz) and inputs (.npy), never pickles."""

from __future__ import annotations

import zipfile

import numpy as np

from archspec.errors import UsageError


def load_weights(path: str) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            if not hasattr(archive, "files"):
                raise UsageError(f"{path}: error: expected an .npz archive of named arrays")
            return {key: np.asarray(archive[key], dtype=np.float32) for key in archive.files}
    except FileNotFoundError:
        raise UsageError(f"{path}: error: no such file") from None
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise UsageError(f"{path}: error: cannot read weights ({exc})") from None


def load_input(path: str) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise UsageError(f"{path}: error: no such file") from None
    except (ValueError, OSError) as exc:
        raise UsageError(f"{path}: error: cannot read input ({exc})") from None
    if not isinstance(array, np.ndarray) or array.ndim != 4:
        shape = list(getattr(array, "shape", []))
        raise UsageError(f"{path}: error: input must be an N x C x H x W array, got shape {shape}")
    if not np.issubdtype(array.dtype, np.number):
        raise UsageError(f"{path}: error: input must be numeric, got {array.dtype}")
    return array.astype(np.float32, copy=False)
