"""Log-in, log-out, password change; repeated failed log-ins are refused with a 429."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import AuditEvent, LoginFailure
from accounts.services import LOGIN_WINDOW
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
PASSWORD = "correct horse battery staple"


@pytest.fixture
def dora(db):
    return UserFactory(username="dora")


def login(client, username: str, password: str, ip: str = "10.0.0.1"):
    return client.post(
        reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=ip
    )


def test_log_in_and_out(client, dora):
    r = login(client, "dora", PASSWORD)
    assert r.status_code == 302 and r["Location"] == reverse("home")
    assert client.get(reverse("home")).status_code == 200
    assert client.post(reverse("logout")).status_code == 302
    assert client.get(reverse("home")).status_code == 302


def test_a_wrong_password_says_so(client, dora):
    r = login(client, "dora", "nope")
    assert r.status_code == 200
    assert "didn&#x27;t match" in r.content.decode() or "didn't match" in r.content.decode()


def test_five_failures_in_15_minutes_block_the_sixth_attempt_with_429(client, dora):
    for _ in range(5):
        assert login(client, "dora", "wrong").status_code == 200
    r = login(client, "dora", PASSWORD)  # even the right password: blocked
    assert r.status_code == 429
    body = r.content.decode()
    assert "Too many failed log-in attempts" in body and "Try again in 15 minutes" in body
    assert 0 < int(r["Retry-After"]) <= 900
    assert "_auth_user_id" not in client.session


def test_the_block_is_per_username_and_address(client, dora):
    UserFactory(username="erin")
    for _ in range(5):
        login(client, "dora", "wrong", ip="10.0.0.1")
    assert login(client, "Dora", PASSWORD, ip="10.0.0.1").status_code == 429  # case ignored
    assert login(client, "dora", PASSWORD, ip="10.0.0.2").status_code == 302
    client.logout()
    assert login(client, "erin", PASSWORD, ip="10.0.0.1").status_code == 302


def test_failures_older_than_the_window_do_not_count(client, dora):
    for _ in range(5):
        login(client, "dora", "wrong")
    LoginFailure.objects.update(created_at=timezone.now() - LOGIN_WINDOW - timedelta(seconds=1))
    assert login(client, "dora", PASSWORD).status_code == 302


def test_a_success_clears_the_count(client, dora):
    for _ in range(4):
        login(client, "dora", "wrong")
    assert login(client, "dora", PASSWORD).status_code == 302
    client.logout()
    for _ in range(4):
        login(client, "dora", "wrong")
    assert login(client, "dora", PASSWORD).status_code == 302


def test_password_change(client, dora):
    client.force_login(dora)
    assert client.get(reverse("accounts-password-change")).status_code == 200
    r = client.post(
        reverse("accounts-password-change"),
        {
            "old_password": PASSWORD,
            "new_password1": "a much longer secret 2026",
            "new_password2": "a much longer secret 2026",
        },
    )
    assert r.status_code == 302 and r["Location"] == reverse("accounts-password-change-done")
    dora.refresh_from_db()
    assert dora.check_password("a much longer secret 2026")
    assert client.get(reverse("home")).status_code == 200  # still logged in
    assert AuditEvent.objects.filter(action="user.password_change", actor=dora).exists()


def test_password_change_needs_the_old_password(client, dora):
    client.force_login(dora)
    r = client.post(
        reverse("accounts-password-change"),
        {
            "old_password": "x",
            "new_password1": "a much longer secret",
            "new_password2": "a much longer secret",
        },
    )
    assert r.status_code == 200 and "old_password" in r.context["form"].errors


def test_the_admin_log_in_shares_the_limit(client, dora):
    dora.is_staff = True
    dora.save()
    admin_login = reverse("admin:login")
    for _ in range(5):
        r = client.post(
            admin_login, {"username": "dora", "password": "wrong"}, REMOTE_ADDR="10.0.0.9"
        )
        assert r.status_code == 200
    # Blocked at the authentication backend: even the right password fails there...
    r = client.post(admin_login, {"username": "dora", "password": PASSWORD}, REMOTE_ADDR="10.0.0.9")
    assert r.status_code == 200 and "_auth_user_id" not in client.session
    # ...and our log-in page says why.
    assert login(client, "dora", PASSWORD, ip="10.0.0.9").status_code == 429


def test_scripts_calling_authenticate_are_not_counted(dora):
    from django.contrib.auth import authenticate

    for _ in range(6):
        assert authenticate(None, username="dora", password="wrong") is None
    assert not LoginFailure.objects.exists()
    assert authenticate(None, username="dora", password=PASSWORD) == dora
