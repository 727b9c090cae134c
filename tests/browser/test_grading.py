"""The grading page in a real browser: a whole session from the keyboard, blind and safe."""

from __future__ import annotations

import json
import statistics
import time
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from annotate.models import Annotation, Assignment, Response, Study
from tests.browser.conftest import OUTPUT, log_in, screenshot
from tests.factories import PromptFactory
from tests.scores import scores_of

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

JUDGE_VALUE = 0.8731
SECRETS = ("acme-large-1", "nova-1", "nova-2", "cand1", "incumbent", "candidate", "0.8731")
EVIL = (
    "<script>window.__pwned = 'script'</script>"
    "<img src=x onerror=\"window.__pwned = 'img'\">"
    '<b id="injected">bold?</b> Item {i}.'
)


def add_items(study: Study, texts: list[str]) -> list[Response]:
    """One response per text, over the study's arms, each with a judge score per dimension."""
    Study.objects.filter(pk=study.pk).update(overlap_share=0)
    arms = list(study.arms.all())
    regions = list(study.regions.all())
    scores = scores_of(dict.fromkeys(study.dimensions.all(), JUDGE_VALUE), "judge-x")
    out = []
    for i, text in enumerate(texts):
        region = regions[i % len(regions)]
        prompt = PromptFactory(
            study=study, region=region, external_id=f"b{i}", text=f"Customer question {i}?"
        )
        response = Response.objects.create(
            prompt=prompt,
            arm=arms[i % len(arms)],
            study=study,
            region=region,
            text=text,
            scores=scores,
        )
        out.append(response)
    return out


def shown(page: Any) -> str | None:
    return page.locator("#item").get_attribute("data-assignment")


def wait_next(page: Any, previous: str | None) -> None:
    """Wait until #item shows another assignment (or the thank-you, which has none)."""
    page.wait_for_function(
        "prev => { const el = document.getElementById('item');"
        " return el && el.dataset.assignment !== prev; }",
        arg=previous,
    )


def press(page: Any, *keys: str) -> None:
    for key in keys:
        page.keyboard.press(key)


def response_text(page: Any) -> str:
    return page.locator("[data-role=response]").inner_text()


def assert_blind(page: Any) -> None:
    html = page.content().lower()
    for secret in SECRETS:
        assert secret not in html, f"{secret!r} leaked into the grading page"


def labels_of(annotation: Annotation) -> dict[str, int]:
    return {lab.dimension.key: lab.value for lab in annotation.labels.select_related("dimension")}


