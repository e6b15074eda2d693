"""Domain events of a call, built from the :class:`~tsunagu.calls.call.Call` they are about.

The call path publishes with one line (``controller.events.publish(call_events.offered(
call, agent_id))``): everything the event needs is gathered here, so the call logic does
not grow with each field a subscriber wants. This is the adapter side: it reads the wall
clock for ``at`` (the event core does not).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from tsunagu.acd import presence
from tsunagu.acd.engine import QueueSnapshot
from tsunagu.calls.numbers import NumberError, to_e164
from tsunagu.events.types import (
    AgentStateChanged,
    CallAnswered,
    CallEnded,
    CallOffered,
    CallStarted,
    CallTransferred,
    CustomerRecord,
    FlowWebhookFailed,
    QueueFigures,
    QueueStats,
)
from tsunagu.settings import CustomerSettings
from tsunagu.sip.core import Caller

if TYPE_CHECKING:
    from tsunagu.calls.call import Call


def customer_record(customers: Iterable[CustomerSettings], caller: str) -> CustomerRecord | None:
    """The ``customers:`` entry for ``caller`` (numbers compared in E.164), or ``None``.

    A linear scan: the customer table lives in the config file, so it is small; a CRM with
    a large table looks its own record up by the number in the screen-pop."""
    try:
        wanted = to_e164(caller)
    except NumberError:
        return None
    for customer in customers:
        try:
            if to_e164(customer.number) == wanted:
                return CustomerRecord(number=wanted, name=customer.name, rep=customer.agent)
        except NumberError:
            continue
    return None


def started(call: Call, caller: Caller, flow: str | None) -> CallStarted:
    """``caller`` is who the SIP core says sent the INVITE (a trunk, or an agent's phone)."""
    trunk = caller.name if caller.kind == "trunk" else None
    return CallStarted(
        at=time.time(),
        interaction_id=call.id,
        direction=call.direction,
        caller=call.caller_number,
        dialled=call.dialled,
        trunk=trunk,
        flow=flow,
    )


def offered(call: Call, agent_id: str) -> CallOffered:
    """The screen-pop. Also remembers ``agent_id`` on the call, so the call's later events
    (transferred, ended) reach that agent's stream too."""
    if agent_id not in call.agents_offered:
        call.agents_offered.append(agent_id)
    return CallOffered(
        at=time.time(),
        interaction_id=call.id,
        agent_id=agent_id,
        caller=call.caller_number,
        dialled=call.dialled,
        queue=call.queue,
        customer=customer_record(call.controller.settings.customers, call.caller_number),
        attributes=dict(call.attributes),
    )


def answered(call: Call, agent_id: str) -> CallAnswered:
    waited = time.monotonic() - call.queued_at if call.queued_at else None
    return CallAnswered(
        at=time.time(),
        interaction_id=call.id,
        agent_id=agent_id,
        caller=call.caller_number,
        queue=call.queue,
        wait_s=None if waited is None else round(waited, 3),
    )


def transferred(call: Call, from_agent: str | None, to: str) -> CallTransferred:
    return CallTransferred(
        at=time.time(),
        interaction_id=call.id,
        from_agent=from_agent or None,
        to=to,
        agents=tuple(call.agents_offered),
    )


def ended(call: Call, disposition: str) -> CallEnded:
    return CallEnded(
        at=time.time(),
        interaction_id=call.id,
        disposition=disposition,
        duration_s=round(time.monotonic() - call.started_monotonic, 3),
        agents=tuple(call.agents_offered),
    )


def agent_state(change: presence.AgentStateChanged) -> AgentStateChanged:
    return AgentStateChanged(
        at=time.time(),
        agent_id=change.agent_id,
        old=change.old.value,
        new=change.new.value,
        reason=change.reason,
    )


def webhook_failed(call: Call, reason: str) -> FlowWebhookFailed:
    return FlowWebhookFailed(at=time.time(), interaction_id=call.id, reason=reason)


def queue_stats(snapshots: Iterable[QueueSnapshot]) -> QueueStats:
    return QueueStats(
        at=time.time(),
        queues=tuple(
            QueueFigures(
                queue=s.queue_id,
                waiting=s.waiting,
                oldest_wait_s=round(s.longest_wait_s),
                agents_available=s.available,
                agents_busy=max(0, s.staffed - s.available),
            )
            for s in snapshots
        ),
    )
