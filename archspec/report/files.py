"""Atomic output: write to a temporary file in the target folder, then rename over the target.
A crash or a full disk never leaves a half-written report or schema behind."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from archspec.errors import UsageError


def atomic_write_bytes(target: Path, data: bytes) -> None:
    target = Path(target)
    folder = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise UsageError(f"{target}: error: is a directory; give a file name")
    if not folder.is_dir():
        raise UsageError(f"{folder}: error: output folder does not exist")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".tmp")
    try:
        # mkstemp creates the file 0600; give it the mode a plain open() would (0666 minus the umask).
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise UsageError(f"{target}: error: cannot write ({exc.strerror})") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    # The only portable way to read the umask is to set it and put it back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(target: Path, text: str) -> None:
    atomic_write_bytes(target, text.encode("utf-8"))


def inside(folder: Path, name: str) -> Path:
    """`folder / name`, refusing names that would land outside `folder`."""
    path = (folder / name).resolve()
    if not path.is_relative_to(folder.resolve()) or "/" in name or "\\" in name or name.startswith("."):
        raise UsageError(f"error: refusing to write '{name}' outside {folder}")
    return path
