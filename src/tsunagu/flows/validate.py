"""Publishing checks: a flow that can trap a caller, or that points at nothing, is refused.

Why this exists: REQUIREMENTS §4 — a caller who left the phone off-hook out of hours
looped between an IVR announcement and an agent group *forever*. Here a flow is a graph
and the loop is visible before it is published. The rules:

* ``start`` and every branch name an existing block; every block is reachable.
* No dead end: every outcome of a non-terminal block leads somewhere (a menu's timeout, a
  webhook's error, a CheckHours' closed branch…). Optional exits (a queue's
  ``on_failure``) disconnect when absent and are not dead ends.
* Every queue, prompt, hours, calendar and flow named exists, and a transfer's caller ID
  is one of our own numbers (a flow may not present someone else's number).
* No cycle without a bounded LoopGuard. A LoopGuard lets execution through its ``next``
  branch at most ``max_passes`` times per call, so removing every LoopGuard ``next`` edge
  must leave a graph without cycles; any cycle left (including one that passes a
  LoopGuard only through ``exceeded``) can run forever. The same holds across flows joined
  by TransferToFlow when the other flows are known.

Each problem names the block, the field and the fix. The runtime guard in
:mod:`tsunagu.flows.interpreter` still caps every call, for flows that slipped through.
"""

from __future__ import annotations

import difflib
from collections import deque
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from tsunagu.flows.model import (
    CheckHolidayBlock,
    CheckHoursBlock,
    Flow,
    FlowProblem,
    GetDigitsBlock,
    LoopGuardBlock,
    PlayPromptBlock,
    TransferToFlowBlock,
    TransferToNumberBlock,
    TransferToQueueBlock,
    VoicemailBlock,
)

__all__ = ["FlowContext", "FlowProblem", "FlowRejectedError", "check_publishable", "validate_flow"]

_END_HINT = "end with a Disconnect block if the call should stop there"


@dataclass(frozen=True)
class FlowContext:
    """What exists where the flow will be published.

    ``flows`` maps each known flow name to its published version, or to ``None`` when
    only the name is known (then cross-flow cycles through it cannot be checked).
    ``numbers`` are our own numbers (DIDs) that may be shown as caller ID.
    """

    queues: Collection[str] = ()
    prompts: Collection[str] = ()
    hours: Collection[str] = ()
    calendars: Collection[str] = ()
    flows: Mapping[str, Flow | None] = field(default_factory=dict)
    numbers: Collection[str] = ()


class FlowRejectedError(ValueError):
    """The flow may not be published; ``problems`` says why (the author's fault)."""

    def __init__(self, flow: Flow, problems: list[FlowProblem]) -> None:
        self.flow_name = flow.name
        self.problems = problems
        lines = [f"flow {flow.name!r} version {flow.version} refused:"]
        lines += [f"  {p}" for p in problems]
        super().__init__("\n".join(lines))


def check_publishable(flow: Flow, context: FlowContext) -> None:
    """Raise :class:`FlowRejectedError` unless :func:`validate_flow` finds nothing."""
    problems = validate_flow(flow, context)
    if problems:
        raise FlowRejectedError(flow, problems)


def validate_flow(flow: Flow, context: FlowContext) -> list[FlowProblem]:
    """Every reason ``flow`` may not be published in ``context``; empty when it may."""
    problems: list[FlowProblem] = []
    if flow.start not in flow.blocks:
        problems.append(
            FlowProblem(
                "",
                "start",
                f"start block {flow.start!r} does not exist",
                _choose("set start to", flow.start, flow.blocks),
            )
        )
    for block_id in flow.blocks:
        problems += _check_exits(flow, block_id)
        problems += _check_resources(flow, block_id, context)
    problems += _check_reachable(flow)
    problems += _check_cycles(flow)
    problems += _check_flow_cycles(flow, context)
    return problems


# --------------------------------------------------------------------------- per block


def _check_exits(flow: Flow, block_id: str) -> list[FlowProblem]:
    block = flow.blocks[block_id]
    found: list[FlowProblem] = []
    for ex in block.exits():
        if ex.target is None:
            if ex.required:
                found.append(
                    FlowProblem(
                        block_id,
                        ex.field,
                        f"dead end: {block.type} has no {ex.field!r}, so the call has nowhere "
                        f"to go {ex.meaning}",
                        f"set {ex.field} to a block id ({_END_HINT})",
                    )
                )
        elif ex.target not in flow.blocks:
            found.append(
                FlowProblem(
                    block_id,
                    ex.field,
                    f"{ex.field} points at block {ex.target!r}, which does not exist",
                    _choose(
                        f"define block {ex.target!r} or set {ex.field} to", ex.target, flow.blocks
                    ),
                )
            )
    return found


