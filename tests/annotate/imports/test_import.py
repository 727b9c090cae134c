"""Importing responses and judge scores: counts, idempotence, updates, binning."""

from __future__ import annotations

import pytest

from annotate.imports.importing import ImportReport, import_file, judge_cuts_for
from annotate.models import Dimension, Prompt, Response
from calibration.bayes.data import bin_scores
from tests.annotate.imports.import_helpers import (
    csv_file,
    csv_rows,
    interaction,
    jsonl,
    snapshot,
)
from tests.factories import DimensionFactory
from tests.scores import score_rows

pytestmark = pytest.mark.django_db


def counts(report: ImportReport) -> dict[str, tuple[int, int, int]]:
    return {
        name: (c.created, c.updated, c.unchanged)
        for name, c in (
            ("prompts", report.prompts),
            ("responses", report.responses),
            ("scores", report.scores),
        )
    }


def test_a_first_import_creates_prompts_responses_and_scores(study):
    report = import_file(
        jsonl(*[interaction(n) for n in range(5)]), study=study, filename="a.jsonl"
    )
    assert counts(report) == {"prompts": (5, 0, 0), "responses": (15, 0, 0), "scores": (45, 0, 0)}
    assert report.lines == 5 and report.format == "jsonl" and report.seconds >= 0
    assert Prompt.objects.filter(study=study).count() == 5
    assert len(score_rows(study)) == 45
    dims = {str(pk) for pk in study.dimensions.values_list("pk", flat=True)}
    assert all(set(r.scores) == dims for r in Response.objects.filter(study=study))


def test_responses_repeat_the_study_and_region_of_their_prompt(study):
    import_file(
        jsonl(interaction(1, region="eu"), interaction(2, region="us")),
        study=study,
        filename="a.jsonl",
    )
    for response in Response.objects.select_related("prompt"):
        assert response.study_id == response.prompt.study_id == study.pk
        assert response.region_id == response.prompt.region_id
    assert set(Response.objects.values_list("region__key", flat=True)) == {"eu", "us"}


def test_importing_the_same_file_twice_changes_nothing(study):
    lines = [interaction(n) for n in range(20)]
    import_file(jsonl(*lines), study=study, filename="a.jsonl")
    before = snapshot(study)
    report = import_file(jsonl(*lines), study=study, filename="a.jsonl")
    assert counts(report) == {"prompts": (0, 0, 20), "responses": (0, 0, 60), "scores": (0, 0, 180)}
    assert snapshot(study) == before


def test_a_new_judge_score_updates_the_score_its_bin_and_the_response_cell(study):
    import_file(jsonl(interaction(1), interaction(2)), study=study, filename="a.jsonl")
    response = Response.objects.get(prompt__external_id="q-000001", arm__key="cand1")
    assert response.cell == "1.0.1"  # correctness 1, refusal 0, style 2 (cuts 1.5, 2.5, …)
    changed = interaction(1)
    changed["responses"]["cand1"]["scores"] = {
        "correctness": 0,
        "refusal": {"value": 1, "judge": "refusal-judge-2"},
        "style": 5,
    }
    report = import_file(jsonl(changed, interaction(2)), study=study, filename="b.jsonl")
    assert counts(report) == {"prompts": (0, 0, 2), "responses": (0, 1, 5), "scores": (0, 3, 15)}
    response.refresh_from_db()
    assert response.cell == "0.1.4"
    refusal = study.dimensions.get(key="refusal")
    assert response.score(refusal) == (1, "refusal-judge-2")
    assert response.cell.split(".")[1] == "1"  # refusal's bin