def test_a_whole_session_from_the_keyboard(page, live_server, study, annotator):
    texts = [f"Answer number {i}: open Settings, then Security." for i in range(6)]
    add_items(study, texts)
    log_in(page, live_server.url, annotator.username)

    # The home page's start button has the focus: Enter starts grading. The browser applies
    # autofocus when it next renders, which may come after the load event on a busy machine.
    page.wait_for_selector("a.button.primary[autofocus]:focus")
    page.keyboard.press("Enter")
    page.wait_for_selector("#grade-form fieldset.dim input:focus")
    assert page.locator("fieldset.dim").count() == 3
    assert_blind(page)

    press(page, "Shift+?")
    assert page.locator("#keys-help").evaluate("d => d.open")
    screenshot(page, "grading_keys_help")
    press(page, "Escape")
    assert not page.locator("#keys-help").evaluate("d => d.open")

    seen: list[str] = []  # the response text of each new item, in the order served
    timings: list[dict[str, Any]] = []

    def act(label: str, *keys: str) -> None:
        before = shown(page)
        if label in {"grade", "skip"}:
            seen.append(response_text(page))
        start = time.perf_counter()
        press(page, *keys)
        wait_next(page, before)
        timings.append({"action": label, "ms": round((time.perf_counter() - start) * 1000, 1)})
        assert_blind(page)

    # 1: grade; a digit grades the current dimension and moves on; Enter submits.
    screenshot(page, "grading_item")
    act("grade", "1", "0", "4", "Enter")
    # 2: another grade, with a comment: c goes to the box, Ctrl+Enter submits from it.
    press(page, "0", "1", "2", "c")
    page.keyboard.type("Too terse; skips a step.")
    act("grade", "Control+Enter")
    # 3: skip, reason 2 picked by its digit.
    press(page, "s")
    assert page.locator("#skip-panel").evaluate("d => d.open")
    screenshot(page, "grading_skip_panel")
    act("skip", "2")
    # 4: grade and flag (reason 2), then submit.
    press(page, "1", "1", "5", "f")
    assert page.locator("#flag-panel").evaluate("d => d.open")
    press(page, "2")
    assert not page.locator("#flag-panel").evaluate("d => d.open")
    assert "flagged" in page.locator("[data-role=flag-state]").inner_text()
    screenshot(page, "grading_flagged")
    act("grade", "Enter")
    # 5: grade, then undo it from the next item and grade it again differently.
    act("grade", "1", "1", "3", "Enter")
    undone_text = seen[4]
    act("undo", "u")
    assert response_text(page) == undone_text
    checked = page.evaluate(
        "() => Array.from(document.querySelectorAll('#grade-form input:checked'))"
        ".map(e => e.name + '=' + e.value)"
    )
    status = page.locator("#grade-status").inner_text()
    assert "label-style=3" in checked, (checked, status)  # the undone grade comes back
    screenshot(page, "grading_undone")
    act("regrade", "0", "Enter")
    # 6: last item; Enter on an incomplete form does not submit.
    before = shown(page)
    press(page, "1", "Enter")
    assert shown(page) == before
    assert "Still to grade" in page.locator("[data-role=missing]").inner_text()
    act("grade", "0", "5", "Enter")

    page.wait_for_selector("#item.grade-done")
    assert "Thank you" in page.locator("#item").inner_text()
    screenshot(page, "grading_done")
    assert page.js_errors == []

    by_text = {text: i for i, text in enumerate(texts)}
    live = {
        by_text[a.response.text]: a
        for a in Annotation.objects.filter(annotator=annotator, undone_at__isnull=True)
        .select_related("response")
        .prefetch_related("labels__dimension")
    }
    assert len(seen) == 6
    got = {pos: live[by_text[text]] for pos, text in enumerate(seen)}
    assert labels_of(got[0]) == {"correctness": 1, "refusal": 0, "style": 4}
    assert labels_of(got[1]) == {"correctness": 0, "refusal": 1, "style": 2}
    assert got[1].comment == "Too terse; skips a step."
    assert got[2].status == "skipped" and got[2].skip_reason == "Prompt or response unreadable"
    assert labels_of(got[2]) == {}
    assert labels_of(got[3]) == {"correctness": 1, "refusal": 1, "style": 5}
    assert got[3].flagged and got[3].flag_reason == "Contains personal data"
    assert labels_of(got[4]) == {"correctness": 0, "refusal": 1, "style": 3}
    assert labels_of(got[5]) == {"correctness": 1, "refusal": 0, "style": 5}
    assert len(live) == 6
    undone = Annotation.objects.get(annotator=annotator, undone_at__isnull=False)
    assert undone.response.text == undone_text
    assert labels_of(undone) == {"correctness": 1, "refusal": 1, "style": 3}
    # The browser measured each grade (skip_item records no time).
    assert all(0 < a.time_spent_ms < 60_000 for a in live.values() if a.status == "graded")

    per_item = [t["ms"] for t in timings if t["action"] in {"grade", "regrade"}]
    median = statistics.median(per_item)
    # How much of it is the request itself (server work + transfer), per the browser.
    requests = page.evaluate(
        "() => performance.getEntriesByType('resource')"
        ".filter(e => e.name.includes('/grade/') && e.initiatorType === 'xmlhttprequest')"
        ".map(e => Math.round(e.duration))"
    )
    OUTPUT.mkdir(exist_ok=True)
    (OUTPUT / "grading_timings.json").write_text(
        json.dumps(
            {
                "what": "wall time from an item shown to the next item shown, keys typed by "
                "Playwright (server + swap latency, not human reading time)",
                "median_ms_per_graded_item": median,
                "median_ms_per_request": statistics.median(requests) if requests else None,
                "transitions": timings,
                "request_ms": requests,
            },
            indent=2,
        )
    )
    print(f"\nmedian time per graded item: {median:.0f} ms over {len(per_item)} items; ", end="")
    print(f"median request {statistics.median(requests) if requests else '?'} ms")


