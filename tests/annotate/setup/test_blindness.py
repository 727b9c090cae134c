"""Blindness by construction (issue 14, item 3): annotators read the instructions, never the
lead's description, and setup refuses to activate a study whose annotator-facing text names
a model, an arm or an arm's role."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotate import demo
from annotate.models import Study
from annotate.setup import blindness
from annotate.setup.services import activation_problems
from tests.factories import PromptFactory, ResponseFactory

pytestmark = pytest.mark.django_db


def url(name: str, study: Study) -> str:
    return reverse(name, kwargs={"slug": study.slug})


def test_model_terms_include_the_key_the_name_without_its_date_and_the_family():
    terms = blindness.model_terms([("cand-a", "vega-medium-2025-03")])
    assert {"cand-a", "vega-medium-2025-03", "vega-medium", "vega"} <= set(terms)


def test_a_family_name_is_found_inside_a_longer_model_name_but_not_inside_a_word():
    assert blindness.find_terms("Compare Orion-Large answers", ["orion"]) == ["orion"]
    assert blindness.find_terms("the orionids meteor shower", ["orion"]) == []


def test_the_annotator_study_page_shows_the_instructions_not_the_description(
    client, annotator, study
):
    study.description = "Can nova-1 replace acme-large-1?"
    study.instructions = "Grade what you read, against the policy sheet."
    study.save()
    client.force_login(annotator)
    html = client.get(url("annotate-study-home", study)).content.decode()
    assert "against the policy sheet" in html
    assert "nova-1" not in html and "acme-large-1" not in html


def test_activation_is_refused_while_a_rubric_names_a_model(study):
    study.status = Study.Status.DRAFT
    study.save()
    prompt = PromptFactory(study=study, region=study.regions.first())
    ResponseFactory(prompt=prompt, arm=study.arms.first())
    assert activation_problems(study) == []
    dim = study.dimensions.get(key="correctness")
    dim.rubric = "Nova-2 tends to ramble: be strict with it."
    dim.save()
    problems = activation_problems(study)
    assert any("Dimension “correctness”: rubric contains “nova-2”" in p for p in problems)


def test_saving_instructions_that_name_the_incumbent_warns_the_admin(client, admin_user, study):
    client.force_login(admin_user)
    data = {
        "name": study.name,
        "description": "",
        "instructions": "One of these answers is from acme-large, our incumbent.",
        "confidence": "0.95",
        "label_budget": "100",
        "exploration_share": "0.15",
        "overlap_share": "0.1",
        "lease_seconds": "600",
        "refit_every": "20",
        "confirmed": "1",
    }
    r = client.post(url("annotate-setup-study", study), data, follow=True)
    assert "Annotators would learn the models" in r.content.decode()
    assert "setup" in r.redirect_chain[-1][0]


def test_the_demo_tells_annotators_nothing_about_the_models(db):
    study = demo._create_study_shell(slug="demo-blind", name=demo.DEMO_NAME, seed=7)
    assert study.instructions.startswith("You grade answers")
    assert "orion" in study.description  # the lead's description may name them
    assert blindness.leaks(study) == []
    correctness = study.dimensions.get(key="correctness")
    assert len(correctness.rubric.splitlines()) <= 4  # the policy sheet moved to the guidelines
