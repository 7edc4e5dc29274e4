"""archspec's own error types. Every user-facing failure is one of these, never a bare traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Location:
    """A place in a spec file; line and column are 1-based, as editors show them."""

    path: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}"


MAX_NOTES = 6  # related notes shown per diagnostic; longer chains are elided in the middle
MAX_SHOWN = 100  # diagnostics printed per error; the rest are counted (all stay in .diagnostics)


@dataclass(frozen=True)
class Diagnostic:
    """One problem: where, what, and (optionally) how to fix it."""

    location: Location | None
    message: str
    hint: str | None = None
    # Extra places worth showing, e.g. the block template line behind an expanded node.
    related: tuple[tuple[Location, str], ...] = ()

    def render(self) -> str:
        if self.location is None and "error:" in self.message.partition("\n")[0]:
            text = self.message  # already formatted as "path: error: ..." by the raiser
        else:
            where = f"{self.location}: " if self.location else ""
            text = f"{where}error: {self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        related = list(self.related)
        if len(related) > MAX_NOTES:  # deep block nesting: keep the outermost and innermost uses
            keep = MAX_NOTES // 2
            skipped = len(related) - 2 * keep
            related = [*related[:keep], (None, f"... {skipped} more block uses ..."), *related[-keep:]]
        for loc, what in related:
            text += f"\n  {loc}: note: {what}" if loc is not None else f"\n  {what}"
        return _printable(text)


def _printable(text: str) -> str:
    """Escape control and invisible characters a hostile spec could use to rewrite the terminal."""
    if text.isprintable() or all(c.isprintable() or c == "\n" for c in text):
        return text
    return "".join(c if c.isprintable() or c == "\n" else ascii(c)[1:-1] for c in text)


class ArchspecError(Exception):
    """Base class: anything archspec reports to the user with exit code 2."""

    exit_code = 2

    def __init__(self, diagnostics: Iterable[Diagnostic] | Diagnostic | str):
        if isinstance(diagnostics, str):
            diagnostics = [Diagnostic(None, diagnostics)]
        elif isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics: tuple[Diagnostic, ...] = tuple(diagnostics)
        super().__init__(self.render())

    def render(self) -> str:
        shown = [d.render() for d in self.diagnostics[:MAX_SHOWN]]
        if len(self.diagnostics) > MAX_SHOWN:
            shown.append(f"... and {len(self.diagnostics) - MAX_SHOWN:,} more errors not shown")
        return "\n".join(shown)


class SpecError(ArchspecError):
    """The spec file is unsafe, malformed, or describes an impossible network."""


class UsageError(ArchspecError):
    """Bad command-line input (missing file, bad --input string, ...)."""


class WeightsError(ArchspecError):
    """Weights given to `run` do not fit the model: missing, extra or mis-shaped tensors."""


class ResourceError(ArchspecError):
    """A request that would exceed this machine's resources (e.g. memory for a forward pass)."""


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """A 'did you mean' hint for a misspelled key, op, node or block name."""
    matches = difflib.get_close_matches(str(word), sorted(set(choices)), n=1, cutoff=0.6)
    return f"did you mean '{matches[0]}'?" if matches else None