def test_keys_pressed_before_a_swap_settles_still_go_through_htmx(
    page, live_server, study, annotator
):
    """htmx binds swapped-in forms only when the swap settles; a fast key must not post natively.

    A long settle delay makes the window wide enough that every key below lands in it.
    """
    texts = [f"Settle test answer {i}." for i in range(3)]
    add_items(study, texts)
    log_in(page, live_server.url, annotator.username)
    page.goto(f"{live_server.url}/studies/{study.slug}/grade/")
    page.wait_for_selector("#grade-form fieldset.dim input:focus")
    page.evaluate("() => { htmx.config.defaultSettleDelay = 1500; }")
    loads: list[str] = []
    page.on("load", lambda _page: loads.append("load"))

    first = response_text(page)
    before = shown(page)
    press(page, "1", "1", "3", "Enter")
    wait_next(page, before)
    # The new item is in the DOM but not yet settled: undo it straight away.
    before = shown(page)
    press(page, "u")
    wait_next(page, before)
    assert response_text(page) == first
    page.wait_for_selector("#grade-form input[name=label-style][value='3']:checked")
    assert "preselected" in page.locator("#grade-status").inner_text()
    assert loads == [], "a key posted the form natively and reloaded the page"
    assert page.js_errors == []


def test_html_in_a_response_is_shown_as_text_and_never_runs(page, live_server, study, annotator):
    add_items(study, [EVIL.format(i=0), EVIL.format(i=1)])
    log_in(page, live_server.url, annotator.username)
    page.goto(f"{live_server.url}/studies/{study.slug}/grade/")

    for _ in range(2):
        text = response_text(page)
        assert text.startswith("<script>window.__pwned = 'script'</script><img src=x")
        assert page.locator("#injected").count() == 0
        assert page.evaluate("() => window.__pwned === undefined")
        screenshot(page, "grading_escaped_html")
        # The second item arrives through an htmx swap, which would run real script tags.
        before = shown(page)
        press(page, "1", "1", "3", "Enter")
        wait_next(page, before)
    assert page.evaluate("() => window.__pwned === undefined")
    assert page.js_errors == []


def test_an_expired_lease_says_so_and_keeps_the_grade(page, live_server, study, annotator):
    add_items(study, ["Only answer."])
    log_in(page, live_server.url, annotator.username)
    page.goto(f"{live_server.url}/studies/{study.slug}/grade/")
    page.wait_for_selector("#grade-form")
    assignment = Assignment.objects.get(annotator=annotator)
    now = timezone.now()
    Assignment.objects.filter(pk=assignment.pk).update(
        leased_at=now - timedelta(minutes=30), expires_at=now - timedelta(minutes=1)
    )

    press(page, "1", "0", "2", "Enter")
    page.wait_for_selector("#item.grade-done")
    status = page.locator("#grade-status").inner_text()
    assert "time on that item had run out" in status and "grade is kept" in status
    screenshot(page, "grading_lease_expired")
    annotation = Annotation.objects.get(annotator=annotator)
    assert annotation.response_id == assignment.response_id
    assert labels_of(annotation) == {"correctness": 1, "refusal": 0, "style": 2}


