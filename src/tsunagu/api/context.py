"""The per-application state handlers reach through ``request.app.state.tsunagu``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from tsunagu.api.audit import AuditEntry, AuditLog
from tsunagu.api.auth import Authenticator, Principal, require
from tsunagu.api.services import ApiServices
from tsunagu.api.users import Role


@dataclass(frozen=True, slots=True)
class ApiContext:
    services: ApiServices
    auth: Authenticator
    audit: AuditLog

    async def audit_action(
        self,
        principal: Principal,
        action: str,
        target: str,
        *,
        interaction_id: str | None = None,
        **details: Any,
    ) -> None:
        await self.audit.record(
            AuditEntry(
                at=self.services.clock(),
                actor=principal.actor,
                role=str(principal.role),
                client=principal.client,
                action=action,
                target=target,
                interaction_id=interaction_id,
                details=details,
            )
        )


def get_context(request: Request) -> ApiContext:
    context = request.app.state.tsunagu
    assert isinstance(context, ApiContext)
    return context


Context = Annotated[ApiContext, Depends(get_context)]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
Supervisor = Annotated[Principal, Depends(require(Role.SUPERVISOR))]
AnyUser = Annotated[Principal, Depends(require(Role.AGENT))]
