"""The contact center as configured: flows, hours, calendars, numbers, trunks, queues and
customers, built from :class:`~tsunagu.settings.Settings` and checked against each other.

Field-level checks live in the settings models; this module checks what only the whole
picture can tell — a number pointing at a flow that does not exist, a flow sending callers
to an unknown queue, a flow loop without a bound (REQUIREMENTS §4) — and refuses start-up
with every problem named by its place in the config file, like any other config error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tsunagu.acd.agents import Agent, Team
from tsunagu.acd.engine import AcdEngine
from tsunagu.acd.queues import OverflowGroup, OverflowRelease, OverflowTrigger, QueueConfig
from tsunagu.acd.strategies import Strategy
from tsunagu.calendar.holidays import HolidayCalendar
from tsunagu.calendar.hours import HoursOfOperation, always_closed, always_open
from tsunagu.calls.numbers import NumberError, to_e164
from tsunagu.flows.model import Flow, FlowParseError, flow_from_mapping, parse_flow
from tsunagu.flows.validate import FlowContext, validate_flow
from tsunagu.settings import (
    ConfigError,
    NumberSettings,
    QueueSettings,
    Settings,
    TrunkSettings,
)

#: Hours every configuration has without declaring them.
PRESET_HOURS = ("always_open", "always_closed")


@dataclass
class Center:
    settings: Settings
    flows: dict[str, Flow] = field(default_factory=dict)
    hours: dict[str, HoursOfOperation] = field(default_factory=dict)
    calendars: dict[str, HolidayCalendar] = field(default_factory=dict)
    #: DIDs keyed by E.164.
    numbers: dict[str, NumberSettings] = field(default_factory=dict)
    trunks: dict[str, TrunkSettings] = field(default_factory=dict)
    queues: dict[str, QueueSettings] = field(default_factory=dict)
    #: Customer number (E.164) -> assigned agent id.
    customers: dict[str, str] = field(default_factory=dict)

    def number(self, dialled: str) -> NumberSettings | None:
        try:
            return self.numbers.get(to_e164(dialled))
        except NumberError:
            return None

    def rep_for(self, caller: str) -> str | None:
        try:
            return self.customers.get(to_e164(caller))
        except NumberError:
            return None

    def build_acd(self, now: float) -> AcdEngine:
        """An ACD engine holding this configuration's teams, agents and queues."""
        engine = AcdEngine()
        for team in self.settings.teams:
            engine.add_team(Team(team.id, team.name))
        for agent in self.settings.agents:
            engine.add_agent(
                Agent(agent.id, agent.name, agent.team, dict(agent.skills), (agent.id,)), now
            )
        for queue in self.queues.values():
            engine.add_queue(queue_config(queue), now)
        return engine


def queue_config(queue: QueueSettings) -> QueueConfig:
    groups = tuple(
        OverflowGroup(
            group.id,
            tuple(group.agents),
            tuple(group.teams),
            OverflowTrigger(
                group.waiting_at_least, group.longest_wait_at_least_s, group.service_level_below
            ),
            OverflowRelease(min_active_s=group.min_active_s),
            auto=group.auto,
        )
        for group in queue.overflow
    )
    return QueueConfig(
        queue_id=queue.id,
        strategy=Strategy(queue.strategy),
        agent_ids=tuple(queue.agents),
        team_ids=tuple(queue.teams),
        ring_timeout_s=queue.ring_timeout_s,
        max_wait_s=queue.max_wait_s,
        wrap_up_s=queue.wrap_up_s,
        skill=queue.skill,
        min_skill_level=queue.min_skill_level,
        rep_timeout_s=queue.rep_timeout_s,
        team_timeout_s=queue.team_timeout_s,
        sl_threshold_s=queue.sl_threshold_s,
        overflow_groups=groups,
        overflow_check_s=queue.overflow_check_s,
    )


class _Problems:
    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, where: str, message: str) -> None:
        self.items.append((where, message))


