"""Views that belong to the project rather than to an app."""

from __future__ import annotations

from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect, JsonResponse
from django.templatetags.static import static
from django.views import defaults
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe


@never_cache
@require_safe
def healthz(request: HttpRequest) -> HttpResponse:
    """200 "ok" when the app can run a query; 503 when the database is unreachable.

    Used by the container healthcheck (docker-compose.yml) and by load balancers. It
    reveals nothing and renders no template, so it stays cheap enough to call every few
    seconds. :class:`config.middleware.HealthzMiddleware` serves it ahead of host
    validation and the HTTPS redirect.
    """
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError:
        return HttpResponse("database unavailable", status=503, content_type="text/plain")
    return HttpResponse("ok", content_type="text/plain")


@require_safe
def favicon(request: HttpRequest) -> HttpResponse:
    """``/favicon.ico``, which browsers and tools ask for whatever the page links: the SVG
    icon, instead of a 404 logged on every page."""
    return HttpResponsePermanentRedirect(static("baton/favicon.svg"))


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """404 for a URL that matches no pattern: JSON under ``/api/``, the HTML page elsewhere.

    An API client (and the OpenAPI schema, ``config/openapi.py``) expects
    ``{"detail": …}`` for every 404, including a path whose parameters do not even match
    the URL pattern (``/api/assignments/abc/submit/``).
    """
    if request.path_info.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)
