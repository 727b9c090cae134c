"""The fresh path: an import into a study with no prompts yet ``COPY``s its rows straight
into the tables (PostgreSQL), with ids drawn from the sequences and bins computed here
(:func:`import_fresh`, when :func:`fresh_path_fits`)."""

from __future__ import annotations

import time
from bisect import bisect_right
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, Any

import msgspec
from django.db import DEFAULT_DB_ALIAS, connection, connections

from .. import hooks
from ..models import Prompt, Response, Study
from .apply import trust_foreign_keys
from .binning import CutsCollector, fix_cuts
from .parsing import (
    MAX_PROBLEMS,
    Problems,
    ReadPosition,
    ScoresJson,
    parse_csv,
    parse_jsonl,
    physical_lines,
)
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
    Prompt and response ids are drawn from their sequences in Python, so that responses can
    name their prompts without a join, and bins and cells are computed here,
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
    writer = _FreshWriter(cursor, study, schema, cuts, batch_size)
    sink = Problems(report.file, max_problems, fatal_lines=fmt == "csv")
    parse = parse_jsonl if fmt == "jsonl" else parse_csv
    read = ReadPosition()
    chunks = pipelined(parse(stream, schema, sink, read), read, progress_every)
    try:
        stage(chunks, writer.write, None, sink, report, batch_size, progress)
    finally:
        writer.close()
    sink.raise_if_any()
    refuse_empty(report)
    # Counted while formatting: the selection's per-cell totals commit with the responses,
    # and no request recounts a study just imported.
    hooks.store_cell_totals(
        study=study,
        totals={key: (n, lo, hi, fences) for key, (n, lo, hi, fences) in writer.totals.items()},
        last_response_id=writer.last_id,
    )
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
    """Feed ``collector`` the file's scores, in the order of a full import.

    A JSONL line is decoded only when the sample keeps one of its responses
    (:meth:`CutsCollector.wanted`): past the first ``RESERVOIR_SIZE`` responses, few are.
    A line that does not decode is passed over: the full pass that follows reports it, and
    the import then fails whatever the cuts. In a file without problems the collector sees
    what the staged import feeds it, so both paths fix the same cuts.
    """
    if fmt == "jsonl":
        arms = [key for key, _ in schema.arms]
        keys = [rule.key for rule in schema.rules]
        n_arms = len(arms)
        for _, _, raw in physical_lines(stream, Problems("", MAX_PROBLEMS)):
            if raw.isspace():
                continue
            if collector.index + n_arms <= collector.wanted():
                collector.skip(n_arms)
                continue
            try:
                responses = _decode_scores(raw).responses
                line_rows = []
                for arm in arms:
                    scores = responses[arm].scores
                    row: list[Any] = [None] * 5
                    for k in keys:
                        v = scores[k]
                        row.append(v if isinstance(v, float) else v.value)
                        row.append(None)
                    line_rows.append(tuple(row))
            except (msgspec.DecodeError, UnicodeDecodeError, KeyError, RecursionError):
                continue
            collector.feed(line_rows)
        return
    rows: list[tuple[Any, ...]] = []
    for _, response_rows in parse_csv(stream, schema, Problems("", MAX_PROBLEMS)):
        rows.extend(response_rows)
        if len(rows) >= batch_size:
            collector.feed(rows)
            rows = []
    if rows:
        collector.feed(rows)