@pytest.mark.parametrize("change", ["value", "judge"])
def test_one_changed_score_updates_that_score_and_its_response_alone(study, change):
    lines = [interaction(n) for n in range(1, 4)]
    import_file(jsonl(*lines), study=study, filename="a.jsonl")
    target = Response.objects.get(prompt__external_id="q-000002", arm__key="cand2")
    assert target.cell == "0.0.2"  # correctness 0, refusal 0, style 3
    before = snapshot(study)
    changed = interaction(2)
    if change == "value":
        changed["responses"]["cand2"]["scores"]["style"] = 5
    else:
        changed["responses"]["cand2"]["scores"]["style"] = {"value": 3, "judge": "style-judge-2"}
    report = import_file(jsonl(lines[0], changed, lines[2]), study=study, filename="b.jsonl")
    assert counts(report) == {"prompts": (0, 0, 3), "responses": (0, 1, 8), "scores": (0, 1, 26)}
    after = snapshot(study)
    assert after["prompts"] == before["prompts"] and after["cuts"] == before["cuts"]
    for table in ("responses", "scores"):  # every other response and score as it was
        assert [r for r in after[table] if r[0] != target.pk] == [
            r for r in before[table] if r[0] != target.pk
        ]
    style = study.dimensions.get(key="style").pk
    mine_before = {r[1]: r for r in before["scores"] if r[0] == target.pk}
    mine_after = {r[1]: r for r in after["scores"] if r[0] == target.pk}
    assert mine_after.keys() == mine_before.keys() and len(mine_after) == 3
    assert {d: r for d, r in mine_after.items() if d != style} == {
        d: r for d, r in mine_before.items() if d != style
    }
    assert mine_before[style] == (target.pk, style, "judge", 3.0, 2)
    target.refresh_from_db()
    if change == "value":
        assert mine_after[style] == (target.pk, style, "judge", 5.0, 4)
        assert target.cell == "0.0.4"
    else:
        assert mine_after[style] == (target.pk, style, "style-judge-2", 3.0, 2)
        assert target.cell == "0.0.2"
    assert target.score(style) == mine_after[style][3:1:-1]


def test_changed_metadata_is_updated(study):
    import_file(jsonl(interaction(1)), study=study, filename="a.jsonl")
    report = import_file(
        jsonl(interaction(1, metadata={"source": "zendesk"})), study=study, filename="a.jsonl"
    )
    assert report.prompts.updated == 1 and report.prompts.unchanged == 0
    assert Prompt.objects.get(external_id="q-000001").metadata == {"source": "zendesk"}


def test_judges_default_to_the_line_judge_then_to_judge(study):
    line = interaction(1, judge="gpt-judge-1")
    line["responses"]["inc"]["scores"]["refusal"] = {"value": 1, "judge": "gpt-judge-2"}
    import_file(jsonl(line, interaction(2)), study=study, filename="a.jsonl")
    judges = {
        (ext, dim): judge
        for ext, arm, dim, judge, _, _ in score_rows(study, external=True)
        if arm == "inc" and dim in ("correctness", "refusal")
    }
    assert judges == {
        ("q-000001", "correctness"): "gpt-judge-1",
        ("q-000001", "refusal"): "gpt-judge-2",
        ("q-000002", "correctness"): "judge",
        ("q-000002", "refusal"): "judge",
    }


def test_cuts_are_fixed_at_the_first_import_and_reused(study):
    report = import_file(jsonl(interaction(1)), study=study, filename="a.jsonl")
    assert report.cuts_fixed == {
        "correctness": [0.5],
        "refusal": [0.5],
        "style": [1.5, 2.5, 3.5, 4.5],
    }
    report = import_file(jsonl(interaction(2)), study=study, filename="b.jsonl")
    assert report.cuts_fixed == {}


def test_continuous_scores_are_cut_at_quantiles_of_the_first_import(study):
    correctness = Dimension.objects.get(study=study, key="correctness")
    correctness.judge_score_type = "continuous"
    correctness.judge_min, correctness.judge_max, correctness.judge_bins = 0, 1, 4
    correctness.save()
    lines = []
    for n in range(100):
        line = interaction(n)
        for arm in line["responses"]:
            line["responses"][arm]["scores"]["correctness"] = n / 100
        lines.append(line)
    report = import_file(jsonl(*lines), study=study, filename="a.jsonl")
    cuts = report.cuts_fixed["correctness"]
    assert cuts == pytest.approx([0.245, 0.495, 0.745])
    correctness.refresh_from_db()
    assert correctness.judge_cuts == cuts
    stored = [(v, b) for _, dim, _, v, b in score_rows(study) if dim == correctness.pk]
    assert len(stored) == 300
    values, bins = zip(*stored, strict=True)
    assert list(bins) == bin_scores(values, cuts).tolist()
    assert sorted({b: bins.count(b) for b in bins}.values()) == [75, 75, 75, 75]


