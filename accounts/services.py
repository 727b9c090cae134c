"""Account operations: the audit log, API tokens, log-in rate limiting.

Call :func:`record` explicitly where an auditable thing happens (configuration changes,
label edits and undo, exports), inside the same transaction as the change, so that the
record and the change commit or roll back together.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models, transaction
from django.utils import timezone

from .models import ApiToken, AuditEvent, LoginFailure

if TYPE_CHECKING:
    from annotate.models import Study

LOGIN_MAX_FAILURES = 5
LOGIN_WINDOW = timedelta(minutes=15)
# Writing last_used_at on every API call would turn reads into writes; once a minute is enough.
TOKEN_TOUCH_INTERVAL = timedelta(minutes=1)


def _jsonable(details: dict[str, Any]) -> dict[str, Any]:
    """Round-trip through Django's encoder so Decimals, dates and UUIDs are stored as text."""
    import json

    return json.loads(json.dumps(details, cls=DjangoJSONEncoder))


def record(
    *,
    actor: Any,
    action: str,
    study: Study | None = None,
    target: models.Model | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event to the audit log.

    ``actor`` is a user (anonymous or None for the system); ``target`` the row acted on;
    ``details`` a JSON-able dict, e.g. ``{"changes": {"margin": [0.02, 0.03]}}``
    (old → new).
    """
    user = actor if getattr(actor, "is_authenticated", False) else None
    if study is None and target is not None:
        study = getattr(target, "study", None)
    return AuditEvent.objects.create(
        actor=user,
        actor_username=user.get_username() if user else "",
        action=action,
        study=study,
        study_slug=study.slug if study else "",
        target_type=target._meta.label_lower if target is not None else "",
        target_id=str(target.pk) if target is not None and target.pk is not None else "",
        target_repr=str(target)[:200] if target is not None else "",
        details=_jsonable(details or {}),
    )


# --- API tokens -----------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    key: str  # the secret, shown once and never stored


def issue_token(*, user: Any, name: str) -> IssuedToken:
    key = ApiToken.generate_key()
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=user, name=name, prefix=key[:8], key_hash=ApiToken.hash_key(key)
        )
        record(actor=user, action="token.create", target=token, details={"name": name})
    return IssuedToken(token=token, key=key)


def revoke_token(*, user: Any, token: ApiToken) -> None:
    with transaction.atomic():
        updated = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        if updated:
            record(actor=user, action="token.revoke", target=token, details={"name": token.name})


def authenticate_token(*, key: str) -> ApiToken | None:
    """The live token with this secret (its user active), or None."""
    token = (
        ApiToken.objects.live()
        .select_related("user")
        .filter(key_hash=ApiToken.hash_key(key))
        .first()
    )
    if token is None or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > TOKEN_TOUCH_INTERVAL:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token


# --- Log-in rate limiting -------------------------------------------------------------


def normalize_username(username: str) -> str:
    return (username or "").strip().lower()[:150]


def login_blocked_for(*, username: str, ip: str | None) -> timedelta | None:
    """How long until this username may try again from this address, or None if it may."""
    since = timezone.now() - LOGIN_WINDOW
    recent = LoginFailure.objects.filter(
        username=normalize_username(username), ip=ip, created_at__gte=since
    ).order_by("-created_at")
    times = list(recent.values_list("created_at", flat=True)[:LOGIN_MAX_FAILURES])
    if len(times) < LOGIN_MAX_FAILURES:
        return None
    # Blocked until the oldest of the last N failures leaves the window.
    return max(times[-1] + LOGIN_WINDOW - timezone.now(), timedelta(seconds=1))


def record_login_failure(*, username: str, ip: str | None) -> None:
    with transaction.atomic():
        LoginFailure.objects.filter(created_at__lt=timezone.now() - LOGIN_WINDOW).delete()
        LoginFailure.objects.create(username=normalize_username(username), ip=ip)


def clear_login_failures(*, username: str, ip: str | None) -> None:
    LoginFailure.objects.filter(username=normalize_username(username), ip=ip).delete()


def import_details(report: Any, *, via: str) -> dict[str, Any]:
    """Audit details of a data import (an ``annotate.imports.importing.ImportReport``)."""
    summary = {k: v for k, v in report.as_dict().items() if k not in {"phases", "seconds"}}
    return {"via": via, **summary}


# --- Accounts created by a study admin ---------------------------------------------------


def set_password_path(user: Any) -> str:
    """The one-time link with which ``user`` chooses a password (``/accounts/set-password/…``).

    Django's password-reset token: it hashes the user's password and last log-in, so it
    stops working once used (or once the password changes), and after
    ``PASSWORD_RESET_TIMEOUT`` (3 days). Nothing is stored: a new link can always be made.
    """
    from django.contrib.auth.tokens import default_token_generator
    from django.urls import reverse
    from django.utils.encoding import force_bytes
    from django.utils.http import urlsafe_base64_encode

    uid = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)
    return reverse("accounts-set-password", kwargs={"uidb64": uid, "token": token})


def create_account(
    *, actor: Any, username: str, email: str = "", study: Study | None = None
) -> Any:
    """A new, active account without a usable password (it is set through the link of
    :func:`set_password_path`), recorded in the audit log."""
    from django.contrib.auth import get_user_model

    with transaction.atomic():
        user = get_user_model().objects.create_user(username=username, email=email or "")
        user.set_unusable_password()
        user.save(update_fields=["password"])
        record(
            actor=actor,
            action="user.create",
            study=study,
            target=user,
            details={"username": username, "email": email},
        )
    return user
