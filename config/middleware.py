"""Project middleware."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from .views import healthz

HEALTHZ_PATH = "/healthz"


class HealthzMiddleware:
    """Answer ``/healthz`` before host validation and the HTTPS redirect.

    A container healthcheck calls ``http://127.0.0.1:8000/healthz`` from inside the
    container: its Host is not one of ``ALLOWED_HOSTS`` and it does not come through the
    TLS proxy, so further down the stack CommonMiddleware would answer 400 and
    SecurityMiddleware would redirect to https. The answer depends on no header, so
    serving it to any host is safe. Keep this first in ``MIDDLEWARE``.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info == HEALTHZ_PATH:
            return healthz(request)
        return self.get_response(request)
