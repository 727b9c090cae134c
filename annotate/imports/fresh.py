"""The fresh path: an import into a study with no prompts yet ``COPY``s its rows straight
into the tables (PostgreSQL), with ids drawn from the sequences and bins computed here
(:func:`import_fresh`, when :func:`fresh_path_fits`)."""

from __future__ import annotations

import time
from bisect import bisect_right
from collections.abc import Callable
from typing import IO, Any

import msgspec
from django.db import connection

from ..models import JudgeScore, Prompt, Response, Study
from .apply import trust_foreign_keys
from .binning import CutsCollector, fix_cuts
from .parsing import MAX_PROBLEMS, Problems, parse_csv, parse_jsonl, physical_lines, too_deep
from .report import ImportReport, lap, refuse_empty
from .schema import Schema
from .staging import pipelined, stage


def fresh_path_fits(stream: IO[bytes], study: Study) -> bool:
    """Whether the import may ``COPY`` straight into the tables (PostgreSQL, empty study).

    The stream must be seekable: the judge cuts may need a first pass over the scores, and a
    clash of ids sends the import back to the staged path, which reads the file again.
    """
    if connection.vendor != "postgresql":
        return False
    try:
        seekable = stream.seekable()
    except (AttributeError, ValueError):
        return False
    return seekable and not Prompt.objects.filter(study=study).exists()


def import_fresh(
    cursor: Any,
    stream: IO[bytes],
    study: Study,
    schema: Schema,
    report: ImportReport,
    batch_size: int,
    max_problems: int,
    progress: Callable[[int], None] | None,
    progress_every: int,
) -> None:
    """Import into a study with no prompts yet: ``COPY`` into the tables themselves.

    Nothing is stored to compare with, so there is nothing to stage: every row is created.
    Prompt and response ids are drawn from their sequences in Python, so that responses and
    scores can name their parents without a join, and bins and cells are computed here,
    which needs the cuts first: a dimension whose cuts come from this import's quantiles
    costs one light pass over the scores before any write. The unique constraints still
    guard everything; an id that appears twice in the file raises ``IntegrityError`` in the
    ``COPY``, and the caller then goes the staged way, which names the lines.
    """
    started = time.perf_counter()
    fmt = report.format
    collector = CutsCollector(schema.dimensions)
    if collector.pending:
        start = stream.tell()
        _sample_scores(stream, fmt, schema, collector, batch_size)
        stream.seek(start)
        report.phases["sample_scores"] = lap(started)
    cuts = fix_cuts(schema, collector.cuts(), report)
    trusted = trust_foreign_keys(cursor, study, schema, report)
    writer = _FreshWriter(cursor, study, schema, cuts)
    sink = Problems(report.file, max_problems, fatal_lines=fmt == "csv")
    parse = parse_jsonl if fmt == "jsonl" else parse_csv
    chunks = pipelined(
        parse(stream, schema, sink), stream, progress_every, positions=progress is not None
    )
    stage(chunks, writer.write, None, sink, report, batch_size, progress)
    sink.raise_if_any()
    refuse_empty(report)
    if trusted:
        cursor.execute("SET LOCAL session_replication_role = origin")
    report.phases["read_and_write"] = round(lap(started) - sum(report.phases.values()), 3)
    report.prompts.created = report.lines
    report.responses.created = report.lines * len(schema.arms)
    report.scores.created = report.responses.created * len(schema.rules)


class _LightScore(msgspec.Struct):
    value: float


class _LightResponse(msgspec.Struct):
    scores: dict[str, float | _LightScore]


class _LightLine(msgspec.Struct):
    responses: dict[str, _LightResponse]


_decode_scores = msgspec.json.Decoder(_LightLine).decode


def _sample_scores(
    stream: IO[bytes], fmt: str, schema: Schema, collector: CutsCollector, batch_size: int
) -> None:
    """Feed ``collector`` the file's scores, in the order and batches of a full import.

    A line that does not decode is passed over: the full pass that follows reports it, and
    the import then fails whatever the cuts. In a file without problems the collector sees
    what the staged import feeds it, so both paths fix the same cuts.
    """
    rows: list[tuple[Any, ...]] = []
    lines = 0
    if fmt == "jsonl":
        arms = [key for key, _ in schema.arms]
        keys = [rule.key for rule in schema.rules]
        for _, _, raw in physical_lines(stream, Problems("", MAX_PROBLEMS)):
            if raw.isspace() or too_deep(raw) is not None:
                continue
            try:
                responses = _decode_scores(raw).responses
                line_rows = []
                for arm in arms:
                    scores = responses[arm].scores
                    values = [scores[k] for k in keys]
                    row: list[Any] = [None] * 5
                    for v in values:
                        row.append(v if isinstance(v, float) else v.value)
                        row.append(None)
                    line_rows.append(tuple(row))
            except (msgspec.DecodeError, UnicodeDecodeError, KeyError):
                continue
            rows.extend(line_rows)
            lines += 1
            if lines >= batch_size:
                collector.feed(rows)
                rows, lines = [], 0
    else:
        for _, response_rows in parse_csv(stream, schema, Problems("", MAX_PROBLEMS)):
            rows.extend(response_rows)
            lines += 1
            if lines >= batch_size:
                collector.feed(rows)
                rows, lines = [], 0
    if rows:
        collector.feed(rows)


