"""Side-by-side grading in a real browser: pairs graded, flagged, undone and skipped from
the keyboard alone, then checked in the database side by side."""

from __future__ import annotations

from typing import Any

import pytest

from annotate.models import Annotation, Assignment, Response, Study
from tests.browser.conftest import log_in, screenshot
from tests.factories import PromptFactory
from tests.scores import scores_of

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SECRETS = ("acme-large-1", "nova-1", "nova-2", "cand1", "incumbent", "candidate", "0.8731",
           "partner", "policy")  # fmt: skip


def add_pairs(study: Study, n: int) -> None:
    """n prompts, each answered by the incumbent and the first candidate."""
    Study.objects.filter(pk=study.pk).update(side_by_side=True, overlap_share=0)
    arms = list(study.arms.order_by("position")[:2])
    regions = list(study.regions.all())
    scores = scores_of(dict.fromkeys(study.dimensions.all(), 0.8731), "judge-x")
    for i in range(n):
        region = regions[i % len(regions)]
        prompt = PromptFactory(
            study=study, region=region, external_id=f"p{i}", text=f"Customer question {i}?"
        )
        for k, arm in enumerate(arms):
            Response.objects.create(
                prompt=prompt, arm=arm, study=study, region=region,
                text=f"Answer {i}.{k + 1}: open Settings, then Security.", scores=scores,
            )  # fmt: skip


def shown(page: Any) -> str | None:
    return page.locator("#item").get_attribute("data-assignment")


def wait_next(page: Any, previous: str | None) -> None:
    page.wait_for_function(
        "prev => { const el = document.getElementById('item');"
        " return el && el.dataset.assignment !== prev; }",
        arg=previous,
    )


def press(page: Any, *keys: str) -> None:
    for key in keys:
        page.keyboard.press(key)


def texts(page: Any) -> tuple[str, str]:
    left = page.locator("[data-role=response][data-side=left]").inner_text()
    right = page.locator("[data-role=response][data-side=right]").inner_text()
    return left, right


def focused_dim(page: Any) -> str | None:
    return page.evaluate(
        "() => { const f = document.activeElement.closest('fieldset.dim');"
        " return f ? f.dataset.dim : null; }"
    )


def assert_blind(page: Any) -> None:
    html = page.content().lower()
    leaks = [s for s in SECRETS if s in html]
    assert not leaks, f"{leaks} leaked into the side-by-side page"


def live(text: str) -> Annotation:
    return Annotation.objects.get(response__text=text, undone_at__isnull=True)


def labels_of(annotation: Annotation) -> dict[str, int]:
    return {lab.dimension.key: lab.value for lab in annotation.labels.select_related("dimension")}