def _check_resources(flow: Flow, block_id: str, context: FlowContext) -> list[FlowProblem]:
    block = flow.blocks[block_id]
    found: list[FlowProblem] = []

    def unknown(field_name: str, kind: str, value: str, known: Iterable[str]) -> None:
        found.append(
            FlowProblem(
                block_id,
                field_name,
                f"unknown {kind} {value!r}",
                _choose(f"create {kind} {value!r} first, or use", value, known),
            )
        )

    if isinstance(block, PlayPromptBlock | GetDigitsBlock | VoicemailBlock):
        if block.prompt is not None and block.prompt not in context.prompts:
            unknown("prompt", "prompt", block.prompt, context.prompts)
        if (
            isinstance(block, VoicemailBlock)
            and block.queue is not None
            and block.queue not in context.queues
        ):
            unknown("queue", "queue", block.queue, context.queues)
    elif isinstance(block, CheckHoursBlock):
        if block.hours not in context.hours:
            unknown("hours", "hours", block.hours, context.hours)
    elif isinstance(block, CheckHolidayBlock):
        if block.calendar not in context.calendars:
            unknown("calendar", "calendar", block.calendar, context.calendars)
    elif isinstance(block, TransferToQueueBlock):
        if block.queue not in context.queues:
            unknown("queue", "queue", block.queue, context.queues)
    elif isinstance(block, TransferToFlowBlock):
        if block.flow != flow.name and block.flow not in context.flows:
            unknown("flow", "flow", block.flow, context.flows)
    elif isinstance(block, TransferToNumberBlock):
        own = {_national(n) for n in context.numbers}
        if block.caller_id is not None and _national(block.caller_id) not in own:
            found.append(
                FlowProblem(
                    block_id,
                    "caller_id",
                    f"caller ID {block.caller_id!r} is not one of our numbers",
                    _choose("present one of our numbers:", block.caller_id, context.numbers),
                )
            )
    return found


def _national(number: str) -> str:
    """Japanese E.164 to national form, so '+815012345678' and '05012345678' compare
    equal (the trunk layer owns full normalisation)."""
    return "0" + number[3:] if number.startswith("+81") else number


def _choose(prefix: str, wrong: str, known: Iterable[str]) -> str:
    names = sorted(known)
    close = difflib.get_close_matches(wrong, names, n=1)
    if close:
        return f"{prefix} {close[0]!r} (did you mean it?)"
    if not names:
        return f"{prefix} an existing one (none is defined yet)"
    shown = ", ".join(repr(n) for n in names[:8]) + (", …" if len(names) > 8 else "")
    return f"{prefix} one of {shown}"


# --------------------------------------------------------------------------- graph

Node = tuple[str, str]  # (flow name, block id)


def _edges(flow: Flow, block_id: str, *, bounded: bool) -> list[tuple[str, str]]:
    """``(field, target)`` of a block's existing exits; with ``bounded=False`` a
    LoopGuard's ``next`` is left out (it is taken at most max_passes times)."""
    block = flow.blocks[block_id]
    out = []
    for ex in block.exits():
        if ex.target is None or ex.target not in flow.blocks:
            continue
        if not bounded and isinstance(block, LoopGuardBlock) and ex.field == "next":
            continue
        out.append((ex.field, ex.target))
    return out


def _distances(flow: Flow) -> dict[str, int]:
    if flow.start not in flow.blocks:
        return {}
    dist = {flow.start: 0}
    todo = deque([flow.start])
    while todo:
        current = todo.popleft()
        for _, target in _edges(flow, current, bounded=True):
            if target not in dist:
                dist[target] = dist[current] + 1
                todo.append(target)
    return dist


def _check_reachable(flow: Flow) -> list[FlowProblem]:
    if flow.start not in flow.blocks:
        return []  # already reported; everything would look unreachable
    reached = _distances(flow)
    return [
        FlowProblem(
            block_id,
            "",
            "unreachable: no path from start leads here",
            "point a branch of another block at it, or delete it",
        )
        for block_id in flow.blocks
        if block_id not in reached
    ]


