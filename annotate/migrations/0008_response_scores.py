# The response's arm and region keys lose their own indexes (each cost every imported row
# its upkeep; queries by arm or region name the study, and response_pick_idx serves them).
#
# Judge scores move from a row each (annotate_judgescore) into their response's row, as
# {"<dimension id>": [value, judge]} in Response.scores: an import then writes one row and
# three index entries per response instead of four rows and twelve. The bins stay where
# selection and the counts read them, in Response.cell; a score's own bin was a copy.

from __future__ import annotations

from typing import Any

import django.db.models.deletion
from django.db import migrations, models


def scores_into_responses(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        sql = (
            "UPDATE annotate_response r SET scores = s.scores FROM ("
            "SELECT response_id, jsonb_object_agg(dimension_id::text, "
            "jsonb_build_array(value, judge)) AS scores FROM annotate_judgescore "
            "GROUP BY response_id) s WHERE r.id = s.response_id"
        )
    else:
        sql = (
            "UPDATE annotate_response SET scores = (SELECT json_group_object("
            "CAST(dimension_id AS TEXT), json_array(value, judge)) FROM annotate_judgescore "
            "WHERE response_id = annotate_response.id) WHERE EXISTS (SELECT 1 FROM "
            "annotate_judgescore WHERE response_id = annotate_response.id)"
        )
    schema_editor.execute(sql)


def scores_into_rows(apps: Any, schema_editor: Any) -> None:
    """Back to a row per score; each bin is read from the response's cell."""
    Response = apps.get_model("annotate", "Response")  # noqa: N806
    Dimension = apps.get_model("annotate", "Dimension")  # noqa: N806
    JudgeScore = apps.get_model("annotate", "JudgeScore")  # noqa: N806
    positions: dict[int, dict[int, int]] = {}
    for study_id in Dimension.objects.values_list("study_id", flat=True).distinct():
        dims = Dimension.objects.filter(study_id=study_id).order_by("position", "id")
        positions[study_id] = {pk: k for k, pk in enumerate(dims.values_list("pk", flat=True))}
    rows = []
    for response in Response.objects.exclude(scores={}).iterator(chunk_size=2000):
        bins = response.cell.split(".") if response.cell else []
        for key, (value, judge) in response.scores.items():
            k = positions.get(response.study_id, {}).get(int(key))
            part = bins[k] if k is not None and k < len(bins) else ""
            rows.append(
                JudgeScore(
                    response_id=response.pk,
                    dimension_id=int(key),
                    judge=judge,
                    value=value,
                    bin=int(part) if part.isdigit() else None,
                )
            )
        if len(rows) >= 10_000:
            JudgeScore.objects.bulk_create(rows)
            rows = []
    JudgeScore.objects.bulk_create(rows)


class Migration(migrations.Migration):
    dependencies = [
        ("annotate", "0007_merge_audit_share_and_instructions"),
    ]

    operations = [
        migrations.AddField(
            model_name="response",
            name="scores",
            field=models.JSONField(
                blank=True,
                default=dict,
                help_text='The judges\' scores: {"<dimension id>": [value, judge]}.',
            ),
        ),
        migrations.RunPython(scores_into_responses, scores_into_rows, elidable=False),
        migrations.DeleteModel(name="JudgeScore"),
        migrations.AlterField(
            model_name="response",
            name="arm",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="responses",
                to="annotate.arm",
            ),
        ),
        migrations.AlterField(
            model_name="response",
            name="region",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="responses",
                to="annotate.region",
            ),
        ),
    ]
