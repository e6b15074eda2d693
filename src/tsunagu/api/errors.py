"""Every error the API answers has the same JSON shape and a stable ``error_id``.

    {"error_id": "config.revision_conflict", "message": "...", "details": {...}}

Clients match on ``error_id`` (never on the message, which may be reworded); ``details``
carries the machine-readable specifics (field paths, current revision, retry delay). The
ids and statuses are listed in docs/API.md.

Two families, as elsewhere in Tsunagu (:mod:`tsunagu.store.errors`, wazo-calld's
exceptions): :class:`ApiError` and the store's :class:`~tsunagu.store.StoreRequestError`
are the *client's* fault (4xx, passed through with their id); anything else that escapes a
handler is *ours* (500 ``internal``, logged with its traceback, never shown to the client).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tsunagu.store import (
    ConfigValidationError,
    InvalidDocumentError,
    InvalidStateError,
    NotFoundError,
    RevisionConflictError,
    StoreError,
    StoreFaultError,
    StoreRequestError,
    UnknownKindError,
)

log = logging.getLogger("tsunagu.api")


class ApiError(Exception):
    """An error answered to the client as ``status`` with the standard body."""

    def __init__(
        self,
        status: int,
        error_id: str,
        message: str,
        details: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_id = error_id
        self.message = message
        self.details: dict[str, Any] = dict(details or {})
        self.headers: dict[str, str] = dict(headers or {})


def error_body(
    error_id: str, message: str, details: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    return {"error_id": error_id, "message": message, "details": dict(details or {})}


def error_response(
    status: int,
    error_id: str,
    message: str,
    details: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        error_body(error_id, message, details), status_code=status, headers=dict(headers or {})
    )


#: Store request errors → HTTP status (docs/STORAGE.md "Errors"). Checked in order, so
#: subclasses come before :class:`StoreRequestError`.
_STORE_STATUS: tuple[tuple[type[StoreError], int], ...] = (
    (UnknownKindError, 404),
    (NotFoundError, 404),
    (ConfigValidationError, 422),
    (InvalidDocumentError, 422),
    (RevisionConflictError, 409),
    (InvalidStateError, 409),
    (StoreRequestError, 400),
)

#: Statuses Starlette raises by itself (unknown route, wrong method…) → stable ids.
_HTTP_IDS = {
    400: "request.bad",
    401: "auth.required",
    403: "auth.forbidden",
    404: "request.not_found",
    405: "request.method_not_allowed",
    406: "request.not_acceptable",
    413: "request.too_large",
    415: "request.unsupported_media_type",
}


def store_status(exc: StoreError) -> int:
    for cls, status in _STORE_STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def _location(loc: Sequence[Any]) -> str:
    """``("query", "limit")`` → ``query.limit``; ``("body", "items", 0)`` → ``body.items[0]``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "request"


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.error_id, exc.message, exc.details, exc.headers)


async def _store_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StoreError)
    if isinstance(exc, StoreFaultError):
        log.error(
            "store fault while serving a request",
            extra={"path": request.url.path, "error_id": exc.error_id, "error": exc.message},
        )
        return error_response(500, exc.error_id, "the store cannot serve this request now")
    return error_response(store_status(exc), exc.error_id, exc.message, exc.details)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    fields = [
        {
            "field": _location(err.get("loc", ())),
            "problem": str(err.get("msg", "invalid")),
            "type": str(err.get("type", "")),
        }
        for err in exc.errors()
    ]
    summary = "; ".join(f"{f['field']}: {f['problem']}" for f in fields[:5])
    return error_response(422, "request.invalid", f"invalid request: {summary}", {"fields": fields})


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    error_id = _HTTP_IDS.get(exc.status_code, f"http.{exc.status_code}")
    message = exc.detail if isinstance(exc.detail, str) else "request refused"
    return error_response(exc.status_code, error_id, message, headers=exc.headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error while serving a request", extra={"path": request.url.path})
    return error_response(500, "internal", "internal error; the server log has the details")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StoreError, _store_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


__all__ = [
    "ApiError",
    "error_body",
    "error_response",
    "install_error_handlers",
    "store_status",
]
