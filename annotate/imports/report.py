"""What an import tells: its problems (:class:`ImportProblem`, :class:`ImportFailed`; an
empty file, :func:`refuse_empty`) and its :class:`ImportReport` (with the seconds of each
phase, :func:`lap`)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class ImportProblem:
    """One thing wrong with an imported file, and where."""

    file: str
    line: int
    field: str
    message: str
    expected: str = ""

    def __str__(self) -> str:
        text = f"{self.file}:{self.line}: {self.field}: {self.message}"
        return f"{text} (expected {self.expected})" if self.expected else text

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class ImportFailed(Exception):  # noqa: N818 — it reads as what happened, like Django's
    """The file was refused; nothing was written. ``problems`` says why, first line first."""

    def __init__(self, problems: Iterable[ImportProblem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass
class Counts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0

    @property
    def total(self) -> int:
        return self.created + self.updated + self.unchanged


@dataclass
class ImportReport:
    """What an import did: rows created, updated and left unchanged, and how long it took."""

    file: str
    format: str
    study: str
    lines: int = 0
    prompts: Counts = field(default_factory=Counts)
    responses: Counts = field(default_factory=Counts)
    scores: Counts = field(default_factory=Counts)
    cuts_fixed: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)  # seconds, for benchmarks

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        def row(name: str, c: Counts) -> str:
            return (
                f"  {name:<10}{c.created:>10} created {c.updated:>10} updated "
                f"{c.unchanged:>10} unchanged"
            )

        lines = [
            f"{self.file} ({self.format}) into study {self.study}: "
            f"{self.lines} interactions in {self.seconds:.2f} s",
            row("prompts", self.prompts),
            row("responses", self.responses),
            row("scores", self.scores),
        ]
        for key, cuts in self.cuts_fixed.items():
            lines.append(f"  judge cuts of {key} fixed at {cuts}")
        return "\n".join(lines)


def refuse_empty(report: ImportReport) -> None:
    if report.lines == 0:
        raise ImportFailed(
            [ImportProblem(report.file, 1, "file", "the file is empty", "at least one interaction")]
        )


def lap(started: float) -> float:
    return round(time.perf_counter() - started, 3)
