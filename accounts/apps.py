from __future__ import annotations

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts, API tokens and audit log"

    def ready(self) -> None:
        from . import schema  # noqa: F401  registers the OpenAPI auth extension
