"""Builders shared by the queue's tests (services, API, concurrency)."""

from __future__ import annotations

import uuid
from typing import Any

from annotate import hooks
from annotate.models import Arm, Membership, Response, Study
from tests.factories import MembershipFactory, PromptFactory, UserFactory

GOOD_LABELS = {"correctness": 1, "refusal": 0, "style": 4}


def add_responses(study: Study, n: int, *, cells: tuple[str, ...] = ("0.0.1",)) -> list[Response]:
    """n responses spread over the study's arms, regions and the given cells."""
    arms = list(study.arms.all())
    regions = list(study.regions.all())
    start = Response.objects.filter(study=study).count()
    out = []
    for i in range(start, start + n):
        region = regions[i % len(regions)]
        prompt = PromptFactory(study=study, region=region, external_id=f"q{study.pk}-{i}")
        out.append(
            Response.objects.create(
                prompt=prompt,
                arm=arms[i % len(arms)],
                study=study,
                region=region,
                text=f"answer {i}",
                cell=cells[i % len(cells)],
                metadata={"secret": "nova-1 wrote this"},
            )
        )
    return out


def fake_selection_rule(
    monkeypatch: Any, *, pick: Any = None, status: tuple[bool, str] = (True, "")
) -> None:
    """Stand in for calibration's selection rule: it offers ``pick`` and answers ``status``.

    With the defaults the rule offers no cell and keeps the study open, so the queue picks
    with its own uniform fallback.
    """
    monkeypatch.setattr(hooks, "pick_cell", lambda *, study, rng: pick)
    monkeypatch.setattr(hooks, "selection_status", lambda *, study, graded: status)


def add_annotator(study: Study, username: str) -> Any:
    user = UserFactory(username=username)
    MembershipFactory(study=study, user=user, role=Membership.Role.ANNOTATOR)
    return user


def key() -> uuid.UUID:
    return uuid.uuid4()


def incumbent(study: Study) -> Arm:
    return study.arms.get(role=Arm.Role.INCUMBENT)