class _FreshWriter:
    """Batches ``COPY``'d into the prompt and response tables of a fresh study.

    The database side runs in a thread of its own (one at a time, in order): while
    PostgreSQL takes batch ``k``, this thread formats batch ``k + 1``. Without it the two
    took turns, and the import lasted as long as both sides' CPU time added up (measured).
    Each batch's ids are drawn two batches ahead, by the same thread, so formatting never
    waits for them; the ids of the batches drawn but never written are left unused (a
    sequence may have gaps). :meth:`close` waits for the last ``COPY`` and raises its error.
    """

    # Text COPY: binary measured no faster on either side (index upkeep dominates).

    def __init__(
        self, cursor: Any, study: Study, schema: Schema, cuts: list[list[float]], batch_size: int
    ):
        self.cursor, self.sid, self.cuts = cursor, study.pk, cuts
        self.n_arms = len(schema.arms)
        self.batch_size = batch_size
        self.scores_json = ScoresJson([rule.id for rule in schema.rules], escape=_copy_text)
        self.prompt_seq = self._sequence(Prompt._meta.db_table)
        self.response_seq = self._sequence(Response._meta.db_table)
        P, R = Prompt._meta.db_table, Response._meta.db_table  # noqa: N806
        self.copy_prompts = (
            f"COPY {P} (id, study_id, region_id, external_id, text, metadata) FROM STDIN"
        )
        self.copy_responses = (
            f"COPY {R} (id, prompt_id, arm_id, study_id, region_id, text, metadata, cell, "
            "scores) FROM STDIN"
        )
        # The connection object itself: ``connection`` is per thread.
        self.db = connections[DEFAULT_DB_ALIAS]
        self.pipe = ThreadPoolExecutor(max_workers=1, thread_name_prefix="baton-import-copy")
        self.ids: deque[Future[tuple[range | list[int], range | list[int]]]] = deque()
        self.copies: deque[Future[None]] = deque()
        # Responses written per (arm, region, cell): [count, lowest id, highest id, fences]
        # (the ids at ranks 0, fence_every, …: hooks.store_cell_totals).
        self.totals: dict[tuple[int, int, str], list[Any]] = {}
        self.fence_every = hooks.fence_every()
        self.last_id = 0
        for _ in range(2):
            self.ids.append(self.pipe.submit(self._draw))

    def _sequence(self, table: str) -> str:
        self.cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
        return str(self.cursor.fetchone()[0])

    def _draw(self) -> tuple[range | list[int], range | list[int]]:
        """Ids for one full batch: its prompts and its responses."""
        n = self.batch_size
        return self._ids(self.prompt_seq, n), self._ids(self.response_seq, n * self.n_arms)

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
        if len(prompts) > self.batch_size or len(responses) != len(prompts) * self.n_arms:
            raise ValueError(
                f"a batch of {len(prompts)} prompts and {len(responses)} responses; at most "
                f"{self.batch_size} prompts with {self.n_arms} responses each were expected"
            )
        prompt_ids, response_ids = self.ids.popleft().result()
        payloads = self._format(prompts, responses, prompt_ids, response_ids)
        while len(self.copies) > 1:  # at most one batch waiting behind the one being written
            self.copies.popleft().result()
        self.copies.append(self.pipe.submit(self._copy, payloads))
        self.ids.append(self.pipe.submit(self._draw))

    def close(self) -> None:
        """Wait for every ``COPY``; raise the first one's error."""
        try:
            while self.copies:
                self.copies.popleft().result()
        finally:
            self.pipe.shutdown(wait=True, cancel_futures=True)

    def _copy(self, payloads: tuple[str, str]) -> None:
        # psycopg's COPY raises psycopg's errors: make a clash of ids Django's IntegrityError.
        with self.db.wrap_database_errors:
            for sql, payload in zip(
                (self.copy_prompts, self.copy_responses), payloads, strict=True
            ):
                with self.cursor.copy(sql) as copy:
                    copy.write(payload)

    def _format(
        self,
        prompts: list[tuple[Any, ...]],
        responses: list[tuple[Any, ...]],
        prompt_ids: range | list[int],
        response_ids: range | list[int],
    ) -> tuple[str, str]:
        # The COPY text is formatted here, a line per row: a third of the CPU time of
        # psycopg's write_row per row (measured), and the parser thread needs the GIL too.
        sid, n_arms = self.sid, self.n_arms
        head = f"{sid}\t"
        lines = [
            f"{pk}\t{head}{region_id}\t{_copy_text(ext_id)}\t{_copy_text(text)}\t"
            f"{_copy_text(meta)}\n"
            for (_, ext_id, region_id, text, meta), pk in zip(prompts, prompt_ids, strict=False)
        ]
        prompt_lines = "".join(lines)
        cuts = self.cuts
        end = 5 + 2 * len(cuts)
        digits = [str(b) for b in range(max((len(c) for c in cuts), default=0) + 1)]
        scores_json = self.scores_json
        totals, fence_every = self.totals, self.fence_every
        lines = []
        add = lines.append
        pks = iter(response_ids)
        pk = 0
        for p, (_, _, region_id, _, _), prompt_id in zip(
            range(len(prompts)), prompts, prompt_ids, strict=False
        ):
            tail = f"\t{prompt_id}\t"
            region = f"\t{head}{region_id}\t"
            for row in responses[p * n_arms : (p + 1) * n_arms]:
                pk = next(pks)
                cell = ".".join(
                    [digits[bisect_right(c, v)] for c, v in zip(cuts, row[5:end:2], strict=True)]
                )
                add(
                    f"{pk}{tail}{row[2]}{region}{_copy_text(row[3])}\t"
                    f"{_copy_text(row[4])}\t{cell}\t{scores_json(row)}\n"
                )
                total = totals.get(key := (row[2], region_id, cell))
                if total is None:
                    totals[key] = [1, pk, pk, [pk]]
                else:  # ids grow within a batch and from one batch to the next
                    if total[0] % fence_every == 0:
                        total[3].append(pk)
                    total[0] += 1
                    total[2] = pk
        self.last_id = max(self.last_id, pk)
        return prompt_lines, "".join(lines)


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
