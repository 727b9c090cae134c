"""Every refused file says what is wrong and where, and leaves the database as it was."""

from __future__ import annotations

import io
import json

import pytest

from annotate.imports.importing import MAX_LINE_BYTES, ImportFailed, import_file
from annotate.models import Dimension
from tests.annotate.imports.import_helpers import csv_file, csv_rows, interaction, jsonl, snapshot

pytestmark = pytest.mark.django_db


@pytest.fixture
def imported(study):
    """A study that already holds two interactions, so 'unchanged' means something."""
    import_file(jsonl(interaction(1), interaction(2)), study=study, filename="first.jsonl")
    return study


def refuse(study, stream, filename="bad.jsonl", **kwargs) -> list[str]:
    before = snapshot(study)
    with pytest.raises(ImportFailed) as info:
        import_file(stream, study=study, filename=filename, **kwargs)
    assert snapshot(study) == before, "a refused import changed the database"
    return [str(p) for p in info.value.problems]


def with_response(n: int, arm: str = "cand1", **changes) -> dict:
    line = interaction(n)
    line["responses"][arm].update(changes)
    return line


def with_score(n: int, dim: str, score, arm: str = "cand1") -> dict:
    line = interaction(n)
    line["responses"][arm]["scores"][dim] = score
    return line


def test_malformed_json_names_the_line_and_column(imported):
    problems = refuse(imported, jsonl(interaction(3), '{"id": "q-4", "region"'))
    assert problems[0].startswith("bad.jsonl:2: json: malformed JSON: Expecting ':' delimiter")
    assert "(expected one JSON object)" in problems[0]


def test_a_line_that_is_not_an_object_is_refused(imported):
    assert refuse(imported, jsonl("[1, 2]")) == [
        "bad.jsonl:1: line: an array is not an object (expected one JSON object per line)"
    ]


def test_a_missing_field_is_named(imported):
    line = interaction(3)
    del line["prompt"]
    (problem,) = refuse(imported, jsonl(line))
    assert problem.startswith("bad.jsonl:1: prompt: missing field (expected fields id, region")


def test_an_extra_field_is_named(imported):
    (problem,) = refuse(imported, jsonl(interaction(3), interaction(4, model="x")))
    assert problem == (
        "bad.jsonl:2: model: unknown field "
        "(expected only the fields id, region, prompt, responses, metadata, judge)"
    )


def test_an_extra_field_inside_a_response_is_named(imported):
    (problem,) = refuse(imported, jsonl(with_response(3, latency=3)))
    assert problem.startswith("bad.jsonl:1: responses.cand1.latency: unknown field")


def test_an_extra_field_inside_a_score_object_is_named(imported):
    (problem,) = refuse(
        imported, jsonl(with_score(3, "refusal", {"value": 1, "judge": "j", "why": "x"}))
    )
    assert problem.startswith("bad.jsonl:1: responses.cand1.scores.refusal.why: unknown field")


def test_an_unknown_arm_is_named_with_the_known_ones(imported):
    line = interaction(3)
    line["responses"]["gpt5"] = line["responses"]["inc"]
    assert refuse(imported, jsonl(line)) == [
        "bad.jsonl:1: responses.gpt5: unknown arm 'gpt5' (expected one of inc, cand1, cand2)"
    ]


def test_every_line_needs_every_arm(imported):
    line = interaction(3)
    del line["responses"]["cand2"]
    (problem,) = refuse(imported, jsonl(line))
    assert problem.startswith("bad.jsonl:1: responses: no response from arm 'cand2'")
    assert "every arm of the study" in problem


def test_an_unknown_region_is_named_with_the_known_ones(imported):
    assert refuse(imported, jsonl(interaction(3, region="mars"))) == [
        "bad.jsonl:1: region: unknown region 'mars' (expected one of eu, us)"
    ]


