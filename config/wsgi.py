"""WSGI entry point (gunicorn config.wsgi)."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()

# Before the first request: what concurrent first requests would race on (config/warmup.py).
if os.environ.get("BATON_WARMUP", "1") != "0":
    from config.warmup import warm_up

    warm_up()
