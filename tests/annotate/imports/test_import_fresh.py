"""The fresh-study import (PostgreSQL: COPY straight into the tables) against the staged one.

On PostgreSQL an import into a study without prompts, from a seekable file, copies its rows
straight into the tables; any other import (and every import on SQLite) goes through the
staging tables. Both must store the same thing and refuse the same files.
"""

from __future__ import annotations

import io
import random
from typing import Any

import pytest
from django.db import connection

from annotate.imports import binning, fresh
from annotate.imports.importing import DEFAULT_BATCH_SIZE, ImportFailed, import_file
from annotate.imports.schema import Schema
from annotate.models import Dimension, Prompt, Response, Study
from tests.annotate.imports.import_helpers import csv_rows, interaction, jsonl, snapshot
from tests.factories import make_study
from tests.scores import score_rows

pytestmark = pytest.mark.django_db


class OneWayStream(io.RawIOBase):
    """A file that cannot seek (a pipe, a socket): the importer must read it once."""

    def __init__(self, data: bytes) -> None:
        self._inner = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, buffer: Any) -> int:
        return self._inner.readinto(buffer)


def continuous_study(slug: str) -> Study:
    study = make_study(slug=slug)
    Dimension.objects.filter(study=study, key="correctness").update(
        judge_score_type="continuous", judge_min=0, judge_max=1, judge_bins=4
    )
    return study


def varied_file(n: int) -> bytes:
    rng = random.Random(5)
    lines = []
    for i in range(n):
        line = interaction(i, region="eu" if i % 3 else "us", metadata={"ticket": i})
        for arm, resp in line["responses"].items():
            resp["scores"]["correctness"] = round(rng.random(), 3)
            resp["text"] += ' with "quotes", a tab\there, a backslash \\ and\na new line'
            if arm == "cand2":
                resp["scores"]["refusal"] = {"value": i % 2, "judge": "other-judge"}
                resp["metadata"] = {"latency_ms": i}
        if i % 4 == 0:
            line["judge"] = "judge-v2"
        lines.append(line)
    return jsonl(*lines).getvalue()


def stored(study: Study) -> dict[str, list[tuple[Any, ...]]]:
    """What an import wrote, by external keys (ids differ between studies)."""
    return {
        "prompts": sorted(
            Prompt.objects.filter(study=study).values_list(
                "external_id", "region__key", "text", "metadata"
            )
        ),
        "responses": sorted(
            Response.objects.filter(study=study).values_list(
                "prompt__external_id", "arm__key", "region__key", "text", "metadata", "cell"
            )
        ),
        "scores": score_rows(study, external=True),
        "cuts": sorted(Dimension.objects.filter(study=study).values_list("key", "judge_cuts")),
    }


def test_a_fresh_import_stores_what_the_staged_import_stores(monkeypatch):
    # A small reservoir and small batches, so that the sampled quantile cuts depend on the
    # order and batching in which the scores are fed: both paths must feed them alike.
    monkeypatch.setattr(binning, "RESERVOIR_SIZE", 17)
    data = varied_file(40)
    fresh, staged = continuous_study("fresh"), continuous_study("staged")

    by_copy = import_file(io.BytesIO(data), study=fresh, filename="a.jsonl", batch_size=7)
    by_staging = import_file(OneWayStream(data), study=staged, filename="a.jsonl", batch_size=7)

    if connection.vendor == "postgresql":
        assert "read_and_write" in by_copy.phases and "sample_scores" in by_copy.phases
    assert "read_and_stage" in by_staging.phases
    assert by_copy.cuts_fixed == by_staging.cuts_fixed
    assert len(set(by_copy.cuts_fixed["correctness"])) == 3
    for report in (by_copy, by_staging):
        assert (report.prompts.created, report.responses.created, report.scores.created) == (
            40,
            120,
            360,
        )
    assert stored(fresh) == stored(staged)
    texts = Response.objects.filter(study=fresh).values_list("text", flat=True)
    assert all(t.endswith('"quotes", a tab\there, a backslash \\ and\na new line') for t in texts)


