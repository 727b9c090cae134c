"""The database itself refuses data that breaks the study's invariants."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from annotate.models import Annotation, Arm, Dimension, Label, Study
from tests.factories import (
    ArmFactory,
    DimensionFactory,
    PromptFactory,
    RegionFactory,
    ResponseFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


def refused(make) -> bool:
    try:
        with transaction.atomic():
            make()
    except IntegrityError:
        return True
    return False


def test_a_study_has_at_most_one_incumbent(study):
    assert refused(lambda: ArmFactory(study=study, key="other", role=Arm.Role.INCUMBENT))


def test_arm_keys_are_unique_within_a_study(study):
    assert refused(lambda: ArmFactory(study=study, key="inc"))


def test_confidence_must_be_between_one_half_and_one(study):
    study.confidence = 1.0
    assert refused(study.save)


def test_binary_dimension_has_no_pass_threshold(study):
    assert refused(lambda: DimensionFactory(study=study, scale="binary", pass_threshold=1))


def test_ordinal_threshold_must_lie_on_the_scale(study):
    assert refused(
        lambda: DimensionFactory(study=study, scale="ordinal", scale_max=5, pass_threshold=6)
    )


def test_margin_is_a_share(study):
    assert refused(lambda: DimensionFactory(study=study, margin=1.5))


def test_traffic_share_must_be_positive(study):
    assert refused(lambda: RegionFactory(study=study, traffic_share=Decimal("0")))


def test_traffic_share_error_reports_the_sum(study):
    assert study.traffic_share_error() is None
    RegionFactory(study=study, key="apac", traffic_share=Decimal("0.1"))
    assert study.traffic_share_error() == "traffic shares sum to 1.100000, expected 1"


def test_prompt_external_ids_are_unique_per_study(study):
    region = study.regions.first()
    PromptFactory(study=study, region=region, external_id="q1")
    assert refused(lambda: PromptFactory(study=study, region=region, external_id="q1"))
    other = Study.objects.create(name="Other", slug="other")
    PromptFactory(study=other, external_id="q1")  # another study may reuse it


def test_one_response_per_prompt_and_arm(study):
    response = ResponseFactory(prompt__study=study, arm=study.incumbent)
    assert refused(lambda: ResponseFactory(prompt=response.prompt, arm=study.incumbent))


def test_one_live_annotation_per_annotator_and_response(study):
    response = ResponseFactory(prompt__study=study, arm=study.incumbent)
    user = UserFactory()
    Annotation.objects.create(response=response, annotator=user, study=study)
    assert refused(
        lambda: Annotation.objects.create(response=response, annotator=user, study=study)
    )


def test_skips_and_flags_need_a_reason(study):
    response = ResponseFactory(prompt__study=study, arm=study.incumbent)
    user = UserFactory()
    assert refused(
        lambda: Annotation.objects.create(
            response=response, annotator=user, study=study, status="skipped"
        )
    )
    assert refused(
        lambda: Annotation.objects.create(
            response=response, annotator=user, study=study, flagged=True
        )
    )


def test_one_label_per_annotation_and_dimension(study):
    response = ResponseFactory(prompt__study=study, arm=study.incumbent)
    annotation = Annotation.objects.create(response=response, annotator=UserFactory(), study=study)
    dimension = Dimension.objects.get(study=study, key="correctness")
    Label.objects.create(annotation=annotation, dimension=dimension, value=1)
    assert refused(
        lambda: Label.objects.create(annotation=annotation, dimension=dimension, value=0)
    )


def test_ordinal_grades_map_to_pass_by_threshold(study):
    style = Dimension.objects.get(study=study, key="style")
    assert [style.passes(v) for v in style.scale_values()] == [False, False, False, True, True]
    correctness = Dimension.objects.get(study=study, key="correctness")
    assert correctness.scale_values() == [0, 1]
