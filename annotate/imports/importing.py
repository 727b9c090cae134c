"""Import a study's responses and judge scores from JSONL or long CSV.

One service, :func:`import_file`, behind three entry points (``manage.py importstudy``,
``POST /api/studies/{slug}/imports/`` and the admin upload page). The file formats are
documented in docs/importing.md.

How it works, and why:

* **Streaming, constant memory.** The file is read line by line (never whole). Each line is
  parsed and validated, then staged in batches into temporary tables: PostgreSQL gets them
  through ``COPY``, SQLite through ``executemany``. Python keeps one batch and a bounded
  reservoir of scores (for quantile cuts), whatever the file size. Duplicate ids are found
  by the database in the staging table, not in a Python set.
* **A fresh study goes straight in.** On PostgreSQL, an import into a study that has no
  prompts yet has nothing to compare with: its rows are ``COPY``'d into the tables
  themselves, with ids drawn from the sequences beforehand and bins computed in Python
  (:func:`.fresh.import_fresh`). A clash of ids sends it back to the staged path.
* **Two cores.** Reading and parsing run in a thread while the database writes the previous
  batch (:func:`.staging.pipelined`).
* **Atomic.** Staging and the set-based writes that follow (``UPDATE … FROM`` then
  ``INSERT … SELECT … ON CONFLICT``) run in one transaction: a bad line 999,999 leaves the
  database as it was.
* **Idempotent.** Importing the same file again changes nothing (the report says
  "unchanged"). A new judge score for a known response updates the score, its bin and the
  response's cell. A *text* that differs from the stored one (prompt or response) is refused:
  once humans have graded a response, silently changing what they graded would corrupt the
  labels. Changed ``metadata`` is updated.
* **Binning.** ``Dimension.judge_cuts`` is fixed by the first import that brings scores for
  the dimension and reused afterwards (see :func:`judge_cuts_for`).

This module runs the stages, in one transaction; each has its module beside it: ``parsing``
(the formats, line by line), ``schema`` (what a line is checked against), ``staging`` (the
temporary tables and the reading thread), ``binning`` (judge cuts), ``apply`` (the set-based
writes), ``fresh`` (the ``COPY`` path of a fresh study) and ``report`` (problems, the report).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from django.db import IntegrityError, connection, transaction

from .. import hooks
from ..models import Study
from .apply import apply
from .binning import CutsCollector, judge_cuts_for
from .fresh import fresh_path_fits, import_fresh
from .parsing import (
    CSV_COLUMNS,
    DEFAULT_JUDGE,
    FORMATS,
    MAX_JSON_DEPTH,
    MAX_LINE_BYTES,
    MAX_PROBLEMS,
    Problems,
    ReadPosition,
    format_of,
    parse_csv,
    parse_jsonl,
)
from .report import Counts, ImportFailed, ImportProblem, ImportReport, lap, refuse_empty
from .schema import Schema
from .staging import Stager, pipelined, stage

__all__ = [
    "CSV_COLUMNS",
    "DEFAULT_JUDGE",
    "FORMATS",
    "MAX_JSON_DEPTH",
    "MAX_LINE_BYTES",
    "Counts",
    "ImportFailed",
    "ImportProblem",
    "ImportReport",
    "import_file",
    "judge_cuts_for",
]


DEFAULT_BATCH_SIZE = 5000
PROGRESS_EVERY = 1000  # interactions between two calls of import_file's progress callback


def import_file(
    path_or_fileobj: str | os.PathLike[str] | IO[bytes],
    *,
    study: Study,
    filename: str | None = None,
    fmt: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_problems: int = MAX_PROBLEMS,
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Import a JSONL or long-CSV file of interactions into ``study``, all or nothing.

    Parameters
    ----------
    path_or_fileobj
        A path, or a file object opened in binary mode (an uploaded file works).
    study
        The study the file belongs to; its arms, dimensions and regions must exist.
    filename
        Name used in messages and to guess the format (default: the path's or file's name).
    fmt
        ``"jsonl"`` or ``"csv"``; by default from the extension (``.jsonl``, ``.ndjson``,
        ``.csv``).
    batch_size
        Interactions staged per round trip to the database.
    max_problems
        Stop after this many problems (the first is always reported).
    progress
        Called as ``progress(bytes_read, total_bytes)`` every ``PROGRESS_EVERY``
        interactions and once when the whole file is read, before the database writes
        (``total_bytes`` is 0 when the size cannot be told).

    Raises
    ------
    ImportFailed
        With one :class:`ImportProblem` per problem found; the database is unchanged.
    """
    if isinstance(path_or_fileobj, str | os.PathLike):
        path = Path(path_or_fileobj)
        with path.open("rb") as opened:
            return import_file(
                opened,
                study=study,
                filename=filename or path.name,
                fmt=fmt,
                batch_size=batch_size,
                max_problems=max_problems,
                progress=progress,
            )
    stream = path_or_fileobj
    name = filename or os.path.basename(str(getattr(stream, "name", "") or "upload"))
    fmt = format_of(name, fmt)
    started = time.perf_counter()
    report = ImportReport(file=name, format=fmt, study=study.slug)
    tell = _progress_reporter(stream, progress)
    with transaction.atomic():
        # Imports of one study run one after another (a no-op on SQLite, whose write
        # transactions are serial anyway), so the existence checks below cannot race.
        Study.objects.select_for_update().filter(pk=study.pk).first()
        schema = Schema.of(study)
        if why := schema.emptiness():
            raise ImportFailed([ImportProblem(name, 1, "study", why)])
        with connection.cursor() as cursor:
            if fresh_path_fits(stream, study):
                start = stream.tell()
                try:
                    with transaction.atomic():
                        import_fresh(
                            cursor,
                            stream,
                            study,
                            schema,
                            report,
                            batch_size,
                            max_problems,
                            tell,
                            PROGRESS_EVERY,
                        )
                except IntegrityError:
                    # An id twice in the file (a unique key clashed in the COPY): the staged
                    # import finds it again and names both lines.
                    stream.seek(start)
                    report = ImportReport(file=name, format=fmt, study=study.slug)
                else:
                    return _finished(report, started)
            sink = Problems(name, max_problems, fatal_lines=fmt == "csv")
            parse = parse_jsonl if fmt == "jsonl" else parse_csv
            stager = Stager.for_connection(cursor, [rule.id for rule in schema.rules])
            collector = CutsCollector(schema.dimensions)
            read = ReadPosition()
            chunks = pipelined(parse(stream, schema, sink, read), read, PROGRESS_EVERY)
            stage(chunks, stager.write, collector, sink, report, batch_size, tell)
            sink.raise_if_any()
            refuse_empty(report)
            report.phases["read_and_stage"] = lap(started)
            stager.cuts = collector.cuts()
            stager.analyze()
            apply(cursor, stager, study, schema, report, sink)
            # On failure the rollback removes the staging tables with everything else.
            stager.drop()
            # A re-import may move responses between cells in place; selection's stored
            # per-cell totals must follow in the same transaction. (New responses alone,
            # as in the fresh path, are caught by the totals' own watermark.)
            hooks.refresh_cell_totals(study=study)
            report.phases["write"] = round(lap(started) - report.phases["read_and_stage"], 3)
    return _finished(report, started)


def _finished(report: ImportReport, started: float) -> ImportReport:
    report.seconds = lap(started)
    # PostgreSQL checks the (deferred) foreign keys of every new row at commit.
    report.phases["commit"] = round(report.seconds - sum(report.phases.values()), 3)
    return report


def _progress_reporter(
    stream: IO[bytes], progress: Callable[[int, int], None] | None
) -> Callable[[int], None] | None:
    """``progress`` with the stream's size filled in (0 when it cannot be told)."""
    if progress is None:
        return None
    total = getattr(stream, "size", None)
    if not isinstance(total, int):
        try:
            total = os.fstat(stream.fileno()).st_size
        except (AttributeError, OSError, ValueError):
            total = 0
    size = total
    return lambda position: progress(position, size)
