"""Project middleware."""

from __future__ import annotations

from collections.abc import Callable

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

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


DATABASE_UNAVAILABLE = "The database is unavailable; nothing was saved. Try again shortly."
RETRY_AFTER_SECONDS = 5


class DatabaseUnavailableMiddleware:
    """Answer 503 when the database cannot be reached, instead of a 500 traceback page.

    A restarted or unreachable PostgreSQL raises ``OperationalError`` (connection refused,
    server closed the connection) or ``InterfaceError`` (the connection is already closed)
    from wherever the view touches the database. No write of that request has committed
    (each service writes in one transaction), so the client may retry the same request
    (the queue's submissions are idempotent by ``client_key``). Django drops the broken
    connection when the request finishes (the error marks it; ``close_old_connections``
    then finds it unusable), so the next request connects again.

    API paths get ``{"detail", "code": "database_unavailable"}`` (documented for every
    operation, ``config/openapi.py``); pages get a short plain-text answer. Both carry
    ``Retry-After``.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        response: HttpResponse
        if request.path_info.startswith("/api/"):
            response = JsonResponse(
                {"detail": DATABASE_UNAVAILABLE, "code": "database_unavailable"}, status=503
            )
        else:
            response = HttpResponse(DATABASE_UNAVAILABLE, status=503, content_type="text/plain")
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
