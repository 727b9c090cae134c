from __future__ import annotations

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts, API tokens and audit log"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in, user_login_failed

        from . import backends, schema  # noqa: F401  schema registers the OpenAPI auth extension

        user_login_failed.connect(backends.on_login_failed, dispatch_uid="accounts-login-failed")
        user_logged_in.connect(backends.on_logged_in, dispatch_uid="accounts-logged-in")
