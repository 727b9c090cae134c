"""Staging: parsed rows written in batches (:func:`stage`) into temporary tables
(:class:`Stager`: ``COPY`` on PostgreSQL, ``executemany`` on SQLite) while a second thread
reads and parses the file (:func:`pipelined`)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterator
from contextlib import closing
from typing import Any

from django.db import connection

from .binning import CutsCollector
from .parsing import Problems, ScoresJson, Staged
from .report import ImportReport


def stage(
    chunks: Generator[tuple[list[Staged], int]],
    write: Callable[[list[tuple[Any, ...]], list[tuple[Any, ...]]], None],
    collector: CutsCollector | None,
    sink: Problems,
    report: ImportReport,
    batch_size: int,
    progress: Callable[[int], None] | None,
) -> None:
    """Write the parsed interactions in batches of ``batch_size``; stop writing at a problem."""
    prompts: list[tuple[Any, ...]] = []
    responses: list[tuple[Any, ...]] = []
    # closing: on an error the reading thread stops before the caller touches the stream.
    with closing(chunks):
        for records, position in chunks:
            report.lines += len(records)
            if not sink.items:  # else keep validating to report more problems; stop writing
                for prompt_row, response_rows in records:
                    prompts.append(prompt_row)
                    responses.extend(response_rows)
                    if len(prompts) >= batch_size:
                        if collector is not None:
                            collector.feed(responses)
                        write(prompts, responses)
                        prompts, responses = [], []
            if progress is not None:
                progress(position)
    if prompts and not sink.items:
        if collector is not None:
            collector.feed(responses)
        write(prompts, responses)


_END = object()


def pipelined(
    records: Iterator[Staged], tell: Callable[[], int], chunk: int
) -> Generator[tuple[list[Staged], int]]:
    """Yield ``(interactions, position in the stream)`` ``chunk`` at a time, parsed in a thread.

    Reading, parsing and validating run in a second thread while this one writes the
    previous chunks: the database works (in its own process) while Python parses, and the
    wait for each ``COPY`` to finish releases the GIL to the parser. The queue is bounded,
    so memory stays constant. The last chunk may be empty; it comes at the end of the file.
    ``tell`` says how far into the file the records read so far reach.
    """
    chunks: queue.Queue[Any] = queue.Queue(maxsize=4)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                chunks.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            batch: list[Staged] = []
            for record in records:
                batch.append(record)
                if len(batch) >= chunk:
                    if not put((batch, tell())):
                        return
                    batch = []
            if put((batch, tell())):
                put(_END)
        except BaseException as exc:  # noqa: BLE001 — handed to the caller's thread
            put(exc)

    worker = threading.Thread(target=work, name="baton-import-parse", daemon=True)
    worker.start()
    try:
        while True:
            item = chunks.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()  # when the caller stopped early: the worker ends at its next chunk
        worker.join()


class Stager:
    """Temporary staging tables, filled in batches."""

    prompt_table = "baton_import_prompt"
    response_table = "baton_import_response"

    def __init__(self, cursor: Any, dimension_ids: list[int]) -> None:
        self.cursor, self.n_dims = cursor, len(dimension_ids)
        self.scores_json = ScoresJson(dimension_ids)
        self.cuts: dict[int, list[float]] = {}
        self.drop()
        cursor.execute(
            f"CREATE TEMPORARY TABLE {self.prompt_table} (line integer NOT NULL, "
            "ext_id text NOT NULL, region_id bigint NOT NULL, text text NOT NULL, "
            "metadata text NOT NULL)"
        )
        # The values again beside their JSON: the bins are computed from them in SQL.
        values = "".join(f", v{i} double precision NOT NULL" for i in range(self.n_dims))
        cursor.execute(
            f"CREATE TEMPORARY TABLE {self.response_table} (line integer NOT NULL, "
            "ext_id text NOT NULL, arm_id bigint NOT NULL, text text NOT NULL, "
            f"metadata text NOT NULL, scores text NOT NULL{values})"
        )

    @staticmethod
    def for_connection(cursor: Any, dimension_ids: list[int]) -> Stager:
        if connection.vendor == "postgresql":
            return _PostgresStager(cursor, dimension_ids)
        return Stager(cursor, dimension_ids)

    def staged(self, responses: list[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
        """The staging table's rows: the parsed row's head, its scores' JSON, the values."""
        scores_json, cols = self.scores_json, slice(5, 5 + 2 * self.n_dims, 2)
        for row in responses:
            yield (*row[:5], scores_json(row), *row[cols])

    def write(self, prompts: list[tuple[Any, ...]], responses: list[tuple[Any, ...]]) -> None:
        marks = ", ".join(["%s"] * 5)
        self.cursor.executemany(f"INSERT INTO {self.prompt_table} VALUES ({marks})", prompts)
        marks = ", ".join(["%s"] * (6 + self.n_dims))
        self.cursor.executemany(
            f"INSERT INTO {self.response_table} VALUES ({marks})", self.staged(responses)
        )

    def analyze(self) -> None:
        # SQLite drives UPDATE … FROM from the target table; without these indexes every
        # target row would scan the staging table (quadratic: 100 s for 10k responses).
        self.cursor.execute(f"CREATE INDEX {self.prompt_table}_ext ON {self.prompt_table} (ext_id)")
        self.cursor.execute(
            f"CREATE INDEX {self.response_table}_ext ON {self.response_table} (ext_id, arm_id)"
        )

    def drop(self) -> None:
        for table in (self.prompt_table, self.response_table):
            self.cursor.execute(f"DROP TABLE IF EXISTS {table}")


class _PostgresStager(Stager):
    def write(self, prompts: list[tuple[Any, ...]], responses: list[tuple[Any, ...]]) -> None:
        with self.cursor.copy(f"COPY {self.prompt_table} FROM STDIN") as copy:
            for row in prompts:
                copy.write_row(row)
        with self.cursor.copy(f"COPY {self.response_table} FROM STDIN") as copy:
            for row in self.staged(responses):
                copy.write_row(row)

    def analyze(self) -> None:
        # Temporary tables are never analysed automatically; without statistics the planner
        # guesses a few rows and picks nested loops over a million.
        self.cursor.execute(f"ANALYZE {self.prompt_table}")
        self.cursor.execute(f"ANALYZE {self.response_table}")
