"""annotate/migrations/0008_response_scores.py: judge scores move from a row each
(``annotate_judgescore``) into their response's ``scores`` and back, on the database in use."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from annotate.imports.importing import import_file
from annotate.models import Response
from tests.annotate.imports.import_helpers import interaction, jsonl, snapshot
from tests.factories import DimensionFactory, PromptFactory, ResponseFactory, make_study

pytestmark = pytest.mark.django_db(transaction=True)

ROWS = [("annotate", "0007_merge_audit_share_and_instructions")]
IN_RESPONSES = [("annotate", "0008_response_scores")]
QUOTED = 'judge "v2" é'  # a judge name the SQL must quote and escape
DIMS = ("correctness", "refusal", "style")


def migrate(targets: list[tuple[str, str]]) -> Any:
    """Migrate to ``targets``; the apps (historical models) of that state."""
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.fixture
def back_to_the_latest() -> Iterator[None]:
    """However the test ends, the database leaves it fully migrated."""
    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def test_scores_move_into_their_responses_and_back_with_bins_from_the_cells(
    back_to_the_latest,
):
    study = make_study(slug="moved")
    # A fourth dimension sorting between refusal and style (same position, younger id):
    # cells list the bins in (position, id) order, which is not the order of the ids.
    tone = DimensionFactory(study=study, key="tone", title="Tone", position=1)
    correctness, refusal, style = (study.dimensions.get(key=k) for k in DIMS)
    region, inc = study.regions.first(), study.incumbent
    full, one, none = (
        ResponseFactory(prompt=PromptFactory(study=study, region=region, external_id=x), arm=inc)
        for x in ("full", "one", "none")
    )
    other = make_study(slug="other")  # another study, other dimensions and positions
    other_dim = other.dimensions.get(key="refusal")
    elsewhere = ResponseFactory(
        prompt=PromptFactory(study=other, region=other.regions.first(), external_id="e"),
        arm=other.incumbent,
    )

    old = migrate(ROWS)
    judge_score = old.get_model("annotate", "JudgeScore")
    written = [
        (full.pk, correctness.pk, "j1", 1.0),
        (full.pk, refusal.pk, "j1", 0.0),
        (full.pk, tone.pk, QUOTED, 0.3125),
        (full.pk, style.pk, "j2", 4.0),
        (one.pk, style.pk, "j3", 2.7),
        (elsewhere.pk, other_dim.pk, "j4", 1.0),
    ]
    judge_score.objects.bulk_create(
        judge_score(response_id=r, dimension_id=d, judge=j, value=v, bin=7)
        for r, d, j, v in written
    )

    migrate(IN_RESPONSES)
    assert "annotate_judgescore" not in connection.introspection.table_names()
    scores = dict(Response.objects.values_list("pk", "scores"))
    assert scores == {
        full.pk: {
            str(correctness.pk): [1.0, "j1"],
            str(refusal.pk): [0.0, "j1"],
            str(tone.pk): [0.3125, QUOTED],
            str(style.pk): [4.0, "j2"],
        },
        one.pk: {str(style.pk): [2.7, "j3"]},
        none.pk: {},
        elsewhere.pk: {str(other_dim.pk): [1.0, "j4"]},
    }
    assert Response.objects.get(pk=full.pk).score(tone) == (0.3125, QUOTED)

    # Back: each bin is the response's cell part for the dimension (order correctness,
    # refusal, tone, style here; correctness, refusal, style in the other study); an empty
    # part, or no cell, gives no bin.
    cells = {full.pk: "1.0..3", one.pk: "", none.pk: "0.0.0.0", elsewhere.pk: "0.1.2"}
    for pk, cell in cells.items():
        Response.objects.filter(pk=pk).update(cell=cell)
    old = migrate(ROWS)
    rows = old.get_model("annotate", "JudgeScore").objects.values_list(
        "response_id", "dimension_id", "judge", "value", "bin"
    )
    assert sorted(rows) == sorted(
        [
            (full.pk, correctness.pk, "j1", 1.0, 1),
            (full.pk, refusal.pk, "j1", 0.0, 0),
            (full.pk, tone.pk, QUOTED, 0.3125, None),
            (full.pk, style.pk, "j2", 4.0, 3),
            (one.pk, style.pk, "j3", 2.7, None),
            (elsewhere.pk, other_dim.pk, "j4", 1.0, 1),
        ]
    )
    assert "scores" not in {
        c.name
        for c in connection.introspection.get_table_description(
            connection.cursor(), "annotate_response"
        )
    }


def test_the_same_file_imported_again_after_the_migration_changes_nothing(back_to_the_latest):
    """Scores written by the migration compare equal with the same scores in a file."""
    study = make_study(slug="reimport")
    lines = [interaction(n) for n in range(4)]
    lines[1]["responses"]["cand2"]["scores"]["refusal"] = {"value": 1, "judge": QUOTED}
    import_file(jsonl(*lines), study=study, filename="a.jsonl")
    before = snapshot(study)

    migrate(ROWS)
    migrate(IN_RESPONSES)
    assert snapshot(study) == before

    report = import_file(jsonl(*lines), study=study, filename="a.jsonl")
    assert (report.responses.updated, report.responses.unchanged) == (0, 12)
    assert (report.scores.created, report.scores.updated, report.scores.unchanged) == (0, 0, 36)
    assert snapshot(study) == before
