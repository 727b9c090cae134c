"""factory_boy factories for the domain, and the personas used by permission tests."""

from __future__ import annotations

from decimal import Decimal

import factory
from django.contrib.auth import get_user_model

from annotate import models


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("correct horse battery staple")


class StudyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Study

    name = factory.Sequence(lambda n: f"Study {n}")
    slug = factory.Sequence(lambda n: f"study-{n}")
    status = models.Study.Status.ACTIVE
    # No audit picks unless a test asks (the app's default is 10%): the queue's tests
    # count policies and probabilities exactly, and the audit's own tests set it.
    audit_share = 0.0


class ArmFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Arm

    study = factory.SubFactory(StudyFactory)
    key = factory.Sequence(lambda n: f"arm-{n}")
    model_name = factory.Sequence(lambda n: f"model-{n}")
    role = models.Arm.Role.CANDIDATE


class DimensionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Dimension

    study = factory.SubFactory(StudyFactory)
    key = factory.Sequence(lambda n: f"dim-{n}")
    title = factory.Sequence(lambda n: f"Dimension {n}")
    scale = models.Dimension.Scale.BINARY
    scale_max = 1
    margin = 0.02


class RegionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Region

    study = factory.SubFactory(StudyFactory)
    key = factory.Sequence(lambda n: f"region-{n}")
    name = factory.Sequence(lambda n: f"Region {n}")
    traffic_share = Decimal("1")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Membership

    study = factory.SubFactory(StudyFactory)
    user = factory.SubFactory(UserFactory)
    role = models.Membership.Role.ANNOTATOR


class PromptFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Prompt

    study = factory.SubFactory(StudyFactory)
    region = factory.SubFactory(RegionFactory, study=factory.SelfAttribute("..study"))
    external_id = factory.Sequence(lambda n: f"p{n}")
    text = "How do I reset my password?"


class ResponseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Response

    prompt = factory.SubFactory(PromptFactory)
    study = factory.SelfAttribute("prompt.study")
    region = factory.SelfAttribute("prompt.region")
    arm = factory.SubFactory(ArmFactory, study=factory.SelfAttribute("..study"))
    text = "Open Settings, then Security, then Reset password."


def make_study(
    *,
    slug: str = "support-bot",
    candidates: int = 2,
    regions: dict[str, str] | None = None,
) -> models.Study:
    """A small, complete study: an incumbent, candidates, three dimensions, regions."""
    study = StudyFactory(slug=slug, name=slug.replace("-", " ").title())
    ArmFactory(study=study, key="inc", model_name="acme-large-1", role="incumbent", position=0)
    for i in range(candidates):
        ArmFactory(study=study, key=f"cand{i + 1}", model_name=f"nova-{i + 1}", position=i + 1)
    DimensionFactory(study=study, key="correctness", title="Correctness", position=0)
    DimensionFactory(study=study, key="refusal", title="Refusal behaviour", position=1)
    DimensionFactory(
        study=study,
        key="style",
        title="Style adherence",
        scale="ordinal",
        scale_max=5,
        pass_threshold=4,
        judge_score_type="likert",
        judge_min=1,
        judge_max=5,
        judge_bins=5,
        point_descriptions=["Off-style", "Poor", "Acceptable", "Good", "Exemplary"],
        position=2,
    )
    for i, (key, share) in enumerate((regions or {"eu": "0.6", "us": "0.4"}).items()):
        RegionFactory(
            study=study, key=key, name=key.upper(), traffic_share=Decimal(share), position=i
        )
    return study
