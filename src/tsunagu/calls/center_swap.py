"""Swapping a running controller's contact center for one rebuilt from the store.

Why a swap and not a mutation: the controller reads its routing (numbers, flows, hours,
calendars, customers, trunks, queue settings) from ``controller.center`` at the moment a
call needs it, so replacing that one reference changes what *new* calls get, atomically
between two events of the loop. A call already in a flow keeps what it started with: its
``FlowRun`` holds the ``Flow`` object, and the flow environment (hours, calendars, the
flows a ``TransferToFlow`` may reach) was taken from the old center when the flow began.

The ACD engine is the exception: it holds queue and agent objects with live state
(waiting callers, an agent on a call, ring timers). :class:`~tsunagu.acd.engine.AcdEngine`
can *add* teams, agents and queues safely, so those happen at once. Changing or removing
a queue's routing, or an agent's team or skills, has no safe in-place operation yet; the
new settings take effect where they are read from the center (announcements, music,
fallback flow, who may be dialled) and the ACD part waits for a restart — reported, so the
operator knows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tsunagu.acd.agents import Agent, Team
from tsunagu.acd.engine import AcdEngine
from tsunagu.acd.queues import UnknownQueueError
from tsunagu.center import Center, queue_config

if TYPE_CHECKING:
    from tsunagu.calls.controller import CallController


def swap_center(controller: CallController, new: Center, now: float) -> list[str]:
    """Make ``new`` the controller's center; return what waits for a restart (one line
    each, naming the kind/name and why)."""
    old = controller.center
    acd = controller.acd
    waits: list[str] = []

    old_teams = {t.id: t for t in old.settings.teams}
    for team in new.settings.teams:
        if team.id not in old_teams:
            acd.add_team(Team(team.id, team.name))

    old_agents = {a.id: a for a in old.settings.agents}
    new_agents = {a.id: a for a in new.settings.agents}
    for agent_id, agent in new_agents.items():
        before = old_agents.get(agent_id)
        if before is None and agent_id not in controller.agent_ids:
            acd.add_agent(
                Agent(agent.id, agent.name, agent.team, dict(agent.skills), (agent.id,)), now
            )
            controller.agent_ids.add(agent_id)
        elif before is not None and (before.team, before.skills) != (agent.team, agent.skills):
            waits.append(f"agents/{agent_id}: a new team or skills reach the ACD at restart")
    for agent_id in old_agents.keys() - new_agents.keys():
        waits.append(
            f"agents/{agent_id}: deleted; their phone can no longer register, and they leave "
            "the ACD at restart"
        )

    for queue_id, queue in new.queues.items():
        before_queue = old.queues.get(queue_id)
        if before_queue is None:
            if _acd_has_queue(acd, queue_id, now):
                waits.append(f"queues/{queue_id}: re-created; its old routing stays until restart")
            else:
                acd.add_queue(queue_config(queue), now)
        elif queue_config(before_queue) != queue_config(queue):
            waits.append(
                f"queues/{queue_id}: routing changes (members, strategy, timers, overflow) "
                "reach the ACD at restart; announcements, music and fallback flow apply now"
            )
    for queue_id in old.queues.keys() - new.queues.keys():
        waits.append(
            f"queues/{queue_id}: deleted; no new caller enters it, callers already waiting "
            "stay until answered or gone"
        )

    old_register = {t.name: t for t in old.trunks.values() if t.kind == "register"}
    new_register = {t.name: t for t in new.trunks.values() if t.kind == "register"}
    for name in sorted(old_register.keys() | new_register.keys()):
        if old_register.get(name) != new_register.get(name):
            waits.append(f"trunks/{name}: registration to the carrier changes at restart")

    controller.center = new
    controller.settings = new.settings
    return waits


def _acd_has_queue(acd: AcdEngine, queue_id: str, now: float) -> bool:
    try:
        acd.queue_snapshot(queue_id, now)
    except UnknownQueueError:
        return False
    return True
