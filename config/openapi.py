"""OpenAPI schema post-processing: the error answers every API operation can give.

drf-spectacular documents what a view returns when it succeeds (and what its
``extend_schema`` adds), but not the refusals that come from DRF itself and from the
project's permission classes: 403 (not logged in, or a role that may not do this), 404 (a
study the caller is not a member of, an object that is not theirs, a page past the end),
400 (the request's fields or query parameters are invalid), 415 (a body the parsers cannot
read, e.g. a broken multipart part), and 503 when the database is
unreachable (:class:`config.middleware.DatabaseUnavailableMiddleware`). A client generated
from the schema, or a fuzzer checking answers against it (``tests/test_api_fuzz.py``),
must find them documented. An operation that documents one of these codes itself keeps
its own description.
"""

from __future__ import annotations

from typing import Any

DETAIL = {
    "type": "object",
    "properties": {"detail": {"type": "string", "description": "Why, for a person to read."}},
    "required": ["detail"],
}
# DRF's validation errors: field name → messages (nested for nested fields), or a list of
# messages when the error concerns no one field.
VALIDATION = {
    "oneOf": [
        {"type": "object", "additionalProperties": True},
        {"type": "array", "items": {"type": "string"}},
    ]
}
UNAVAILABLE = {
    "type": "object",
    "properties": {
        "detail": {"type": "string"},
        "code": {"type": "string", "enum": ["database_unavailable"]},
    },
    "required": ["detail", "code"],
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _takes_input(operation: dict[str, Any]) -> bool:
    return "requestBody" in operation or any(
        p.get("in") == "query" for p in operation.get("parameters", [])
    )


def document_error_responses(result: dict[str, Any], **_: Any) -> dict[str, Any]:
    """drf-spectacular POSTPROCESSING_HOOKS entry: add 400/403/404/415/503 where missing."""
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            if _takes_input(operation):
                responses.setdefault("400", _json(VALIDATION, "Invalid fields or parameters."))
            if "requestBody" in operation:
                responses.setdefault(
                    "415", _json(DETAIL, "The body's media type (or its encoding) is not read.")
                )
            responses.setdefault(
                "403", _json(DETAIL, "Not logged in, or your role does not allow this.")
            )
            responses.setdefault(
                "404", _json(DETAIL, "No such study for you (or no such object of yours).")
            )
            responses.setdefault(
                "503", _json(UNAVAILABLE, "The database is unreachable; retry shortly.")
            )
    return result


# The annotation queue as a workflow: which answer's field feeds which next request. Clients
# reading the schema (and schemathesis' stateful run in tests/test_api_fuzz.py) follow them.
_ITEM_TO_ANSWER = {
    "SubmitThisItem": "annotate_submit",
    "SkipThisItem": "annotate_skip",
}
QUEUE_LINKS: dict[str, dict[str, dict[str, Any]]] = {
    # operationId → response status → links
    "annotate_next_item": {
        "200": {
            name: {
                "operationId": op,
                "parameters": {"assignment_id": "$response.body#/assignment_id"},
            }
            for name, op in _ITEM_TO_ANSWER.items()
        }
    },
    "annotate_undo": {
        "200": {
            name: {
                "operationId": op,
                "parameters": {"assignment_id": "$response.body#/assignment_id"},
            }
            for name, op in _ITEM_TO_ANSWER.items()
        }
    },
    **{
        answer: {
            status: {
                "UndoThisAnswer": {
                    "operationId": "annotate_undo",
                    "parameters": {"annotation_id": "$response.body#/id"},
                }
            }
            for status in ("200", "201")
        }
        for answer in ("annotate_submit", "annotate_skip")
    },
}


def document_queue_links(result: dict[str, Any], **_: Any) -> dict[str, Any]:
    """drf-spectacular POSTPROCESSING_HOOKS entry: OpenAPI links next → submit → undo → …"""
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            for status, links in QUEUE_LINKS.get(operation.get("operationId", ""), {}).items():
                response = operation.get("responses", {}).get(status)
                if response is not None:
                    response.setdefault("links", {}).update(links)
    return result
