"""Number formats of the dashboards: pass-rate differences in points, probabilities in %."""

from __future__ import annotations

from typing import Any

from django import template

register = template.Library()

MINUS = "\u2212"


@register.filter
def pts(value: float | None, digits: int = 1) -> str:
    """A share as signed percentage points: ``-0.012`` → ``−1.2``; None → ``–``."""
    if value is None:
        return "–"
    x = round(float(value) * 100.0, int(digits))
    if x == 0:
        return f"{0:.{int(digits)}f}"
    text = f"{abs(x):.{int(digits)}f}"
    return f"+{text}" if x > 0 else f"{MINUS}{text}"


@register.filter
def neg(value: float | None) -> float | None:
    """Minus the value (a margin δ shown as the threshold −δ)."""
    return None if value is None else -float(value)


@register.filter
def abspts(value: float | None, digits: int = 1) -> str:
    """A share as unsigned percentage points: ``-0.012`` → ``1.2``."""
    return "–" if value is None else f"{abs(float(value)) * 100:.{int(digits)}f}"


@register.filter
def pct(value: float | None, digits: int = 0) -> str:
    """A probability or share as a percentage: ``0.973`` → ``97%``; None → ``–``."""
    if value is None:
        return "–"
    return f"{float(value) * 100:.{int(digits)}f}%"


@register.filter
def num(value: float | None, digits: int = 2) -> str:
    """A plain number with fixed decimals; None → ``–``."""
    if value is None:
        return "–"
    return f"{float(value):.{int(digits)}f}"


VERDICT_MARK = {"go": "✓", "no-go": "✗", "undecided": "?", "held": "‖"}


@register.filter
def verdict_mark(verdict: str) -> str:
    return VERDICT_MARK.get(verdict, "")


@register.filter
def get_item(mapping: dict[str, Any] | None, key: str) -> Any:
    """``mapping[key]`` in a template (None when absent)."""
    return (mapping or {}).get(key)
