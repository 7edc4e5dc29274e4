"""Result records of `archspec verify`."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Check:
    what: str
    checked: int = 0
    mismatches: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def fail(self, text: str) -> None:
        self.mismatches.append(text)


@dataclass
class VerifyReport:
    path: str
    name: str
    checks: list[Check]

    @property
    def passed(self) -> bool:
        return all(not c.mismatches for c in self.checks)
