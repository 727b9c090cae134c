"""Test environment, loaded as a plugin (-p) before pytest-django imports settings."""

from __future__ import annotations

import os

os.environ.setdefault("BATON_INSECURE_DEV_KEY", "1")
os.environ.setdefault("TASKS_BACKEND", "django.tasks.backends.immediate.ImmediateBackend")
os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