class _FreshWriter:
    """Batches ``COPY``'d into the prompt, response and judge score tables of a fresh study."""

    # Text COPY: binary measured no faster on either side (index upkeep dominates).

    def __init__(self, cursor: Any, study: Study, schema: Schema, cuts: list[list[float]]):
        self.cursor, self.sid, self.cuts = cursor, study.pk, cuts
        self.n_arms = len(schema.arms)
        self.dims = [rule.id for rule in schema.rules]
        self.prompt_seq = self._sequence(Prompt._meta.db_table)
        self.response_seq = self._sequence(Response._meta.db_table)
        P, R, J = Prompt._meta.db_table, Response._meta.db_table, JudgeScore._meta.db_table  # noqa: N806
        self.copy_prompts = (
            f"COPY {P} (id, study_id, region_id, external_id, text, metadata) FROM STDIN"
        )
        self.copy_responses = (
            f"COPY {R} (id, prompt_id, arm_id, study_id, region_id, text, metadata, cell) "
            "FROM STDIN"
        )
        self.copy_scores = f"COPY {J} (response_id, dimension_id, judge, value, bin) FROM STDIN"

    def _sequence(self, table: str) -> str:
        self.cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
        return str(self.cursor.fetchone()[0])

    def _ids(self, sequence: str, n: int) -> range | list[int]:
        """``n`` fresh ids; one range when no other session drew from the sequence meanwhile."""
        self.cursor.execute(
            "SELECT min(v), max(v) FROM (SELECT nextval(%s) AS v FROM generate_series(1, %s)) s",
            [sequence, n],
        )
        low, high = self.cursor.fetchone()
        if high - low + 1 == n:  # n distinct values in [low, high]: all of them
            return range(low, high + 1)
        self.cursor.execute(  # interleaved with another session: draw a list instead
            "SELECT nextval(%s) FROM generate_series(1, %s)", [sequence, n]
        )
        return [row[0] for row in self.cursor.fetchall()]

    def write(self, prompts: list[tuple[Any, ...]], responses: list[tuple[Any, ...]]) -> None:
        # psycopg's COPY raises psycopg's errors: make a clash of ids Django's IntegrityError.
        with connection.wrap_database_errors:
            self._write(prompts, responses)

    def _write(self, prompts: list[tuple[Any, ...]], responses: list[tuple[Any, ...]]) -> None:
        # The COPY text is formatted here, a line per row: a third of the CPU time of
        # psycopg's write_row per row (measured), and the parser thread needs the GIL too.
        cursor, sid, n_arms = self.cursor, self.sid, self.n_arms
        prompt_ids = self._ids(self.prompt_seq, len(prompts))
        response_ids = self._ids(self.response_seq, len(responses))
        head = f"{sid}\t"
        lines = [
            f"{pk}\t{head}{region_id}\t{_copy_text(ext_id)}\t{_copy_text(text)}\t"
            f"{_copy_text(meta)}\n"
            for (_, ext_id, region_id, text, meta), pk in zip(prompts, prompt_ids, strict=True)
        ]
        with cursor.copy(self.copy_prompts) as copy:
            copy.write("".join(lines))
        cuts = self.cuts
        cols = range(5, 5 + 2 * len(cuts), 2)
        region_of = [p[2] for p in prompts]
        lines, scores = [], []
        judges: dict[str, str] = {}
        dims = list(zip(self.dims, cols, strict=True))
        for k, (row, pk) in enumerate(zip(responses, response_ids, strict=True)):
            bins = [bisect_right(c, row[col]) for c, col in zip(cuts, cols, strict=True)]
            lines.append(
                f"{pk}\t{prompt_ids[k // n_arms]}\t{row[2]}\t{head}{region_of[k // n_arms]}\t"
                f"{_copy_text(row[3])}\t{_copy_text(row[4])}\t{'.'.join(map(str, bins))}\n"
            )
            for (dim, col), b in zip(dims, bins, strict=True):
                judge = row[col + 1]
                escaped = judges.get(judge)
                if escaped is None:
                    escaped = judges[judge] = _copy_text(judge)
                scores.append(f"{pk}\t{dim}\t{escaped}\t{row[col]!r}\t{b}\n")
        with cursor.copy(self.copy_responses) as copy:
            copy.write("".join(lines))
        with cursor.copy(self.copy_scores) as copy:
            copy.write("".join(scores))


def _copy_text(value: str) -> str:
    """``value`` as a field of PostgreSQL's COPY text format (backslash escapes)."""
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        value = (
            value.replace("\\", "\\\\")
            .replace("\t", "\\t")
            .replace("\n", "\\n")
            .replace("\r", "\\r")
        )
    return value
