"""Request and response bodies (they are the OpenAPI document's schemas)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tsunagu.store import Change, ConfigEntity, Interaction, InteractionRecord
from tsunagu.store.config_diff import Diff

#: The configuration kinds (``tsunagu.store.KINDS``; a test keeps the two equal).
ConfigKind = Literal[
    "numbers",
    "trunks",
    "flows",
    "queues",
    "agents",
    "teams",
    "hours",
    "calendars",
    "customers",
    "prompts",
    "users",
    "acls",
]


class ErrorBody(BaseModel):
    error_id: str = Field(
        description="stable identifier to match on, e.g. config.revision_conflict"
    )
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


# --- configuration -----------------------------------------------------------------------


class ConfigEntityOut(BaseModel):
    kind: str
    name: str
    document: dict[str, Any]
    revision: int = Field(description="configuration revision of its last change (the ETag)")
    version: int = Field(description="how many times this entity changed")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, entity: ConfigEntity, document: dict[str, Any]) -> ConfigEntityOut:
        return cls(
            kind=entity.kind,
            name=entity.name,
            document=document,
            revision=entity.revision,
            version=entity.version,
            created_at=entity.created_at,
            updated_at=entity.updated_at,
        )


class ConfigListOut(BaseModel):
    kind: str
    revision: int = Field(description="current configuration revision")
    items: list[ConfigEntityOut]


class ConfigExportOut(BaseModel):
    revision: int
    config: dict[str, dict[str, dict[str, Any]]]


class ChangeOut(BaseModel):
    revision: int
    kind: str
    name: str
    operation: Literal["create", "update", "delete"]
    actor: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    at: datetime

    @classmethod
    def of(
        cls, change: Change, before: dict[str, Any] | None, after: dict[str, Any] | None
    ) -> ChangeOut:
        return cls(
            revision=change.revision,
            kind=change.kind,
            name=change.name,
            operation=change.operation,
            actor=change.actor,
            before=before,
            after=after,
            at=change.at,
        )


class ChangesOut(BaseModel):
    items: list[ChangeOut]
    revision: int = Field(description="the configuration revision when this was read")


class DeletedOut(BaseModel):
    kind: str
    name: str
    revision: int


class ApplyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    config: dict[ConfigKind, dict[str, dict[str, Any]]] = Field(
        description="{kind: {name: document}}; a kind given is authoritative (unlisted "
        "entities of it are deleted), a kind absent is left alone"
    )
    dry_run: bool = False
    base_revision: int | None = Field(
        default=None,
        ge=0,
        description="apply only if the configuration is still at this revision "
        "(pass a dry run's base_revision)",
    )


class FieldChangeOut(BaseModel):
    path: str
    before: Any = None
    after: Any = None
    before_present: bool = True
    after_present: bool = True


class DiffItemOut(BaseModel):
    operation: Literal["create", "update", "delete"]
    kind: str
    name: str
    changes: list[FieldChangeOut]


class DiffOut(BaseModel):
    dry_run: bool
    base_revision: int
    applied_revision: int | None
    summary: str
    items: list[DiffItemOut]
    text: str = Field(description="the diff as `tsunagu config apply` prints it")

    @classmethod
    def of(cls, diff: Diff) -> DiffOut:
        return cls(
            dry_run=diff.dry_run,
            base_revision=diff.base_revision,
            applied_revision=diff.applied_revision,
            summary=diff.summary(),
            items=[
                DiffItemOut(
                    operation=item.operation,
                    kind=item.kind,
                    name=item.name,
                    changes=[
                        FieldChangeOut(
                            path=c.path,
                            before=c.before,
                            after=c.after,
                            before_present=c.before_present,
                            after_present=c.after_present,
                        )
                        for c in item.field_changes()
                    ],
                )
                for item in diff.items
            ],
            text=diff.render(),
        )


# --- interactions --------------------------------------------------------------------------


class InteractionOut(BaseModel):
    id: str
    node: str
    direction: str
    caller: str
    dialled: str
    started_at: datetime
    queued_at: datetime | None
    answered_at: datetime | None
    ended_at: datetime | None
    queue: str | None
    wait_seconds: float | None
    status: str
    disposition: str | None
    flow_path: list[dict[str, Any]]
    transfers: list[dict[str, Any]]
    recordings: list[dict[str, Any]]
    attributes: dict[str, Any]
    agents_offered: list[str]
    agents_rung: list[str]
    agents_answered: list[str]

    @classmethod
    def fields_of(cls, i: Interaction) -> dict[str, Any]:
        return {
            "id": i.id,
            "node": i.node,
            "direction": str(i.direction),
            "caller": i.caller,
            "dialled": i.dialled,
            "started_at": i.started_at,
            "queued_at": i.queued_at,
            "answered_at": i.answered_at,
            "ended_at": i.ended_at,
            "queue": i.queue,
            "wait_seconds": i.wait_seconds,
            "status": str(i.status),
            "disposition": None if i.disposition is None else str(i.disposition),
            "flow_path": list(i.flow_path),
            "transfers": list(i.transfers),
            "recordings": list(i.recordings),
            "attributes": i.attributes,
            "agents_offered": list(i.agents_offered),
            "agents_rung": list(i.agents_rung),
            "agents_answered": list(i.agents_answered),
        }

    @classmethod
    def of(cls, i: Interaction) -> InteractionOut:
        return cls(**cls.fields_of(i))


class InteractionPageOut(BaseModel):
    items: list[InteractionOut]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null: last")


class LegOut(BaseModel):
    id: str
    role: str
    call_id: str | None = Field(description="the SIP Call-ID of this leg's dialog")
    peer: str | None
    started_at: datetime
    answered_at: datetime | None
    ended_at: datetime | None
    end_reason: str | None


class EventOut(BaseModel):
    id: int
    at: datetime
    type: str
    data: dict[str, Any]


class InteractionDetailOut(InteractionOut):
    legs: list[LegOut]
    events: list[EventOut]

    @classmethod
    def of_record(cls, record: InteractionRecord) -> InteractionDetailOut:
        return cls(
            **InteractionOut.fields_of(record.interaction),
            legs=[
                LegOut(
                    id=leg.id,
                    role=str(leg.role),
                    call_id=leg.call_id,
                    peer=leg.peer,
                    started_at=leg.started_at,
                    answered_at=leg.answered_at,
                    ended_at=leg.ended_at,
                    end_reason=leg.end_reason,
                )
                for leg in record.legs
            ],
            events=[EventOut(id=e.id, at=e.at, type=e.type, data=e.data) for e in record.events],
        )


# --- live: agents and calls ------------------------------------------------------------------


class AgentOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    name: str | None = None
    team: str | None = None
    state: str
    reason: str | None = None
    since: datetime | None = None


class AgentStateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: Literal["available", "away", "offline"]
    reason: str | None = Field(default=None, min_length=1, max_length=64)


class CallOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    interaction_id: str
    caller: str | None = None
    dialled: str | None = None
    queue: str | None = None
    agent: str | None = None
    state: str
    started_at: datetime | None = None


class TransferIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9+*#._@:-]+$",
        description="an agent id, an extension or a number",
    )


class CallActionOut(BaseModel):
    interaction_id: str
    action: Literal["hangup", "transfer"]
    target: str | None = None


# --- system ------------------------------------------------------------------------------------


class StatusOut(BaseModel):
    status: str


class MeOut(BaseModel):
    name: str
    role: str
    agent: str | None
    via: Literal["password", "key"]
    key_id: str | None


class ApiKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str | None = Field(default=None, max_length=200)


class ApiKeyOut(BaseModel):
    id: str
    user: str
    label: str | None
    created_at: datetime
    token: str = Field(description="the key itself; shown only now, store it safely")


class RevokedOut(BaseModel):
    id: str
    user: str
    revision: int
