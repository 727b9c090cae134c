"""The import's parsers without a database: a schema from plain values, bytes in, rows out.

No test here is marked ``django_db``: a query would fail it.
"""

from __future__ import annotations

import io
import json

from annotate.imports.parsing import MAX_PROBLEMS, Problems, parse_csv, parse_jsonl
from annotate.imports.schema import Schema
from annotate.models import Dimension

LIKERT = Dimension.JudgeScoreType.LIKERT


def schema() -> Schema:
    dims = [
        Dimension(pk=7, key="correct", judge_score_type=Dimension.JudgeScoreType.BINARY),
        Dimension(pk=8, key="style", judge_score_type=LIKERT, judge_min=1, judge_max=5),
    ]
    return Schema({"eu": 3}, [("inc", 1), ("cand", 2)], dims)


def parse(parser, data: bytes) -> tuple[list, list]:
    sink = Problems("f", MAX_PROBLEMS)
    staged = list(parser(io.BytesIO(data), schema(), sink))
    return staged, sink.items


def line(**scores: object) -> dict:
    return {
        "id": "q-1",
        "region": "eu",
        "prompt": "Why?",
        "responses": {
            arm: {"text": f"{arm} says", "scores": scores or {"correct": 1, "style": 4}}
            for arm in ("inc", "cand")
        },
    }


def test_a_jsonl_line_becomes_one_prompt_row_and_a_response_row_per_arm():
    staged, problems = parse(parse_jsonl, (json.dumps(line()) + "\n").encode())
    assert problems == []
    [(prompt, responses)] = staged
    assert prompt == (1, "q-1", 3, "Why?", "{}")
    assert [row[:5] for row in responses] == [
        (1, "q-1", 1, "inc says", "{}"),
        (1, "q-1", 2, "cand says", "{}"),
    ]
    assert [row[5:] for row in responses] == [(1.0, "judge", 4.0, "judge")] * 2


def test_a_jsonl_score_out_of_range_is_refused_by_field():
    staged, problems = parse(parse_jsonl, (json.dumps(line(correct=1, style=9)) + "\n").encode())
    assert staged == []
    [problem] = problems
    assert (problem.line, problem.field) == (1, "responses.inc.scores.style")


def test_long_csv_rows_of_one_interaction_stage_as_the_jsonl_line_does():
    rows = ["id,region,prompt,arm,response,dimension,score"]
    for arm in ("inc", "cand"):
        rows += [f"q-1,eu,Why?,{arm},{arm} says,correct,1", f"q-1,eu,Why?,{arm},{arm} says,style,4"]
    staged, problems = parse(parse_csv, ("\n".join(rows) + "\n").encode())
    assert problems == []
    jsonl, _ = parse(parse_jsonl, (json.dumps(line()) + "\n").encode())
    assert [(p[1:], [r[1:] for r in rs]) for p, rs in staged] == [
        (p[1:], [r[1:] for r in rs]) for p, rs in jsonl
    ]


def test_an_unknown_region_is_refused_without_a_query():
    bad = dict(line(), region="mars")
    _, problems = parse(parse_jsonl, (json.dumps(bad) + "\n").encode())
    assert [(p.field, p.message) for p in problems] == [("region", "unknown region 'mars'")]