def test_an_unknown_dimension_is_named_with_the_known_ones(imported):
    (problem,) = refuse(imported, jsonl(with_score(3, "tone", 1)))
    assert problem == (
        "bad.jsonl:1: responses.cand1.scores.tone: unknown dimension 'tone' "
        "(expected one of correctness, refusal, style)"
    )


def test_every_response_needs_a_score_for_every_dimension(imported):
    line = interaction(3)
    del line["responses"]["inc"]["scores"]["style"]
    (problem,) = refuse(imported, jsonl(line))
    assert problem.startswith("bad.jsonl:1: responses.inc.scores: no score for dimension 'style'")
    assert "every dimension of the study: correctness, refusal, style" in problem


def test_a_duplicate_id_names_both_lines(imported):
    problems = refuse(imported, jsonl(interaction(3), interaction(4), interaction(3)))
    assert problems == [
        "bad.jsonl:3: id: duplicate id 'q-000003' (first on line 1) "
        "(expected each id once per file)"
    ]


def test_a_response_text_that_is_not_a_string_is_refused(imported):
    assert refuse(imported, jsonl(with_response(3, text=42))) == [
        "bad.jsonl:1: responses.cand1.text: a number is not a string (expected a string)"
    ]


def test_a_score_that_is_not_a_number_is_refused(imported):
    (problem,) = refuse(imported, jsonl(with_score(3, "correctness", "high")))
    assert problem.startswith(
        "bad.jsonl:1: responses.cand1.scores.correctness: a string is not a number"
    )


def test_a_boolean_is_not_a_number(imported):
    (problem,) = refuse(imported, jsonl(with_score(3, "refusal", True)))
    assert problem.startswith("bad.jsonl:1: responses.cand1.scores.refusal: true is not a number")
    (problem,) = refuse(imported, jsonl(with_score(3, "refusal", {"value": False})))
    assert problem.startswith(
        "bad.jsonl:1: responses.cand1.scores.refusal.value: false is not a number"
    )


def test_a_binary_judge_score_must_be_0_or_1(imported):
    assert refuse(imported, jsonl(with_score(3, "refusal", 0.5))) == [
        "bad.jsonl:1: responses.cand1.scores.refusal: 0.5 is not 0 or 1 "
        "(the judge of 'refusal' is binary) (expected 0 or 1)"
    ]


def test_a_likert_judge_score_must_be_a_whole_number_in_range(imported):
    (problem,) = refuse(imported, jsonl(with_score(3, "style", 3.5)))
    assert "3.5 is not a whole number" in problem
    assert problem.endswith("(expected a whole number from 1 to 5)")
    assert refuse(imported, jsonl(with_score(3, "style", 7))) == [
        "bad.jsonl:1: responses.cand1.scores.style: 7 is outside the judge range of 'style' "
        "(expected a whole number from 1 to 5)"
    ]


def test_a_continuous_judge_score_must_lie_in_the_declared_range(study):
    Dimension.objects.filter(study=study, key="correctness").update(
        judge_score_type="continuous", judge_min=0, judge_max=1, judge_bins=4
    )
    assert refuse(study, jsonl(interaction(1), with_score(2, "correctness", 1.25))) == [
        "bad.jsonl:2: responses.cand1.scores.correctness: 1.25 is outside the judge range of "
        "'correctness' (expected a number from 0 to 1)"
    ]


def test_a_file_that_is_not_utf8_names_the_byte_offset(imported):
    good = (json.dumps(interaction(3)) + "\n").encode()
    bad = json.dumps(interaction(4)).replace("Question", "Qu\xe9stion").encode("latin-1")
    (problem,) = refuse(imported, io.BytesIO(good + bad + b"\n"))
    assert problem == (
        f"bad.jsonl:2: encoding: byte 0xe9 at byte offset {len(good) + bad.index(b'\xe9')} of "
        f"the file (column {bad.index(b'\xe9') + 1} of line 2) is not valid UTF-8 "
        "(expected UTF-8 text)"
    )