def _strongly_connected(nodes: Iterable[Node], succ: Mapping[Node, list[Node]]) -> list[list[Node]]:
    """Tarjan's algorithm, iterative (flows may be deep enough to hurt recursion)."""
    index: dict[Node, int] = {}
    low: dict[Node, int] = {}
    stack: list[Node] = []
    on_stack: set[Node] = set()
    result: list[list[Node]] = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work: list[tuple[Node, int]] = [(root, 0)]
        while work:
            node, child = work.pop()
            if child == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            children = succ.get(node, [])
            if child < len(children):
                work.append((node, child + 1))
                nxt = children[child]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                result.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return result


def _cycle_through(entry: Node, succ: Mapping[Node, list[Node]], members: set[Node]) -> list[Node]:
    """Shortest cycle from ``entry`` back to itself inside one component."""
    parents: dict[Node, Node] = {}
    todo = deque([entry])
    while todo:
        current = todo.popleft()
        for nxt in succ.get(current, []):
            if nxt not in members:
                continue
            if nxt == entry:
                path = [current]
                while path[-1] != entry:
                    path.append(parents[path[-1]])
                return [*reversed(path), entry]
            if nxt not in parents:
                parents[nxt] = current
                todo.append(nxt)
    return [entry, entry]  # unreachable for a real component; keeps the type simple


def _is_cycle(component: list[Node], succ: Mapping[Node, list[Node]]) -> bool:
    return len(component) > 1 or component[0] in succ.get(component[0], [])


def _check_cycles(flow: Flow) -> list[FlowProblem]:
    succ: dict[Node, list[Node]] = {
        (flow.name, b): [(flow.name, t) for _, t in _edges(flow, b, bounded=False)]
        for b in flow.blocks
    }
    dist = _distances(flow)
    order = {b: i for i, b in enumerate(flow.blocks)}
    problems = []
    for component in _strongly_connected(succ, succ):
        if not _is_cycle(component, succ):
            continue
        members = set(component)
        entry = min(component, key=lambda n: (dist.get(n[1], len(order)), order[n[1]]))
        path = [b for _, b in _cycle_through(entry, succ, members)]
        field_name = next(f for f, t in _edges(flow, path[0], bounded=False) if t == path[1])
        shown = " -> ".join(path)
        guards = [b for b in path if isinstance(flow.blocks[b], LoopGuardBlock)]
        if guards:
            message = (
                f"cycle {shown} passes LoopGuard {guards[0]!r} only through its 'exceeded' "
                "branch, which does not bound it"
            )
            fix = f"point {guards[0]}.exceeded out of the cycle (e.g. to a Disconnect block)"
        else:
            message = f"cycle {shown} has no LoopGuard"
            fix = "add a LoopGuard block with max_passes on the cycle, or end it with Disconnect"
        problems.append(FlowProblem(path[0], field_name, message, fix))
    return problems


def _check_flow_cycles(flow: Flow, context: FlowContext) -> list[FlowProblem]:
    """Cycles that leave this flow through TransferToFlow and come back."""
    flows: dict[str, Flow] = {}
    todo = [flow]
    while todo:
        current = todo.pop()
        if current.name in flows:
            continue
        flows[current.name] = current
        for block in current.blocks.values():
            if isinstance(block, TransferToFlowBlock):
                other = flow if block.flow == flow.name else context.flows.get(block.flow)
                if other is not None and other.start in other.blocks:
                    todo.append(other)
    if not any(
        isinstance(b, TransferToFlowBlock) and b.flow in flows for b in flow.blocks.values()
    ):
        return []
    succ: dict[Node, list[Node]] = {}
    for name, current in flows.items():
        for block_id, block in current.blocks.items():
            targets = [(name, t) for _, t in _edges(current, block_id, bounded=False)]
            if isinstance(block, TransferToFlowBlock) and block.flow in flows:
                targets.append((block.flow, flows[block.flow].start))
            succ[(name, block_id)] = targets
    problems = []
    for component in _strongly_connected(succ, succ):
        if not _is_cycle(component, succ):
            continue
        members = set(component)
        # A TransferToFlow block in a cycle always crosses: it has no other exit.
        crossings = [
            n
            for n in component
            if n[0] == flow.name and isinstance(flow.blocks[n[1]], TransferToFlowBlock)
        ]
        if not crossings:
            continue  # a cycle inside one flow: reported by that flow's own check
        entry = min(crossings, key=lambda n: list(flow.blocks).index(n[1]))
        path = _cycle_through(entry, succ, members)
        shown = " -> ".join(f"{f}:{b}" for f, b in path)
        problems.append(
            FlowProblem(
                entry[1],
                "flow",
                f"cycle across flows {shown} has no LoopGuard",
                "add a LoopGuard block with max_passes on the cycle in one of the flows, "
                "or end it with Disconnect",
            )
        )
    return problems