def test_pairs_graded_from_the_keyboard_alone(page, live_server, study, annotator):
    add_pairs(study, 4)
    log_in(page, live_server.url, annotator.username)
    page.goto(f"{live_server.url}/studies/{study.slug}/grade/")
    page.wait_for_selector("#grade-form fieldset.dim input:focus")
    assert page.locator("fieldset.dim").count() == 6  # 3 dimensions × 2 responses
    assert focused_dim(page) == "left-correctness"
    assert_blind(page)

    # Pair 1: the left response's three grades, then the right's; Enter submits both.
    pair1 = texts(page)
    press(page, "1", "0", "4")
    assert focused_dim(page) == "right-correctness"  # the keys run on into the other side
    press(page, "0", "1")
    screenshot(page, "grading_side_by_side")
    before = shown(page)
    press(page, "2", "Enter")
    wait_next(page, before)
    assert "Both saved." in page.locator("#grade-status").inner_text()
    assert_blind(page)

    # Pair 2: → jumps to the same dimension on the right; grade the right first; then f
    # flags the response in focus (the left one) with reason 2 and the left is graded.
    pair2 = texts(page)
    press(page, "ArrowRight")
    assert focused_dim(page) == "right-correctness"
    press(page, "ArrowDown", "ArrowLeft")
    assert focused_dim(page) == "left-refusal"
    press(page, "ArrowRight", "ArrowUp")
    assert focused_dim(page) == "right-correctness"
    press(page, "0", "1", "5")
    assert focused_dim(page) == "left-correctness"  # the first dimension still missing
    press(page, "f")
    assert page.locator("#flag-panel").evaluate("d => d.open")
    assert page.locator("input[name=flag_side][value=left]").is_checked()
    press(page, "2")
    assert not page.locator("#flag-panel").evaluate("d => d.open")
    press(page, "1", "1", "3")
    before = shown(page)
    press(page, "Enter")
    wait_next(page, before)
    assert "flagged" in page.locator("#grade-status").inner_text()

    # Pair 3: Enter with a side incomplete says what is missing and sends nothing.
    pair3 = texts(page)
    before = shown(page)
    press(page, "1", "1", "2", "1", "Enter")
    assert shown(page) == before
    missing = page.locator("[data-role=missing]").inner_text()
    assert "Response B: Refusal behaviour" in missing and "Response B: Style adherence" in missing
    assert "Response A" not in missing
    press(page, "0", "3", "Enter")
    wait_next(page, before)

    # u takes back pair 3: both responses come back on the same sides, grades preselected;
    # one grade is changed and the pair sent again.
    before = shown(page)
    press(page, "u")
    wait_next(page, before)
    assert texts(page) == pair3
    page.wait_for_selector("#grade-form input[name=label-right-style][value='3']:checked")
    assert page.locator("input[name=label-left-style][value='2']").is_checked()
    screenshot(page, "grading_side_by_side_undone")
    before = shown(page)
    press(page, "ArrowRight", "ArrowDown", "ArrowDown", "5", "Enter")
    wait_next(page, before)

    # Pair 4: s skips both, reason 1 by its digit.
    pair4 = texts(page)
    before = shown(page)
    press(page, "s", "1")
    wait_next(page, before)
    page.wait_for_selector("#item.grade-done")
    assert page.js_errors == []

    # The database, side by side.
    def grades(correctness: int, refusal: int, style: int) -> dict[str, int]:
        return {"correctness": correctness, "refusal": refusal, "style": style}

    for (left, right), want in (
        (pair1, (grades(1, 0, 4), grades(0, 1, 2))),
        (pair2, (grades(1, 1, 3), grades(0, 1, 5))),
        (pair3, (grades(1, 1, 2), grades(1, 0, 5))),
    ):
        assert labels_of(live(left)) == want[0], left
        assert labels_of(live(right)) == want[1], right
    flagged = live(pair2[0])
    assert flagged.flagged and flagged.flag_reason == "Contains personal data"
    assert not live(pair2[1]).flagged
    assert {live(t).status for t in pair4} == {"skipped"}
    assert {live(t).skip_reason for t in pair4} == {"Outside my expertise"}
    assert Annotation.objects.filter(undone_at__isnull=False).count() == 2  # pair 3's first try
    assert Annotation.objects.filter(undone_at__isnull=True).count() == 8
    # Where each response was shown is recorded: the page's left text is side 0.
    for left, right in (pair1, pair2, pair3, pair4):
        sides = dict(
            Assignment.objects.filter(
                response__text__in=[left, right], completed_at__isnull=False
            ).values_list("response__text", "side")
        )
        assert sides == {left: 0, right: 1}
    graded = Annotation.objects.filter(status="graded", undone_at__isnull=True)
    assert all(0 < a.time_spent_ms < 60_000 for a in graded)


def test_a_pair_is_graded_without_javascript(new_page, live_server, study, annotator):
    add_pairs(study, 1)
    page = new_page(java_script_enabled=False)
    log_in(page, live_server.url, annotator.username)
    page.goto(f"{live_server.url}/studies/{study.slug}/grade/")
    left, right = texts(page)
    for side, grades in (("left", ("pass", "fail", 2)), ("right", ("fail", "pass", 5))):
        page.locator(f"#dim-{side}-correctness label.choice-{grades[0]}").click()
        page.locator(f"#dim-{side}-refusal label.choice-{grades[1]}").click()
        page.locator(f"#dim-{side}-style label.choice").nth(grades[2] - 1).click()
    with page.expect_navigation():
        page.locator("#grade-form button[type=submit]").click()
    assert "Both saved." in page.locator("main").inner_text()
    assert "Thank you" in page.locator("#item").inner_text()
    screenshot(page, "grading_side_by_side_without_javascript")
    assert labels_of(live(left)) == {"correctness": 1, "refusal": 0, "style": 2}
    assert labels_of(live(right)) == {"correctness": 0, "refusal": 1, "style": 5}


def test_the_pair_fits_a_tablet_one_response_under_the_other(
    new_page, live_server, study, annotator
):
    add_pairs(study, 1)
    page = new_page(viewport={"width": 820, "height": 1180}, has_touch=True, is_mobile=True)
    log_in(page, live_server.url, annotator.username)
    page.goto(f"{live_server.url}/studies/{study.slug}/grade/")
    page.wait_for_selector("#grade-form fieldset.dim input:focus")
    boxes = page.evaluate(
        """() => Object.fromEntries(['left', 'right'].map(side => {
            const r = document.querySelector(`.pair-side[data-side=${side}]`)
                .getBoundingClientRect();
            return [side, {top: r.top + scrollY, bottom: r.bottom + scrollY, width: r.width}];
        }))"""
    )
    assert boxes["right"]["top"] >= boxes["left"]["bottom"] - 1
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 820
    page.locator("#dim-right-correctness label.choice-pass").tap()
    assert page.locator("input[name=label-right-correctness][value='1']").is_checked()
    screenshot(page, "grading_side_by_side_tablet")
