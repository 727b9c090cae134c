"""Export a study's human labels as CSV or JSONL, streamed (one row per label).

Only live annotations are exported: an undone annotation has stopped counting, so its labels
are left out. Skipped annotations carry no labels and so give no rows.

The CSV is safe to open in a spreadsheet (OWASP, CSV injection): a text cell that starts with
a character a spreadsheet reads as the start of a formula gets a leading ``'``, so that
``=HYPERLINK(…)`` from an imported prompt id or a username shows as text instead of running.
JSONL is data for programs and is written as stored.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import Any, Protocol

from ..models import Label, Study

__all__ = [
    "EXPORT_FORMATS",
    "LABEL_COLUMNS",
    "iter_labels",
    "label_rows",
    "spreadsheet_safe",
    "write_labels",
]

EXPORT_FORMATS = ("csv", "jsonl")
LABEL_COLUMNS = (
    "study",
    "prompt_id",
    "region",
    "arm",
    "annotator",
    "dimension",
    "value",
    "passed",
    "status",
    "flagged",
    "created_at",
)
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}


# What Excel, LibreOffice and Google Sheets take as the start of a formula (OWASP's list: = + - @
# tab, carriage return; ASVS 1.2.10 adds NUL), with the full-width forms some versions
# normalise to them, and a line feed, which some importers drop before parsing the cell.
FORMULA_STARTS = (
    "=",
    "+",
    "-",
    "@",
    "\t",
    "\r",
    "\n",
    "\0",
    "\uff1d",
    "\uff0b",
    "\uff0d",
    "\uff20",
)


def spreadsheet_safe(value: Any) -> Any:
    """A text cell a spreadsheet will show as text: ``'`` before a formula's first character.

    Numbers and booleans pass unchanged (no column of the export holds a negative number).
    """
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


class _Writable(Protocol):
    def write(self, s: str, /) -> Any: ...


def label_rows(*, study: Study, chunk_size: int = 2000) -> Iterator[dict[str, Any]]:
    """One dict per live label, oldest annotation first, keys as in ``LABEL_COLUMNS``."""
    dimensions = {d.pk: d for d in study.dimensions.all()}
    rows = (
        Label.objects.of_live()
        .filter(annotation__study=study)
        .order_by("annotation__created_at", "annotation_id", "dimension__position", "dimension_id")
        .values_list(
            "annotation__response__prompt__external_id",
            "annotation__response__region__key",
            "annotation__response__arm__key",
            "annotation__annotator__username",
            "dimension_id",
            "value",
            "annotation__status",
            "annotation__flagged",
            "annotation__created_at",
        )
    )
    for prompt_id, region, arm, annotator, dim_id, value, status, flagged, created in rows.iterator(
        chunk_size=chunk_size
    ):
        dimension = dimensions[dim_id]
        yield {
            "study": study.slug,
            "prompt_id": prompt_id,
            "region": region,
            "arm": arm,
            "annotator": annotator,
            "dimension": dimension.key,
            "value": value,
            "passed": dimension.passes(value),
            "status": status,
            "flagged": flagged,
            "created_at": created.isoformat(),
        }


class _Line:
    """A file-like object whose write returns the text, for csv.writer in a generator."""

    def write(self, value: str) -> str:
        return value


def iter_labels(*, study: Study, fmt: str) -> Iterator[str]:
    """The export as text chunks (one per row, CSV with a header), for streaming."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r}: expected one of {EXPORT_FORMATS}")
    if fmt == "csv":
        writer = csv.writer(_Line())
        yield writer.writerow(LABEL_COLUMNS)
        for row in label_rows(study=study):
            row["passed"] = int(row["passed"])
            row["flagged"] = int(row["flagged"])
            yield writer.writerow([spreadsheet_safe(v) for v in row.values()])
    else:
        for row in label_rows(study=study):
            yield json.dumps(row, ensure_ascii=False) + "\n"


def write_labels(*, study: Study, fmt: str, out: _Writable) -> int:
    """Write the export to ``out``; return the number of labels written."""
    count = -1 if fmt == "csv" else 0  # the CSV header is not a label
    for chunk in iter_labels(study=study, fmt=fmt):
        out.write(chunk)
        count += 1
    return max(count, 0)