def build_center(
    settings: Settings,
    source: str = "<config>",
    flow_documents: Mapping[str, Mapping[str, Any]] | None = None,
) -> Center:
    """Build and cross-check; raises :class:`ConfigError` listing every problem.

    ``flow_documents`` (flow name -> the flow's document, as the configuration store keeps
    them) are used instead of ``settings.flows`` when given: a server running from the
    store has no flow files."""
    problems = _Problems()
    center = Center(settings)
    agent_ids = {a.id for a in settings.agents}
    team_ids = {t.id for t in settings.teams}

    for i, agent in enumerate(settings.agents):
        if agent.team is not None and agent.team not in team_ids:
            problems.add(f"agents[{i}].team", f"unknown team {agent.team!r}; add it to teams")

    center.hours = {
        name: (always_open if name == "always_open" else always_closed)(name)
        for name in PRESET_HOURS
    }
    for i, hours in enumerate(settings.hours):
        _unique(problems, f"hours[{i}].name", hours.name, center.hours, "hours")
        center.hours[hours.name] = hours.build()
    for i, calendar in enumerate(settings.calendars):
        _unique(problems, f"calendars[{i}].name", calendar.name, center.calendars, "calendar")
        center.calendars[calendar.name] = calendar.build()

    for i, trunk in enumerate(settings.trunks):
        _unique(problems, f"trunks[{i}].name", trunk.name, center.trunks, "trunk")
        center.trunks[trunk.name] = trunk

    for i, queue in enumerate(settings.queues):
        _unique(problems, f"queues[{i}].id", queue.id, center.queues, "queue")
        center.queues[queue.id] = queue
        for member in queue.agents:
            if member not in agent_ids:
                problems.add(f"queues[{i}].agents", f"unknown agent {member!r}")
        for team in queue.teams:
            if team not in team_ids:
                problems.add(f"queues[{i}].teams", f"unknown team {team!r}")
        for j, group in enumerate(queue.overflow):
            for helper in group.agents:
                if helper not in agent_ids:
                    problems.add(f"queues[{i}].overflow[{j}].agents", f"unknown agent {helper!r}")
        if queue.strategy == "skills_based" and queue.skill is None:
            problems.add(f"queues[{i}].skill", "skills_based routing needs a skill")
        try:
            queue_config(queue)
        except ValueError as exc:
            problems.add(f"queues[{i}]", str(exc))

    flow_sources: dict[str, str] = {}
    for where, flow in _parsed_flows(settings, flow_documents, problems):
        _unique(problems, where, flow.name, center.flows, "flow")
        center.flows[flow.name] = flow
        flow_sources[flow.name] = where

    for i, number in enumerate(settings.numbers):
        where = f"numbers[{i}]"
        key = to_e164(number.number)
        if key in center.numbers:
            problems.add(f"{where}.number", f"{number.number} is listed twice")
        center.numbers[key] = number
        if number.flow not in center.flows:
            problems.add(f"{where}.flow", f"unknown flow {number.flow!r}; add the flow first")

    for i, queue in enumerate(settings.queues):
        if queue.fallback_flow is not None and queue.fallback_flow not in center.flows:
            problems.add(f"queues[{i}].fallback_flow", f"unknown flow {queue.fallback_flow!r}")

    for i, customer in enumerate(settings.customers):
        if customer.agent not in agent_ids:
            problems.add(f"customers[{i}].agent", f"unknown agent {customer.agent!r}")
        center.customers[to_e164(customer.number)] = customer.agent

    context = FlowContext(
        queues=set(center.queues),
        prompts=(),
        hours=set(center.hours),
        calendars=set(center.calendars),
        flows=dict(center.flows),
        numbers=[n.number for n in settings.numbers]
        + [to_e164(n.number) for n in settings.numbers],
    )
    for name, flow in center.flows.items():
        for problem in validate_flow(flow, context):
            problems.add(flow_sources[name], f"flow {name!r}: {problem}")

    if problems.items:
        raise ConfigError(source, problems.items)
    return center


def _parsed_flows(
    settings: Settings,
    flow_documents: Mapping[str, Mapping[str, Any]] | None,
    problems: _Problems,
) -> list[tuple[str, Flow]]:
    """``(where, flow)`` for every flow that parses; the others become problems."""
    out: list[tuple[str, Flow]] = []

    def parse(where: str, build: Callable[[], Flow], prefix: str = "") -> None:
        try:
            out.append((where, build()))
        except FlowParseError as exc:
            for problem in exc.problems:
                problems.add(where, f"{prefix}{problem}")

    if flow_documents is not None:
        for i, doc in enumerate(flow_documents.values()):
            parse(f"flows[{i}]", lambda doc=doc: flow_from_mapping(doc))  # type: ignore[misc]
        return out
    for i, entry in enumerate(settings.flows):
        if entry.flow is not None:
            inline = entry.flow
            parse(f"flows[{i}].flow", lambda inline=inline: flow_from_mapping(inline))  # type: ignore[misc]
            continue
        assert entry.file is not None
        path = entry.file if entry.file.is_absolute() else settings.base_dir / entry.file
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            problems.add(f"flows[{i}].file", f"cannot read {path}: {exc.strerror}")
            continue
        parse(f"flows[{i}].file", lambda text=text: parse_flow(text), f"{path.name}: ")  # type: ignore[misc]
    return out


def _unique(
    problems: _Problems,
    where: str,
    name: str,
    seen: Mapping[str, object],
    what: str,
) -> None:
    if name in seen:
        problems.add(where, f"{what} {name!r} is defined twice")