def test_a_network_error_keeps_the_answers_and_a_retry_counts_once(
    page, live_server, study, annotator
):
    add_items(study, ["First answer.", "Second answer.", "Third answer."])
    log_in(page, live_server.url, annotator.username)
    page.goto(f"{live_server.url}/studies/{study.slug}/grade/")
    page.wait_for_selector("#grade-form")
    banner = page.locator("#grade-offline")

    # The request never reaches the server.
    page.route("**/submit/", lambda route: route.abort("internetdisconnected"))
    before = shown(page)
    press(page, "1", "0", "4", "Enter")
    banner.wait_for(state="visible")
    assert "could not be reached" in banner.inner_text()
    assert shown(page) == before
    assert page.locator("input[name=label-style][value='4']").is_checked()
    screenshot(page, "grading_network_error")
    page.unroute("**/submit/")
    press(page, "r")
    wait_next(page, before)
    assert banner.is_hidden()

    # The server saves the grade but the answer is lost on the way back (a 502 from a
    # proxy, say): the retry reuses the client key, so the grade is not counted twice.
    def save_then_fail(route: Any) -> None:
        route.fetch()
        route.fulfill(status=502, body="Bad gateway")

    page.route("**/submit/", save_then_fail)
    before = shown(page)
    press(page, "0", "0", "1", "Enter")
    banner.wait_for(state="visible")
    assert "(502)" in banner.inner_text()
    page.unroute("**/submit/")
    press(page, "r")
    wait_next(page, before)
    assert "Already saved" in page.locator("#grade-status").inner_text()

    graded = Annotation.objects.filter(annotator=annotator)
    assert graded.count() == 2
    assert sorted(tuple(sorted(labels_of(a).values())) for a in graded) == [(0, 0, 1), (0, 1, 4)]


def test_the_page_fits_a_tablet(new_page, live_server, study, annotator):
    add_items(study, ["A fairly long answer. " * 40])
    page = new_page(viewport={"width": 820, "height": 1180}, has_touch=True, is_mobile=True)
    log_in(page, live_server.url, annotator.username)
    page.goto(f"{live_server.url}/studies/{study.slug}/grade/")
    page.wait_for_selector("#grade-form fieldset.dim input:focus")
    # The first grade has the focus, but the page still starts at the prompt...
    assert page.evaluate("() => window.scrollY") == 0
    # ...and Page Down scrolls the text while a grade keeps the focus.
    page.keyboard.press("PageDown")
    page.wait_for_function("() => window.scrollY > 0")
    assert page.evaluate("() => document.activeElement.type") == "radio"
    boxes = page.evaluate(
        """() => Object.fromEntries(['.grade-text', '.grade-panel'].map(sel => {
            const r = document.querySelector(sel).getBoundingClientRect();
            return [sel, {top: r.top + scrollY, bottom: r.bottom + scrollY, width: r.width}];
        }))"""
    )
    text, panel = boxes[".grade-text"], boxes[".grade-panel"]
    assert panel["top"] >= text["bottom"] - 1  # one column: the rubric under the text
    assert panel["width"] <= 820
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 820, "the page scrolls sideways"
    # Touch: tapping a grade's label picks it.
    page.locator("fieldset#dim-correctness label.choice-pass").tap()
    assert page.locator("input[name=label-correctness][value='1']").is_checked()
    screenshot(page, "grading_tablet")


def test_grading_works_without_javascript(new_page, live_server, study, annotator):
    add_items(study, ["First answer.", "Second answer."])
    page = new_page(java_script_enabled=False)
    log_in(page, live_server.url, annotator.username)
    page.goto(f"{live_server.url}/studies/{study.slug}/grade/")
    first = response_text(page)
    page.locator("#dim-correctness label.choice-pass").click()
    page.locator("#dim-refusal label.choice-fail").click()
    page.locator("#dim-style label.choice").nth(2).click()
    page.locator("#flag-panel summary").click()
    page.locator("#flag-panel label.reason").nth(3).click()  # "Broken or truncated"
    with page.expect_navigation():
        page.locator("#grade-form button[type=submit]").click()
    assert "Saved and flagged." in page.locator("main").inner_text()
    assert response_text(page) != first
    page.locator("#skip-panel summary").click()
    page.locator("#skip-panel label.reason").first.click()
    with page.expect_navigation():
        page.locator("#skip-form button[type=submit]").click()
    assert "Thank you" in page.locator("#item").inner_text()
    screenshot(page, "grading_without_javascript")

    graded = Annotation.objects.get(annotator=annotator, status="graded")
    assert labels_of(graded) == {"correctness": 1, "refusal": 0, "style": 3}
    assert graded.flagged and graded.flag_reason == "Broken or truncated"
    skipped = Annotation.objects.get(annotator=annotator, status="skipped")
    assert skipped.skip_reason == "Outside my expertise"