def test_a_fresh_csv_import_stores_what_the_staged_import_stores(monkeypatch):
    monkeypatch.setattr(binning, "RESERVOIR_SIZE", 5)
    # csv_rows scores correctness n % 2: as a continuous judge, that needs quantile cuts.
    data = csv_rows(*range(12)).encode()
    fresh, staged = continuous_study("fresh-csv"), continuous_study("staged-csv")
    by_copy = import_file(io.BytesIO(data), study=fresh, filename="a.csv", batch_size=5)
    by_staging = import_file(OneWayStream(data), study=staged, filename="a.csv", batch_size=5)
    if connection.vendor == "postgresql":
        assert "sample_scores" in by_copy.phases
    assert by_copy.cuts_fixed == by_staging.cuts_fixed
    assert by_copy.cuts_fixed["correctness"] == [0.5]
    assert stored(fresh) == stored(staged)
    assert by_copy.scores.created == 12 * 3 * 3


def test_a_fresh_import_then_the_same_file_again_changes_nothing():
    study = continuous_study("again")
    data = varied_file(12)
    import_file(io.BytesIO(data), study=study, filename="a.jsonl", batch_size=5)
    before = snapshot(study)
    report = import_file(io.BytesIO(data), study=study, filename="a.jsonl")
    assert report.responses.unchanged == 36 and report.scores.unchanged == 108
    assert snapshot(study) == before


def test_a_duplicate_id_in_a_fresh_import_names_both_lines_and_writes_nothing(study):
    lines = [interaction(n) for n in range(1, 6)] + [interaction(2)]
    before = snapshot(study)
    with pytest.raises(ImportFailed) as info:
        # Batches of two: the clash comes up in a later COPY than the first copy of the id.
        import_file(jsonl(*lines), study=study, filename="dup.jsonl", batch_size=2)
    assert [str(p) for p in info.value.problems] == [
        "dup.jsonl:6: id: duplicate id 'q-000002' (first on line 2) "
        "(expected each id once per file)"
    ]
    assert snapshot(study) == before
    # And the study takes the file once the duplicate is gone.
    report = import_file(jsonl(*lines[:5]), study=study, filename="ok.jsonl", batch_size=2)
    assert report.responses.created == 15


def test_a_bad_last_line_of_a_fresh_import_leaves_the_study_empty(study):
    lines: list[Any] = [interaction(n) for n in range(30)]
    lines.append(interaction(30, region="mars"))
    with pytest.raises(ImportFailed) as info:
        import_file(jsonl(*lines), study=study, filename="late.jsonl", batch_size=4)
    assert str(info.value.problems[0]).startswith("late.jsonl:31: region: unknown region 'mars'")
    assert not Prompt.objects.filter(study=study).exists()
    assert not Response.objects.exists()  # and so no judge scores


def test_a_parse_failure_in_the_reading_thread_reaches_the_caller(study):
    text_mode = io.StringIO('{"id": "q-1"}\n')
    with pytest.raises(TypeError, match="binary mode"):
        import_file(text_mode, study=study, filename="a.jsonl")  # type: ignore[arg-type]
    assert not Prompt.objects.exists()


def test_ids_are_drawn_as_one_range_or_else_as_a_list(study):
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: the fresh path draws ids from the sequences")
    with connection.cursor() as cursor:
        writer = fresh._FreshWriter(
            cursor, study, Schema.of(study), [[0.5]] * 3, batch_size=DEFAULT_BATCH_SIZE
        )
        ids = writer._ids(writer.response_seq, 5)
        assert isinstance(ids, range) and len(ids) == 5
        # Values that are not consecutive (as when another session draws meanwhile): the
        # writer must use exactly the values it drew, not a range over them.
        cursor.execute(f"ALTER SEQUENCE {writer.response_seq} INCREMENT BY 2")
        spread = writer._ids(writer.response_seq, 4)
        assert list(spread) == list(range(spread[0], spread[0] + 8, 2))
        assert spread[0] > ids[-1]


def test_the_cell_totals_a_fresh_import_counts_are_those_a_recount_finds(monkeypatch):
    from calibration import totals
    from calibration.models import CellTotal

    monkeypatch.setattr(totals, "FENCE_EVERY", 3)  # several fences per cell, ranks 0, 3, …
    study = continuous_study("counted")
    import_file(io.BytesIO(varied_file(40)), study=study, filename="a.jsonl", batch_size=7)

    def rows() -> list[tuple[Any, ...]]:
        return sorted(
            CellTotal.objects.filter(study=study).values_list(
                "arm_id", "region_id", "cell", "responses", "min_id", "max_id", "fences"
            )
        )

    counted = rows()
    assert sum(r[3] for r in counted) == 120 and all(r[6] is not None for r in counted)
    totals.refresh_cell_totals(study=study)
    assert rows() == counted
