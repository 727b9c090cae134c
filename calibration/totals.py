"""Responses per cell, stored (:class:`~calibration.models.CellTotal`) so that no request
counts a study's responses: what selection draws over, and every page's figure of a study's
size.

A fresh import stores the totals it counted as it wrote (:func:`store_cell_totals`); a
re-import recounts in its transaction (:func:`refresh_cell_totals`); a reader recounts
when the rows are missing (re-binning drops them) or a response newer than their watermark
exists (:func:`stored_totals`).
"""

from __future__ import annotations

import json
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from annotate.models import Response, Study
from calibration.models import CellTotal

__all__ = [
    "FENCE_EVERY",
    "CellKey",
    "Fences",
    "cell_totals",
    "fence_every",
    "forget",
    "refresh_cell_totals",
    "store_cell_totals",
    "stored_totals",
    "study_extent",
]

CellKey = tuple[int, int, str]

#: A cell's fences are its ids at ranks 0, FENCE_EVERY, 2·FENCE_EVERY, …: the queue's uniform
#: draw of the response at rank k starts from fence k // FENCE_EVERY and scans at most
#: FENCE_EVERY entries of ``response_pick_idx``, however large the cell.
FENCE_EVERY = 1024


def fence_every() -> int:
    """:data:`FENCE_EVERY`, for an importer that counts the fences as it writes."""
    return FENCE_EVERY


def refresh_cell_totals(*, study: Study) -> int:
    """Recount the responses of every cell of ``study`` into :class:`CellTotal`; returns cells.

    One aggregate over the study's responses (an index-only scan of ``response_pick_idx``
    on PostgreSQL: 0.3–1.4 s at a million responses). Picks call it when the totals are
    missing or a response was added since; an import may call it inside its transaction
    so that the totals commit with the responses (and catch cells changed in place). Two
    concurrent refreshes of one study end with the same rows (upsert, then delete what is
    gone).
    """
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    table, response = CellTotal._meta.db_table, Response._meta.db_table
    with transaction.atomic(), connection.cursor() as cursor:
        # Read the watermark first: a response committed during the count is then either
        # counted or above it (recounted by the next pick), never lost.
        cursor.execute(f"SELECT MAX(id) FROM {response}")
        last = cursor.fetchone()[0] or 0
        cursor.execute(
            f"""INSERT INTO {table} (study_id, arm_id, region_id, cell, responses, min_id,
                                     max_id, refreshed_at, last_response_id)
                SELECT study_id, arm_id, region_id, cell, COUNT(*), MIN(id), MAX(id), %s, %s
                FROM {response}
                WHERE study_id = %s GROUP BY study_id, arm_id, region_id, cell
                {_UPSERT}""",
            [now, last, study.pk],
        )
        cells = cursor.rowcount
        cursor.execute(
            f"DELETE FROM {table} WHERE study_id = %s AND refreshed_at <> %s", [study.pk, now]
        )
        # The fences: each cell's ids at ranks 0, F, 2F, … (a second pass, in the order of
        # response_pick_idx, so without a sort on PostgreSQL).
        cursor.execute(
            f"""SELECT arm_id, region_id, cell, id FROM (
                    SELECT arm_id, region_id, cell, id, ROW_NUMBER() OVER (
                        PARTITION BY arm_id, region_id, cell ORDER BY id) - 1 AS rank
                    FROM {response} WHERE study_id = %s) ranked
                WHERE rank %% %s = 0 ORDER BY arm_id, region_id, cell, id""",
            [study.pk, FENCE_EVERY],
        )
        fences: dict[CellKey, list[int]] = {}
        for arm, region, cell, pk in cursor.fetchall():
            fences.setdefault((arm, region, cell), []).append(pk)
        _store_fences(cursor, study, fences)
    return cells


def _store_fences(cursor: Any, study: Study, fences: dict[CellKey, list[int]]) -> None:
    jsonb = "::jsonb" if connection.vendor == "postgresql" else ""
    cursor.executemany(
        f"UPDATE {CellTotal._meta.db_table} SET fences = %s{jsonb} "
        "WHERE study_id = %s AND arm_id = %s AND region_id = %s AND cell = %s",
        [
            (json.dumps({"every": FENCE_EVERY, "ids": ids}), study.pk, a, g, c)
            for (a, g, c), ids in sorted(fences.items())
        ],
    )


_UPSERT = """ON CONFLICT (study_id, arm_id, region_id, cell)
    DO UPDATE SET responses = EXCLUDED.responses, min_id = EXCLUDED.min_id,
                  max_id = EXCLUDED.max_id, refreshed_at = EXCLUDED.refreshed_at,
                  last_response_id = EXCLUDED.last_response_id"""


