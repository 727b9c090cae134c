"""The content security policy header: strict for scripts, with a per-response nonce that
the page's scripts and htmx's injected style carry."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def directives(header: str) -> dict[str, list[str]]:
    out = {}
    for part in header.split(";"):
        name, *values = part.split()
        out[name] = values
    return out


def test_pages_carry_a_strict_policy(client):
    r = client.get(reverse("login"))
    policy = directives(r["Content-Security-Policy"])
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"][0] == "'self'"
    assert "'unsafe-inline'" not in policy["script-src"]
    assert "'unsafe-eval'" not in policy["script-src"]
    assert "'unsafe-inline'" not in policy["style-src"]
    assert policy["object-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    assert policy["form-action"] == ["'self'"]


def test_the_nonce_is_fresh_and_matches_the_page(client):
    nonces = []
    for _ in range(2):
        r = client.get(reverse("login"))
        script_src = directives(r["Content-Security-Policy"])["script-src"]
        nonce = next(v for v in script_src if v.startswith("'nonce-"))[7:-1]
        body = r.content.decode()
        assert f'nonce="{nonce}"' in body  # htmx's <script>
        assert f'"inlineStyleNonce": "{nonce}"' in body  # htmx's injected indicator style
        nonces.append(nonce)
    assert nonces[0] != nonces[1]


def test_every_inline_script_in_a_page_has_the_nonce(client, admin_user, study):
    client.force_login(admin_user)
    for name in ("home", "annotate-setup", "annotate-setup-regions", "accounts-tokens"):
        kwargs = {"slug": study.slug} if name.startswith("annotate-setup") else {}
        r = client.get(reverse(name, kwargs=kwargs))
        body = r.content.decode()
        for tag in re.findall(r"<script\b[^>]*>", body):
            assert "src=" in tag or "nonce=" in tag, f"{name}: inline script without nonce: {tag}"
        assert not re.search(r"\son[a-z]+\s*=", body), f"{name}: inline event handler"
