# Indexes covered by others, dropped because every index costs each imported row its upkeep:
# prompt.study_id by the unique (study_id, external_id), response.prompt_id by the unique
# (prompt_id, arm_id), response.study_id and response_cell_idx by response_pick_idx, and
# judgescore.response_id by the unique (response_id, dimension_id).

from __future__ import annotations

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("annotate", "0003_assignment_pairs"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="response",
            name="response_cell_idx",
        ),
        migrations.AlterField(
            model_name="prompt",
            name="study",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="prompts",
                to="annotate.study",
            ),
        ),
        migrations.AlterField(
            model_name="response",
            name="prompt",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="responses",
                to="annotate.prompt",
            ),
        ),
        migrations.AlterField(
            model_name="response",
            name="study",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="responses",
                to="annotate.study",
            ),
        ),
        migrations.AlterField(
            model_name="judgescore",
            name="response",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="judge_scores",
                to="annotate.response",
            ),
        ),
    ]
