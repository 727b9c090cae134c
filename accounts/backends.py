"""Rate limiting at the authentication layer, so that every log-in form is covered.

``RateLimitedModelBackend`` refuses to check a password for a username that has failed
too often from the same address (our log-in page answers 429 before it gets here; the
Django admin's log-in page, which has its own view, is covered by this). Failures and
successes are counted through Django's ``user_login_failed`` / ``user_logged_in`` signals,
whichever view called ``authenticate()``.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied

from . import services


def client_ip(request: Any) -> str | None:
    # REMOTE_ADDR only: X-Forwarded-For is set by the client unless a trusted proxy
    # rewrites it, so trusting it would let an attacker pick a fresh address per attempt.
    if request is None:
        return None
    return request.META.get("REMOTE_ADDR") or None


class RateLimitedModelBackend(ModelBackend):
    def authenticate(
        self, request: Any, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> Any:
        if username is None:
            username = kwargs.get(self._username_field(), "")
        if services.login_blocked_for(username=username or "", ip=client_ip(request)):
            # Stops authenticate() here: no other backend is tried, the attempt fails.
            raise PermissionDenied("too many failed log-in attempts")
        return super().authenticate(request, username=username, password=password, **kwargs)

    @staticmethod
    def _username_field() -> str:
        from django.contrib.auth import get_user_model

        return get_user_model().USERNAME_FIELD


def on_login_failed(
    sender: Any, credentials: dict[str, Any], request: Any = None, **kw: Any
) -> None:
    if request is None:
        return  # not a web log-in (a script calling authenticate()): nothing to attribute
    username = credentials.get("username") or ""
    services.record_login_failure(username=username, ip=client_ip(request))


def on_logged_in(sender: Any, request: Any, user: Any, **kw: Any) -> None:
    if request is not None:
        services.clear_login_failures(username=user.get_username(), ip=client_ip(request))
