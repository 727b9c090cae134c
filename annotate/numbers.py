"""Numbers and ids typed by clients (form fields, API bodies, hidden inputs): one set of bounds.

Python reads numbers of any size: ``Decimal("9e9999999")``, ``float("nan")`` and 10**20 are
all values, and ``"²".isdigit()`` is true. They fail later, as a 500: in ``int()`` (past 4,300
digits or on a superscript), in Decimal arithmetic (``Overflow``), in the database (out of
range for the column, NaN in a JSON column). Everything a client types that is a number or an
id goes through these helpers, which answer None (or raise the form's ValidationError) where
the value is read, so that the refusal names its field.
"""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation
from typing import Any

from django import forms

__all__ = [
    "DB_ID_MAX",
    "DB_INT_MAX",
    "FiniteDecimalField",
    "parse_decimal",
    "parse_finite_floats",
    "parse_id",
    "parse_int",
]

DB_INT_MAX = 2**31 - 1  # PostgreSQL ``integer``: the narrowest integer column
DB_ID_MAX = 2**63 - 1  # ``bigint`` primary keys
_MAX_DIGITS = 19  # enough for DB_ID_MAX; a longer string is refused before int() reads it
_MAX_NUMBER_TEXT = 100  # characters of a typed float or decimal


def parse_int(raw: Any, *, lo: int = -DB_INT_MAX, hi: int = DB_INT_MAX) -> int | None:
    """An integer written in ASCII digits (optional sign) within ``[lo, hi]``, else None."""
    if not isinstance(raw, str):
        return None
    text = raw.strip()
    digits = text[1:] if text[:1] in ("-", "+") else text
    if not (0 < len(digits) <= _MAX_DIGITS and digits.isascii() and digits.isdigit()):
        return None
    value = int(text)
    return value if lo <= value <= hi else None


def parse_id(raw: Any) -> int | None:
    """A row id from a form or a query string: 1 to ``DB_ID_MAX``, ASCII digits only."""
    return parse_int(raw, lo=1, hi=DB_ID_MAX)


def parse_decimal(raw: Any, *, max_abs: Decimal) -> Decimal | None:
    """A finite decimal no larger than ``max_abs`` in size, else None.

    ``Decimal("9e9999999")`` parses; adding it to anything in the default context raises
    ``decimal.Overflow``, so the size is checked before any arithmetic.
    """
    if not isinstance(raw, str) or len(raw) > _MAX_NUMBER_TEXT:
        return None
    try:
        value = Decimal(raw.strip())
    except InvalidOperation:
        return None
    if not value.is_finite() or value.copy_abs() > max_abs:
        return None
    return value


def parse_finite_floats(raw: str) -> list[float]:
    """Comma- (or semicolon-) separated finite numbers; ValidationError naming the bad one.

    ``float()`` accepts ``nan``, ``inf`` and ``1e400`` (as inf): JSON columns refuse them on
    PostgreSQL, and every comparison with NaN is false, so they would pass range checks.
    """
    values = []
    for part in raw.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = float(part) if len(part) <= _MAX_NUMBER_TEXT else math.nan
        except ValueError:
            raise forms.ValidationError(f"“{part[:40]}” is not a number.") from None
        if not math.isfinite(value):
            raise forms.ValidationError(f"“{part[:40]}” is not a finite number.")
        values.append(value)
    return values


class FiniteDecimalField(forms.DecimalField):
    """A form DecimalField that refuses NaN and infinities as it reads them.

    Django's checks finiteness in ``validate``, after ``has_changed`` has compared the value
    read with the initial one: ``Decimal("sNaN") != Decimal("0.6")`` raises
    InvalidOperation, a 500 for a typed "sNaN".
    """

    def to_python(self, value: Any) -> Decimal | None:  # type: ignore[override]  # stubs say int
        number = super().to_python(value)
        if number is not None and not number.is_finite():
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        return number