def store_cell_totals(
    *,
    study: Study,
    totals: dict[CellKey, tuple[int, int, int, list[int]]],
    last_response_id: int,
) -> None:
    """Store totals an import counted itself: ``{(arm, region, cell): (n, min id, max id,
    fences)}``, the fences the ids at ranks 0, ``FENCE_EVERY``, … of the cell.

    For a study whose responses were all just written by the caller, in its transaction,
    with ids up to ``last_response_id``: what :func:`refresh_cell_totals` would count, at
    no scan. Another import committing higher ids in the meantime only makes the next pick
    recount (the watermark is then below the table's highest id).
    """
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    table = CellTotal._meta.db_table
    rows = [
        (study.pk, a, g, c, n, lo, hi, now, last_response_id)
        for (a, g, c), (n, lo, hi, _) in sorted(totals.items())
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(
            f"""INSERT INTO {table} (study_id, arm_id, region_id, cell, responses, min_id,
                                     max_id, refreshed_at, last_response_id)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) {_UPSERT}""",
            rows,
        )
        cursor.execute(
            f"DELETE FROM {table} WHERE study_id = %s AND refreshed_at <> %s", [study.pk, now]
        )
        _store_fences(cursor, study, {key: t[3] for key, t in totals.items()})


# Per process: each study's rows as last read, keyed by their refresh (``refreshed_at``, the
# same on every row of one refresh). A read then costs one row and a primary-key probe.
_rows_cache: dict[int, tuple[Any, list[tuple[Any, ...]]]] = {}


def forget(study_id: int | None = None) -> None:
    """Drop this process's cached rows (of one study, or of all)."""
    if study_id is None:
        _rows_cache.clear()
    else:
        _rows_cache.pop(study_id, None)


Fences = tuple[int, tuple[int, ...]]  # (every, the ids at ranks 0, every, 2·every, …)


def _fence_list(value: Any) -> Fences | None:
    """A row's fences as read back (JSON text on SQLite, decoded from jsonb): stored with
    the spacing they were counted at, so a change of FENCE_EVERY cannot misplace them."""
    if value is None:
        return None
    doc = json.loads(value) if isinstance(value, str) else value
    return int(doc["every"]), tuple(int(pk) for pk in doc["ids"])


def stored_totals(study: Study) -> list[tuple[Any, ...]]:
    """The study's stored rows ``(arm, region, cell, n, min id, max id, refreshed_at,
    fences)``, recounted first if stale.

    Stale: no rows (never counted, re-binned, or no responses, which costs nothing to
    count), or a response with an id above the watermark exists (an import since; one
    primary-key probe). On PostgreSQL one request recounts while the others keep using
    the previous totals (a try-lock), so a burst of picks after an import pays it once.
    The rows of a refresh this process has read already are not read again: a study has
    hundreds of cells, and every pick asks.
    """
    table, response = CellTotal._meta.db_table, Response._meta.db_table
    probe = f"""SELECT refreshed_at, last_response_id, (SELECT MAX(id) FROM {response})
                FROM {table} WHERE study_id = %s LIMIT 1"""
    sql = f"""SELECT arm_id, region_id, cell, responses, min_id, max_id, refreshed_at, fences
              FROM {table} WHERE study_id = %s"""
    with connection.cursor() as cursor:
        cursor.execute(probe, [study.pk])
        head = cursor.fetchone()
        stale = head is None or (head[2] or 0) > head[1]
        if stale and head is not None and connection.vendor == "postgresql":
            # Key: (class id of the table, study): a namespace of its own.
            cursor.execute(
                "SELECT pg_try_advisory_xact_lock(%s::regclass::oid::int, %s)", [table, study.pk]
            )
            stale = bool(cursor.fetchone()[0])
        if stale:
            refresh_cell_totals(study=study)
        elif head is not None:
            cached = _rows_cache.get(study.pk)
            if cached is not None and cached[0] == head[0]:
                return cached[1]
        cursor.execute(sql, [study.pk])
        rows = [(*row[:7], _fence_list(row[7])) for row in cursor.fetchall()]
    if rows:
        _rows_cache[study.pk] = (rows[0][6], rows)
    return rows


def cell_totals(*, study: Study) -> dict[CellKey, int]:
    """Responses per ``(arm, region, cell)``, from the stored totals: no scan of the study."""
    return {(a, g, c): n for a, g, c, n, *_ in stored_totals(study)}


def study_extent(*, study: Study) -> tuple[int, int, int]:
    """``(responses, lowest id, highest id)`` of the study, from the stored totals."""
    rows = stored_totals(study)
    if not rows:
        return 0, 0, 0
    return (
        sum(r[3] for r in rows),
        min(r[4] for r in rows if r[4] is not None),
        max(r[5] for r in rows if r[5] is not None),
    )
