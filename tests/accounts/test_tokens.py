"""API tokens: several per user, shown once, stored hashed, revocable, and they authenticate."""

from __future__ import annotations

import pytest
from django.urls import reverse
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

from accounts.authentication import ApiTokenAuthentication
from accounts.models import ApiToken, AuditEvent
from accounts.services import issue_token, revoke_token

pytestmark = pytest.mark.django_db


class WhoAmI(APIView):
    authentication_classes = [ApiTokenAuthentication]

    def get(self, request):
        from rest_framework.response import Response

        return Response({"username": request.user.get_username()})


def call(key: str | None, keyword: str = "Token"):
    headers = {"HTTP_AUTHORIZATION": f"{keyword} {key}"} if key else {}
    return WhoAmI.as_view()(APIRequestFactory().get("/api/whoami", **headers))


def test_a_token_authenticates_its_user(annotator):
    issued = issue_token(user=annotator, name="ci")
    response = call(issued.key)
    assert response.status_code == 200 and response.data == {"username": "charlie"}
    assert call(issued.key, keyword="Bearer").status_code == 200
    issued.token.refresh_from_db()
    assert issued.token.last_used_at is not None


def test_only_a_hash_of_the_secret_is_stored(annotator):
    issued = issue_token(user=annotator, name="ci")
    assert issued.token.key_hash == ApiToken.hash_key(issued.key)
    assert not ApiToken.objects.filter(key_hash=issued.key).exists()
    assert issued.token.prefix == issued.key[:8]


def test_a_revoked_token_is_refused_and_others_still_work(annotator):
    first, second = issue_token(user=annotator, name="a"), issue_token(user=annotator, name="b")
    revoke_token(user=annotator, token=first.token)
    assert call(first.key).status_code == 401
    assert call(second.key).status_code == 200
    assert AuditEvent.objects.filter(action="token.revoke", actor=annotator).count() == 1


def test_bad_headers_are_refused(annotator):
    assert call("not-a-token").status_code == 401
    response = WhoAmI.as_view()(
        APIRequestFactory().get("/api/whoami", HTTP_AUTHORIZATION="Token a b")
    )
    assert response.status_code == 401
    assert call(None).status_code in (401, 403)


def test_an_inactive_users_token_is_refused(annotator):
    issued = issue_token(user=annotator, name="ci")
    annotator.is_active = False
    annotator.save()
    assert call(issued.key).status_code == 401


def test_the_token_page_shows_a_new_secret_once(client, annotator):
    client.force_login(annotator)
    r = client.post(reverse("accounts-tokens"), {"name": "nightly import"})
    assert r.status_code == 200
    key = r.context["issued"].key
    assert key in r.content.decode()
    assert r["Cache-Control"] == "no-store"
    r = client.get(reverse("accounts-tokens"))
    assert key not in r.content.decode() and "nightly import" in r.content.decode()


def test_users_revoke_their_own_tokens_only(client, annotator, lead):
    mine = issue_token(user=annotator, name="mine").token
    theirs = issue_token(user=lead, name="theirs").token
    client.force_login(annotator)
    assert client.get(reverse("accounts-token-revoke", args=[mine.pk])).status_code == 405
    assert client.post(reverse("accounts-token-revoke", args=[theirs.pk])).status_code == 404
    r = client.post(reverse("accounts-token-revoke", args=[mine.pk]))
    assert r.status_code == 302
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert mine.revoked_at is not None and theirs.revoked_at is None


def test_the_configured_api_accepts_tokens(client, annotator):
    """The project's DRF settings use these tokens (the schema endpoint is public)."""
    from django.conf import settings

    classes = settings.REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"]
    assert "accounts.authentication.ApiTokenAuthentication" in classes
    assert "rest_framework.authentication.TokenAuthentication" not in classes
