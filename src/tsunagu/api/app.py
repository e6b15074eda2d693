"""The FastAPI application: ``create_app(services)``.

The server builds an :class:`~tsunagu.api.services.ApiServices` and serves the app with
uvicorn inside its own running event loop (docs/API.md, "Serving")::

    app = create_app(ApiServices(store=store, health=server.health, ...))
    config = uvicorn.Config(app, host=bind, port=http_port, log_config=None,
                            proxy_headers=False, server_header=False)
    http = uvicorn.Server(config)
    task = asyncio.create_task(http.serve())
    ...
    http.should_exit = True; await task

The app owns no resources (the store belongs to the server), so it has no lifespan work.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi

from tsunagu import __version__
from tsunagu.api.audit import AuditLog
from tsunagu.api.auth import Authenticator
from tsunagu.api.context import ApiContext
from tsunagu.api.errors import install_error_handlers
from tsunagu.api.routes import (
    callbacks,
    config,
    events,
    interactions,
    live,
    reports,
    system,
    webhooks,
)
from tsunagu.api.schemas import ErrorBody
from tsunagu.api.services import ApiServices

API_PREFIX = "/api/v1"

#: Answers every authenticated route can give (listed in the OpenAPI document).
COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "malformed request (body not parseable, bad cursor)"},
    401: {"model": ErrorBody, "description": "missing or invalid credentials"},
    403: {"model": ErrorBody, "description": "role not allowed, or address not allowed"},
    422: {"model": ErrorBody, "description": "invalid request (details.fields)"},
    429: {"model": ErrorBody, "description": "rate limited (Retry-After)"},
}

DESCRIPTION = """\
Tsunagu's REST API: configuration, interactions, recordings, reports, agents and calls.

Authenticate with an API key (`Authorization: Bearer <key>`) or HTTP Basic (user and
password). Errors are `{"error_id", "message", "details"}`; match on `error_id`.
See docs/API.md.
"""


def create_app(services: ApiServices) -> FastAPI:
    app = FastAPI(
        title="Tsunagu",
        version=__version__,
        description=DESCRIPTION,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.tsunagu = ApiContext(
        services=services,
        auth=Authenticator(services),
        audit=AuditLog(services.store.history, services.audit_path),
    )
    install_error_handlers(app)
    app.include_router(system.public)
    v1 = APIRouter(prefix=API_PREFIX, responses=COMMON_RESPONSES)
    for module in (system, config, interactions, live, reports, webhooks, callbacks, events):
        v1.include_router(module.router)
    app.include_router(v1)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            _add_security(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _add_security(schema: dict[str, Any]) -> None:
    """Declare the two schemes and require one of them on every ``/api/v1`` operation.
    (The schemes are checked by :class:`~tsunagu.api.auth.Authenticator`, not by FastAPI's
    security classes, whose malformed-header answers would not carry our error body.)"""
    components = schema.setdefault("components", {})
    components["securitySchemes"] = {
        "apiKey": {"type": "http", "scheme": "bearer", "description": "API key"},
        "password": {"type": "http", "scheme": "basic", "description": "user and password"},
    }
    for path, operations in schema.get("paths", {}).items():
        if not path.startswith(API_PREFIX):
            continue
        for operation in operations.values():
            operation["security"] = [{"apiKey": []}, {"password": []}]