def test_an_empty_file_is_refused(imported):
    assert refuse(imported, io.BytesIO(b"")) == [
        "bad.jsonl:1: file: the file is empty (expected at least one interaction)"
    ]
    assert refuse(imported, io.BytesIO(b"\n  \n")) == [
        "bad.jsonl:1: file: the file is empty (expected at least one interaction)"
    ]


def test_an_over_long_line_states_the_limit(imported):
    long_line = interaction(4)
    long_line["prompt"] = "x" * MAX_LINE_BYTES
    problems = refuse(imported, jsonl(interaction(3), long_line, interaction(5)))
    assert problems == [
        f"bad.jsonl:2: line: line is longer than {MAX_LINE_BYTES} bytes (1 MiB) "
        f"(expected at most {MAX_LINE_BYTES} bytes per line)"
    ]


def test_a_bad_last_line_leaves_the_database_as_it_was(imported):
    lines = [interaction(n) for n in range(3, 3000)] + [interaction(3000, region="mars")]
    problems = refuse(imported, jsonl(*lines), batch_size=100)
    assert problems == ["bad.jsonl:2998: region: unknown region 'mars' (expected one of eu, us)"]


def test_up_to_twenty_problems_are_reported_first_line_first(imported):
    lines = [interaction(n, region="mars") for n in range(3, 40)]
    problems = refuse(imported, jsonl(*lines))
    assert len(problems) == 20
    assert problems[0].startswith("bad.jsonl:1: region:")
    assert problems[-1].startswith("bad.jsonl:20: region:")


def test_a_changed_prompt_text_of_a_known_id_is_refused(imported):
    changed = interaction(2, prompt="Question 2, reworded?")
    (problem,) = refuse(imported, jsonl(interaction(3), changed))
    assert problem.startswith(
        "bad.jsonl:2: prompt: the text of prompt 'q-000002' differs from the one already imported"
    )
    assert "known prompts are never changed" in problem


def test_a_changed_response_text_of_a_known_id_is_refused(imported):
    (problem,) = refuse(imported, jsonl(with_response(1, arm="inc", text="Something else.")))
    assert problem.startswith(
        "bad.jsonl:1: responses.inc.text: the text of arm 'inc''s response to 'q-000001' differs"
    )


def test_a_known_prompt_cannot_move_to_another_region(imported):
    assert refuse(imported, jsonl(interaction(1, region="us"))) == [
        "bad.jsonl:1: region: prompt 'q-000001' was imported in region 'eu', not 'us' "
        "(expected the same region: known prompts never move)"
    ]


def test_an_unknown_extension_needs_an_explicit_format(imported):
    (problem,) = refuse(imported, jsonl(interaction(3)), filename="data.txt")
    assert problem.startswith("data.txt:1: format: cannot tell the format from the name")


def test_csv_with_a_wrong_header_is_refused(imported):
    text = csv_rows(3).replace("id,region,prompt", "id,segment,prompt", 1)
    assert refuse(imported, csv_file(text), filename="bad.csv") == [
        "bad.csv:1: header: the header is 'id,segment,prompt,arm,response,dimension,score' "
        "(expected id,region,prompt,arm,response,dimension,score[,judge])"
    ]


def test_csv_prompt_texts_that_disagree_within_an_id_are_refused(imported):
    lines = csv_rows(3).splitlines()
    lines[4] = lines[4].replace("Question 3?", "Question three?")
    (problem,) = refuse(imported, csv_file("\n".join(lines) + "\n"), filename="bad.csv")
    assert problem == (
        "bad.csv:5: prompt: the prompt text of id 'q-000003' differs from the one on line 2 "
        "(expected the same prompt text on every row of an id)"
    )


def test_csv_response_texts_that_disagree_within_an_id_and_arm_are_refused(imported):
    lines = csv_rows(3).splitlines()
    lines[6] = lines[6].replace("Answer of cand1", "Reply of cand1")  # rows 5-7: cand1
    (problem,) = refuse(imported, csv_file("\n".join(lines) + "\n"), filename="bad.csv")
    assert problem.startswith(
        "bad.csv:7: response: the response text of id 'q-000003', arm 'cand1' differs from the "
        "one on line 5"
    )