def test_likert_with_more_points_than_bins_uses_quantile_cuts_between_points(study):
    style = Dimension.objects.get(study=study, key="style")
    style.judge_bins = 2
    assert judge_cuts_for(style, None) is None
    assert judge_cuts_for(style, [1, 2, 2, 3, 4, 5, 5, 5]) == [3.5]


def test_a_cell_lists_the_bins_in_dimension_order(study):
    DimensionFactory(
        study=study, key="tone", title="Tone", position=1, judge_score_type="binary"
    )  # sorts between refusal (1, older id) and style (2)
    line = interaction(1)
    for resp in line["responses"].values():
        resp["scores"] = {"correctness": 1, "refusal": 0, "style": 3, "tone": 1}
    import_file(jsonl(line), study=study, filename="a.jsonl")
    assert set(Response.objects.values_list("cell", flat=True)) == {"1.0.1.2"}


def test_csv_and_jsonl_import_the_same_rows(study):
    import_file(csv_file(csv_rows(1, 2, 3)), study=study, filename="a.csv")
    report = import_file(
        jsonl(interaction(1), interaction(2), interaction(3)), study=study, filename="a.jsonl"
    )
    assert counts(report) == {"prompts": (0, 0, 3), "responses": (0, 0, 9), "scores": (0, 0, 27)}


def test_csv_judge_column_is_optional_per_row(study):
    text = csv_rows(1).replace("score\n", "score,judge\n", 1)
    text = "\n".join(
        row + ("" if i == 0 else (",gpt-judge-2" if i == 1 else ","))
        for i, row in enumerate(text.splitlines())
    )
    import_file(csv_file(text + "\n"), study=study, filename="a.csv")
    judges = [judge for _, _, judge, _, _ in score_rows(study)]
    assert judges.count("gpt-judge-2") == 1 and judges.count("judge") == 8


def test_a_file_can_be_given_by_path_and_its_name_is_used(study, tmp_path):
    path = tmp_path / "support.jsonl"
    path.write_bytes(jsonl(interaction(1)).getvalue())
    report = import_file(path, study=study)
    assert report.file == "support.jsonl" and report.prompts.created == 1


def test_a_utf8_byte_order_mark_is_ignored(study):
    stream = jsonl(interaction(1))
    stream = type(stream)(b"\xef\xbb\xbf" + stream.getvalue())
    assert import_file(stream, study=study, filename="a.jsonl").prompts.created == 1


def test_small_batches_give_the_same_result(study):
    lines = [interaction(n) for n in range(25)]
    report = import_file(jsonl(*lines), study=study, filename="a.jsonl", batch_size=4)
    assert counts(report) == {"prompts": (25, 0, 0), "responses": (75, 0, 0), "scores": (225, 0, 0)}


def test_an_import_into_a_study_with_other_studies_touches_only_its_own(study):
    from tests.factories import make_study

    other = make_study(slug="other")
    import_file(jsonl(interaction(1)), study=other, filename="a.jsonl")
    report = import_file(jsonl(interaction(1)), study=study, filename="a.jsonl")
    assert report.prompts.created == 1
    assert Response.objects.filter(study=other).count() == 3
    assert Response.objects.filter(study=study).count() == 3


@pytest.mark.postgres
def test_foreign_key_checks_are_back_on_after_a_fresh_import(study):
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only")
    import_file(jsonl(interaction(1)), study=study, filename="a.jsonl")
    with connection.cursor() as cursor:
        cursor.execute("SHOW session_replication_role")
        assert cursor.fetchone()[0] == "origin"
    prompt = Prompt.objects.get(external_id="q-000001")
    assert Response.objects.filter(prompt=prompt).count() == 3
    assert set(Response.objects.values_list("study_id", "region_id").distinct()) == {
        (study.pk, prompt.region_id)
    }
