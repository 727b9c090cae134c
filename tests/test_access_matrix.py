"""Every URL of the URLconf × every persona → the expected status.

The URL list is generated from the URLconf (``get_resolver()``, recursively through every
``include``), so a new URL without a rule in ``RULES`` fails ``test_every_url_has_a_rule``.
The Django admin counts as one rule (``admin``: staff only), checked on its index.

Personas: ``anonymous``; ``annotator`` (annotator on the study); ``other_annotator``
(annotator on another study only); ``lead``; ``admin`` (the study's admin, site staff).

To add a rule: ``RULES["app-name"] = {persona: status}`` (a status, a set of statuses, or
``LOGIN`` for a redirect to the log-in page); start from a preset (``ADMIN_ONLY``…) and
override with ``{**PRESET, "lead": 200}``. URLs that answer GET with 405 need a rule in
``POST_RULES`` for the personas that must be refused, because GET alone does not show who
may post. Independently, every persona refused on GET is checked to be refused on POST.
URL keyword arguments are filled by ``KWARGS`` (add a maker for a new keyword).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from django.urls import NoReverseMatch, URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from annotate.models import Annotation, Assignment, Membership, Study
from tests.factories import (
    MembershipFactory,
    PromptFactory,
    ResponseFactory,
    UserFactory,
    make_study,
)

PERSONAS = ("anonymous", "annotator", "other_annotator", "lead", "admin")
LOGIN = "login"  # a redirect to the log-in page
ADMIN_LOGIN = "admin-login"  # a redirect to the admin's log-in page
API_ANON = frozenset({401, 403})


@dataclass(frozen=True)
class Redirect:
    """A redirect to this URL name (reversed with the study's slug when it takes one)."""

    to: str


@dataclass(frozen=True)
class Body:
    """This status with this text in the body (tells a "nothing yet" 404 from a denial)."""

    status: int
    text: str


Expected = int | str | frozenset[int] | set[int] | Redirect | Body
Rule = dict[str, Expected]


def _rule(anonymous: Expected, annotator: Expected, other_annotator: Expected,
          lead: Expected, admin: Expected) -> Rule:  # fmt: skip
    return dict(zip(PERSONAS, (anonymous, annotator, other_annotator, lead, admin), strict=True))


# Presets, by who may see the page. Non-members get 404 (the study is not disclosed),
# members with the wrong role 403.
EVERYONE = _rule(200, 200, 200, 200, 200)
LOGGED_IN = _rule(LOGIN, 200, 200, 200, 200)
ADMIN_ONLY = _rule(LOGIN, 403, 404, 403, 200)
LEAD_OR_ADMIN = _rule(LOGIN, 403, 404, 200, 200)
ANNOTATOR_ONLY = _rule(LOGIN, 200, 404, 403, 403)
STAFF_ONLY = _rule(LOGIN, 403, 403, 403, 200)
# POST-only views that check the role first: the right role gets 405 on GET.
ADMIN_POST_ONLY = _rule(LOGIN, 403, 404, 403, 405)

RULES: dict[str, Rule] = {
    # The Django admin, as one rule (checked on its index).
    "admin": _rule(ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, 200),
    # Project
    "healthz": EVERYONE,
    "favicon": _rule(301, 301, 301, 301, 301),  # to the static SVG
    "home": LOGGED_IN,
    "api-schema": EVERYONE,  # drf-spectacular serves the schema to anyone (AllowAny)
    # Accounts
    "login": EVERYONE,
    "logout": _rule(405, 405, 405, 405, 405),  # POST only (Django ≥ 5)
    "accounts-password-change": LOGGED_IN,
    "accounts-password-change-done": LOGGED_IN,
    "accounts-tokens": LOGGED_IN,
    # The one-time link: anyone may open it; a wrong token says the link no longer works.
    "accounts-set-password": EVERYONE,
    # The token in the URL is the annotator's: others get 404, the owner 405 on GET.
    "accounts-token-revoke": _rule(LOGIN, 405, 404, 404, 404),
    "accounts-audit": ADMIN_ONLY,
    # Study setup (admins)
    "annotate-setup-create": STAFF_ONLY,
    "annotate-setup": ADMIN_ONLY,
    "annotate-setup-study": ADMIN_ONLY,
    "annotate-setup-arms": ADMIN_ONLY,
    "annotate-setup-arm": ADMIN_ONLY,
    "annotate-setup-arm-delete": ADMIN_POST_ONLY,
    "annotate-setup-dimensions": ADMIN_ONLY,
    "annotate-setup-dimension-new": ADMIN_ONLY,
    "annotate-setup-dimension": ADMIN_ONLY,
    "annotate-setup-dimension-delete": ADMIN_POST_ONLY,
    "annotate-setup-regions": ADMIN_ONLY,
    "annotate-setup-data": ADMIN_ONLY,
    "annotate-setup-members": ADMIN_ONLY,
    "annotate-setup-member-remove": ADMIN_POST_ONLY,
    "annotate-setup-activate": ADMIN_ONLY,
    # Data in and out: admins import, leads and admins export the human labels.
    "annotate-upload": ADMIN_ONLY,
    "annotate-upload-job": ADMIN_ONLY,  # part of the setup flow
    "annotate-api-import": _rule(API_ANON, 403, 404, 403, 405),
    # Leads may watch an import (read-only); only admins start one.
    "annotate-api-import-job": _rule(API_ANON, 403, 404, 200, 200),
    "annotate-api-labels": _rule(API_ANON, 403, 404, 200, 200),
    "annotate-api-labels-as": _rule(API_ANON, 403, 404, 200, 200),
    # Grading (annotators only: leads and admins see model names, their grades are not blind)
    "annotate-study-home": ANNOTATOR_ONLY,
    "annotate-grade": ANNOTATOR_ONLY,
    "annotate-grade-submit": _rule(LOGIN, 405, 405, 405, 405),
    "annotate-grade-skip": _rule(LOGIN, 405, 405, 405, 405),
    "annotate-grade-undo": _rule(LOGIN, 405, 405, 405, 405),
    # The annotator's own answer, to correct: theirs alone.
    "annotate-grade-correct": ANNOTATOR_ONLY,
    "annotate-grade-pair-submit": _rule(LOGIN, 405, 405, 405, 405),
    "annotate-grade-pair-skip": _rule(LOGIN, 405, 405, 405, 405),
    "annotate-api-next": _rule(API_ANON, 405, 405, 405, 405),
    "annotate-api-submit": _rule(API_ANON, 405, 405, 405, 405),
    "annotate-api-skip": _rule(API_ANON, 405, 405, 405, 405),
    "annotate-api-undo": _rule(API_ANON, 405, 405, 405, 405),
    # Calibration (leads and admins; annotators never see verdicts or judge behaviour)
    "calibration-study": _rule(LOGIN, Redirect("annotate-study-home"), 404, 200, 200),
    "calibration-refit": _rule(LOGIN, 405, 405, 405, 405),
    "calibration-api-posterior": _rule(
        API_ANON, 403, 404, Body(404, "No posterior yet"), Body(404, "No posterior yet")
    ),
    "calibration-api-fits": _rule(API_ANON, 403, 404, 200, 200),
    "calibration-pair": LEAD_OR_ADMIN,
    "calibration-replan": LEAD_OR_ADMIN,  # reading the plan; re-planning: admins (POST)
    "calibration-annotators": LEAD_OR_ADMIN,
    "calibration-report": _rule(
        LOGIN, 403, 404, Body(404, "No posterior yet"), Body(404, "No posterior yet")
    ),
    "calibration-draws": _rule(
        LOGIN, 403, 404, Body(404, "No posterior yet"), Body(404, "No posterior yet")
    ),
}

# For URLs that answer GET with 405: who must be refused on POST (personas not listed
# are not posted as, so that no test here triggers a real action).
POST_RULES: dict[str, Rule] = {
    "annotate-grade-submit": {
        "anonymous": LOGIN,
        "other_annotator": 404,
        "lead": 403,
        "admin": 403,
    },  # fmt: skip
    "annotate-grade-skip": {
        "anonymous": LOGIN,
        "other_annotator": 404,
        "lead": 403,
        "admin": 403,
    },  # fmt: skip
    "annotate-grade-undo": {
        "anonymous": LOGIN,
        "other_annotator": 404,
        "lead": 403,
        "admin": 403,
    },  # fmt: skip
    # The pair in the URL is the annotator's own: others never reach it.
    "annotate-grade-pair-submit": {
        "anonymous": LOGIN,
        "other_annotator": 404,
        "lead": 403,
        "admin": 403,
    },  # fmt: skip
    "annotate-grade-pair-skip": {
        "anonymous": LOGIN,
        "other_annotator": 404,
        "lead": 403,
        "admin": 403,
    },  # fmt: skip
    "annotate-api-next": {
        "anonymous": API_ANON,
        "other_annotator": 404,
        "lead": 403,
        "admin": 403,
    },  # fmt: skip
    # The (empty) body is validated before ownership (400); with a valid body someone
    # else's assignment is a 404 (queue.submit / queue.skip filter on the annotator).
    "annotate-api-submit": {
        "anonymous": API_ANON,
        "other_annotator": {400, 404},
        "lead": {400, 404},
        "admin": {400, 404},
    },  # fmt: skip
    "annotate-api-skip": {
        "anonymous": API_ANON,
        "other_annotator": {400, 404},
        "lead": {400, 404},
        "admin": {400, 404},
    },  # fmt: skip
    "annotate-api-undo": {
        "anonymous": API_ANON,
        "other_annotator": 403,
        "lead": 403,
        "admin": 403,
    },  # fmt: skip
    "calibration-refit": {"anonymous": LOGIN, "annotator": 403, "other_annotator": 404},
    # An empty re-plan is refused by the form (200, nothing changes); leads may not post.
    "calibration-replan": {
        "anonymous": LOGIN,
        "annotator": 403,
        "other_annotator": 404,
        "lead": 403,
    },  # fmt: skip
    "annotate-api-import": {
        "anonymous": API_ANON,
        "annotator": 403,
        "other_annotator": 404,
        "lead": 403,
    },  # fmt: skip
    "logout": {},  # logging out is harmless for anyone
    "accounts-token-revoke": {
        "anonymous": LOGIN,
        "other_annotator": 404,
        "lead": 404,
        "admin": 404,
    },  # fmt: skip
    "annotate-setup-arm-delete": {
        "anonymous": LOGIN,
        "annotator": 403,
        "other_annotator": 404,
        "lead": 403,
    },  # fmt: skip
    "annotate-setup-dimension-delete": {
        "anonymous": LOGIN,
        "annotator": 403,
        "other_annotator": 404,
        "lead": 403,
    },  # fmt: skip
    "annotate-setup-member-remove": {
        "anonymous": LOGIN,
        "annotator": 403,
        "other_annotator": 404,
        "lead": 403,
    },  # fmt: skip
}


# --- The world the URLs are requested in -------------------------------------------------


@dataclass
class World:
    study: Study
    users: dict[str, Any]
    cache: dict[str, Any] = field(default_factory=dict)

    def once(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]

    @property
    def annotator(self) -> Any:
        return self.users["annotator"]

    def response(self, ext: str = "m1") -> Any:
        def make() -> Any:
            prompt = PromptFactory(study=self.study, region=self.study.regions.first(),
                                   external_id=ext)  # fmt: skip
            return ResponseFactory(prompt=prompt, arm=self.study.incumbent)

        return self.once(f"response-{ext}", make)


def _assignment(w: World) -> int:
    now = timezone.now()
    return Assignment.objects.create(
        study=w.study, response=w.response("m1"), annotator=w.annotator, policy="uniform",
        probability=0.5, leased_at=now, expires_at=now + timedelta(hours=1),
    ).pk  # fmt: skip


def _pair(w: World) -> uuid.UUID:
    """A side-by-side pair leased to the annotator (two responses of one prompt)."""
    key = uuid.uuid4()
    now = timezone.now()
    prompt = PromptFactory(study=w.study, region=w.study.regions.first(), external_id="pair")
    for side, arm in enumerate(w.study.arms.order_by("pk")[:2]):
        Assignment.objects.create(
            study=w.study, response=ResponseFactory(prompt=prompt, arm=arm), annotator=w.annotator,
            policy="uniform", probability=0.5, leased_at=now, expires_at=now + timedelta(hours=1),
            pair_key=key, side=side,
        )  # fmt: skip
    return key


def _annotation(w: World) -> int:
    return Annotation.objects.create(
        study=w.study, response=w.response("m2"), annotator=w.annotator
    ).pk


def _token(w: World) -> int:
    from accounts.services import issue_token

    return issue_token(user=w.annotator, name="matrix").token.pk


def _import_job(w: World) -> int:
    from annotate.models import ImportJob

    return ImportJob.objects.create(study=w.study, filename="matrix.jsonl").pk


def _fit(w: World) -> int:
    from calibration.models import Fit

    return Fit.objects.create(study=w.study, status=Fit.Status.FAILED, error="matrix").pk


# URL keyword → how to get a value for it in the world (objects of the study).
KWARGS: dict[str, Callable[[World], Any]] = {
    "slug": lambda w: w.study.slug,
    "study_slug": lambda w: w.study.slug,
    "arm_id": lambda w: w.study.arms.order_by("pk").last().pk,
    "dimension_id": lambda w: w.study.dimensions.order_by("pk").first().pk,
    "region_id": lambda w: w.study.regions.order_by("pk").first().pk,
    "membership_id": lambda w: w.study.memberships.get(user=w.annotator).pk,
    "response_id": lambda w: w.response("m1").pk,
    "assignment_id": lambda w: w.once("assignment", lambda: _assignment(w)),
    "annotation_id": lambda w: w.once("annotation", lambda: _annotation(w)),
    "pair_key": lambda w: w.once("pair", lambda: _pair(w)),
    "token_id": lambda w: w.once("token", lambda: _token(w)),
    "fit_id": lambda w: w.once("fit", lambda: _fit(w)),
    "job_id": lambda w: w.once("import_job", lambda: _import_job(w)),
    "arm": lambda w: w.study.candidates().order_by("pk").first().key,
    "format": lambda w: "csv",
    "uidb64": lambda w: "MQ",
    "token": lambda w: "not-a-valid-token",
}


# --- The URLconf, walked -------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    name: str  # "namespace:name", or "admin" for the whole admin site
    route: str
    kwargs: tuple[str, ...]


def _walk(patterns: list[Any], prefix: str = "", namespace: str = "") -> Iterator[Route]:
    for p in patterns:
        if isinstance(p, URLResolver):
            if p.namespace == "admin":
                yield Route("admin", prefix + str(p.pattern), ())
                continue
            ns = ":".join(filter(None, [namespace, p.namespace or ""]))
            yield from _walk(p.url_patterns, prefix + str(p.pattern), ns)
        elif isinstance(p, URLPattern):
            name = f"{namespace}:{p.name}" if namespace and p.name else (p.name or "")
            kwargs = tuple(p.pattern.regex.groupindex)
            yield Route(name, prefix + str(p.pattern), kwargs)


def routes() -> list[Route]:
    """One route per URL name (DRF format-suffix twins share a name: the first is kept)."""
    seen: dict[str, Route] = {}
    for r in _walk(get_resolver().url_patterns):
        key = r.name or f"<unnamed {r.route}>"
        if key not in seen or len(r.kwargs) < len(seen[key].kwargs):
            seen[key] = r
    return list(seen.values())


ROUTES = routes()


def test_every_url_has_a_name_and_a_rule():
    unnamed = [r.route for r in ROUTES if not r.name]
    missing = sorted(r.name for r in ROUTES if r.name and r.name not in RULES)
    assert not unnamed, f"URL patterns without a name (give them one): {unnamed}"
    assert not missing, (
        "URLs without an access rule in tests/test_access_matrix.py RULES: " + ", ".join(missing)
    )


def test_no_rule_for_a_url_that_is_gone():
    names = {r.name for r in ROUTES}
    assert not sorted(set(RULES) - names), "rules for URLs that no longer exist"
    assert not sorted(set(POST_RULES) - names), "POST rules for URLs that no longer exist"


def test_get_only_405_urls_have_post_rules():
    needs = sorted(n for n, rule in RULES.items() if 405 in rule.values() and n not in POST_RULES)
    assert not needs, f"URLs answering GET with 405 need POST_RULES entries: {needs}"


# --- The matrix ----------------------------------------------------------------------------


@pytest.fixture
def world(study, admin_user, lead, annotator) -> World:
    other = make_study(slug="other-study")
    oscar = UserFactory(username="oscar")
    MembershipFactory(study=other, user=oscar, role=Membership.Role.ANNOTATOR)
    users = {"anonymous": None, "annotator": annotator, "other_annotator": oscar,
             "lead": lead, "admin": admin_user}  # fmt: skip
    return World(study=study, users=users)


def _url(route: Route, w: World) -> str:
    if route.name == "admin":
        return reverse("admin:index")
    unknown = [k for k in route.kwargs if k not in KWARGS]
    if unknown:
        pytest.fail(f"{route.name}: no value for URL keyword(s) {unknown}; add them to KWARGS")
    return reverse(route.name, kwargs={k: KWARGS[k](w) for k in route.kwargs})


def _matches(response: Any, expected: Expected, w: World) -> bool:
    if isinstance(expected, Redirect):
        try:
            target = reverse(expected.to, kwargs={"slug": w.study.slug})
        except NoReverseMatch:
            target = reverse(expected.to)
        return response.status_code == 302 and response["Location"] == target
    if isinstance(expected, Body):
        return (
            response.status_code == expected.status and expected.text in response.content.decode()
        )
    if expected == LOGIN:
        return response.status_code == 302 and response["Location"].startswith(reverse("login"))
    if expected == ADMIN_LOGIN:
        return response.status_code == 302 and response["Location"].startswith(
            reverse("admin:login")
        )
    if isinstance(expected, set | frozenset):
        return response.status_code in expected
    return response.status_code == expected


def _request(client: Any, method: str, url: str, user: Any) -> Any:
    client.logout()
    if user is not None:
        client.force_login(user)
    return getattr(client, method)(url)


def _describe(r: Any) -> str:
    where = f" → {r['Location']}" if r.status_code in (301, 302) else ""
    return f"{r.status_code}{where}"


DENIED = {403, 404, 401}


@pytest.mark.django_db
@pytest.mark.parametrize("route", [r for r in ROUTES if r.name in RULES], ids=lambda r: r.name)
def test_access(client, world, route):
    url = _url(route, world)
    rule = RULES[route.name]
    problems = []
    for persona in PERSONAS:
        expected = rule[persona]
        r = _request(client, "get", url, world.users[persona])
        if not _matches(r, expected, world):
            problems.append(f"GET {persona}: expected {expected}, got {_describe(r)}")
        refused_on_get = expected in (LOGIN, ADMIN_LOGIN) or (
            isinstance(expected, int) and expected in DENIED
        )
        if (
            route.name != "admin"
            and refused_on_get
            and persona not in POST_RULES.get(route.name, {})
        ):
            # Refused on GET ⇒ refused on POST as well (no write-only hole); a 405 from a
            # GET-only view refuses too.
            r = _request(client, "post", url, world.users[persona])
            if not (_matches(r, expected, world) or r.status_code == 405):
                problems.append(f"POST {persona}: refused on GET ({expected}), got {_describe(r)}")
    for persona, expected in POST_RULES.get(route.name, {}).items():
        r = _request(client, "post", url, world.users[persona])
        if not _matches(r, expected, world):
            problems.append(f"POST {persona}: expected {expected}, got {_describe(r)}")
    assert not problems, f"{route.name} ({url}):\n  " + "\n  ".join(problems)


# --- Blindness: what annotators may see -------------------------------------------------

JUDGE_VALUE = 0.7319
SECRET_COMMENT = "comment-of-another-annotator-7319"


@pytest.fixture
def blind_world(world) -> World:
    """Every arm answered every prompt, with judge scores; another annotator graded one."""
    from annotate.models import Label
    from tests.scores import scores_of

    study = world.study
    dora = UserFactory(username="dora")
    MembershipFactory(study=study, user=dora, role=Membership.Role.ANNOTATOR)
    for i in range(3):
        prompt = PromptFactory(study=study, region=study.regions.first(), external_id=f"b{i}")
        for arm in study.arms.all():
            response = ResponseFactory(
                prompt=prompt,
                arm=arm,
                text=f"answer {i} of an arm",
                scores=scores_of(
                    dict.fromkeys(study.dimensions.all(), JUDGE_VALUE), "judge-model-x"
                ),
            )
            if i == 0:
                annotation = Annotation.objects.create(
                    study=study, response=response, annotator=dora, comment=SECRET_COMMENT
                )
                for d in study.dimensions.all():
                    Label.objects.create(annotation=annotation, dimension=d, value=1)
    return world


def _secrets(w: World) -> list[str]:
    arms = list(w.study.arms.all())
    return [
        *(a.model_name for a in arms),
        *(a.key for a in arms if len(a.key) >= 4),  # short keys ("inc") would match words
        "judge-model-x",
        str(JUDGE_VALUE),
        SECRET_COMMENT,
        "dora",
    ]


@pytest.mark.django_db
def test_annotators_never_see_model_identity_judge_scores_or_others_grades(client, blind_world):
    w = blind_world
    client.force_login(w.annotator)
    pages = [r for r in ROUTES if r.name in RULES and RULES[r.name]["annotator"] == 200]
    assert any(r.name == "annotate-grade" for r in pages)
    seen = []
    for route in pages:
        if route.name in ("admin", "api-schema"):
            continue  # the schema is static documentation (its examples name arms "cand1")
        r = client.get(_url(route, w), follow=True)
        seen.append((route.name, r.content.decode()))
    r = client.post(reverse("annotate-api-next", kwargs={"slug": w.study.slug}))
    assert r.status_code == 200, r.content
    seen.append(("annotate-api-next (POST)", r.content.decode()))
    assert "answer" in dict(seen)["annotate-grade"], "the grading page showed no item"
    leaks = [(name, s) for name, body in seen for s in _secrets(w) if s in body]
    assert not leaks, f"annotator pages leak: {leaks}"