def test_csv_rows_of_one_id_must_be_contiguous(imported):
    rows3, rows4 = csv_rows(3).splitlines(), csv_rows(4).splitlines()
    text = "\n".join([rows3[0], *rows3[1:], *rows4[1:], *rows3[1:]]) + "\n"
    assert refuse(imported, csv_file(text), filename="bad.csv") == [
        "bad.csv:20: id: id 'q-000003' appears again after other ids (first on line 2) "
        "(expected the rows of one id to be contiguous)"
    ]


def test_csv_an_id_split_before_all_its_rows_says_rows_must_be_contiguous(imported):
    rows3, rows4 = csv_rows(3).splitlines(), csv_rows(4).splitlines()
    text = "\n".join([rows3[0], *rows3[1:5], *rows4[1:], *rows3[5:]]) + "\n"
    problems = refuse(imported, csv_file(text), filename="bad.csv")
    assert problems[0].startswith("bad.csv:2: arm: id 'q-000003': no response from arm 'cand2'")
    assert problems[0].endswith("the rows of one id must be contiguous)")


def test_csv_score_that_is_not_a_number_is_refused(imported):
    text = csv_rows(3).replace("refusal,0", "refusal,yes", 1)
    (problem,) = refuse(imported, csv_file(text), filename="bad.csv")
    assert problem == "bad.csv:3: score: 'yes' is not a number (expected 0 or 1)"


def test_csv_rows_with_a_wrong_number_of_fields_are_refused(imported):
    text = csv_rows(3).replace("refusal,0", "refusal,0,extra", 1)
    (problem,) = refuse(imported, csv_file(text), filename="bad.csv")
    assert problem.startswith("bad.csv:3: row: 8 fields (expected 7 fields: id,region,prompt")


def _nested(depth: int, leaf: object = 1) -> object:
    value = leaf
    for k in range(depth):
        value = {f"k{k}": value} if k % 2 else [value]
    return value


def test_metadata_nested_too_deeply_is_named_and_the_rest_is_checked(imported):
    from annotate.imports.parsing import MAX_JSON_DEPTH

    # A response's metadata sits three levels deep: 61 levels of its own is the most allowed.
    fine = with_response(3, metadata={"m": _nested(MAX_JSON_DEPTH - 4, "x" * 200)})
    deep = with_response(4, metadata={"m": _nested(MAX_JSON_DEPTH)})
    # Too deep and in an unknown region: the depth is what is reported, as before the
    # scan became lazy; and a line too deep for the decoder's recursion is refused too.
    deep_and_wrong = with_response(5, metadata={"m": _nested(MAX_JSON_DEPTH)})
    deep_and_wrong["region"] = "mars"
    abyss = json.dumps(with_response(6, metadata={"m": "ABYSS"}))
    abyss = abyss.replace('"ABYSS"', "[" * 5_000 + "1" + "]" * 5_000)  # beyond json.dumps
    problems = refuse(imported, jsonl(fine, deep, deep_and_wrong, abyss))
    assert len(problems) == 3, problems
    for line, problem in zip((2, 3, 4), problems, strict=True):
        assert problem.startswith(f"bad.jsonl:{line}: responses.cand1.metadata.m"), problem
        assert f"JSON nested deeper than {MAX_JSON_DEPTH} levels" in problem


def test_metadata_just_within_the_depth_limit_is_imported(imported):
    from annotate.imports.importing import import_file
    from annotate.imports.parsing import MAX_JSON_DEPTH

    line = with_response(3, metadata={"m": _nested(MAX_JSON_DEPTH - 4, "x" * 200)})
    report = import_file(jsonl(line), study=imported, filename="ok.jsonl")
    assert report.responses.created == 3
