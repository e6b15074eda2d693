"""Publishing checks: every refused flow shape, one test each, and the §4 endless loop."""

from __future__ import annotations

from pathlib import Path

import pytest

from tsunagu.flows.model import Flow, FlowProblem, parse_flow
from tsunagu.flows.validate import (
    FlowContext,
    FlowRejectedError,
    check_publishable,
    validate_flow,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "flows"

CONTEXT = FlowContext(
    queues={"support", "sales", "second-group"},
    prompts={"greeting.wav", "overflow-announcement.wav"},
    hours={"office", "always_open", "always_closed"},
    calendars={"jp"},
    flows={"after-hours": None},
    numbers={"0312345678", "+815012345678"},
)


def flow(blocks: str, *, start: str = "a", name: str = "f") -> Flow:
    return parse_flow(f"name: {name}\nversion: 1\nstart: {start}\nblocks:\n{blocks}")


def only(problems: list[FlowProblem], block: str | None = None) -> FlowProblem:
    """The one problem (about ``block``, when given)."""
    if block is not None:
        problems = [p for p in problems if p.block == block]
    assert len(problems) == 1, "\n".join(str(p) for p in problems)
    return problems[0]


# --------------------------------------------------------------------------- accepted


def test_examples_are_publishable() -> None:
    for path in sorted(EXAMPLES.glob("*.yaml")):
        assert validate_flow(parse_flow(path.read_text(encoding="utf-8")), CONTEXT) == [], path


def test_cycle_through_a_loop_guard_is_accepted() -> None:
    guarded = flow(
        "  a: {type: GetDigits, text: menu, branches: {'1': q}, invalid: again, timeout: again}\n"
        "  again: {type: LoopGuard, max_passes: 3, next: a, exceeded: bye}\n"
        "  q: {type: TransferToQueue, queue: support}\n"
        "  bye: {type: Disconnect}\n"
    )
    assert validate_flow(guarded, CONTEXT) == []


# --------------------------------------------------------------------------- refused shapes


def test_unknown_start() -> None:
    problem = only(validate_flow(flow("  b: {type: Disconnect}\n", start="begin"), CONTEXT))
    assert (problem.block, problem.field) == ("", "start")
    assert "'begin' does not exist" in problem.message
    assert "'b'" in problem.fix


def test_undefined_block_reference() -> None:
    problem = only(
        validate_flow(
            flow(
                "  a: {type: PlayPrompt, text: hi, next: goodby}\n  goodbye: {type: Disconnect}\n"
            ),
            CONTEXT,
        ),
        "a",
    )
    assert (problem.block, problem.field) == ("a", "next")
    assert "'goodby', which does not exist" in problem.message
    assert "did you mean" in problem.fix and "'goodbye'" in problem.fix


def test_unreachable_block() -> None:
    problem = only(
        validate_flow(
            flow("  a: {type: Disconnect}\n  orphan: {type: PlayPrompt, text: hi, next: a}\n"),
            CONTEXT,
        )
    )
    assert (problem.block, problem.field) == ("orphan", "")
    assert "unreachable" in problem.message


def test_dead_end_menu_without_timeout_branch() -> None:
    problem = only(
        validate_flow(
            flow(
                "  a: {type: GetDigits, text: menu, branches: {'1': q}, invalid: q}\n"
                "  q: {type: TransferToQueue, queue: support}\n"
            ),
            CONTEXT,
        )
    )
    assert (problem.block, problem.field) == ("a", "timeout")
    assert "dead end" in problem.message and "presses nothing" in problem.message
    assert "set timeout to a block id" in problem.fix


def test_dead_end_menu_without_any_branch() -> None:
    problems = validate_flow(
        flow(
            "  a: {type: GetDigits, text: menu, invalid: b, timeout: b}\n  b: {type: Disconnect}\n"
        ),
        CONTEXT,
    )
    assert [(p.block, p.field) for p in problems] == [("a", "branches")]


def test_dead_end_check_hours_without_closed_branch() -> None:
    problem = only(
        validate_flow(
            flow("  a: {type: CheckHours, hours: office, open: b}\n  b: {type: Disconnect}\n"),
            CONTEXT,
        )
    )
    assert (problem.block, problem.field) == ("a", "closed")


def test_dead_end_webhook_without_error_branch() -> None:
    problem = only(
        validate_flow(
            flow(
                "  a: {type: InvokeWebhook, url: 'https://x/y', next: b}\n  b: {type: Disconnect}\n"
            ),
            CONTEXT,
        )
    )
    assert (problem.block, problem.field) == ("a", "error")


def test_optional_exits_are_not_dead_ends() -> None:
    ok = flow(
        "  a: {type: TransferToQueue, queue: support, on_failure: n}\n"
        "  n: {type: TransferToNumber, number: '09012345678', on_failure: v}\n"
        "  v: {type: Voicemail}\n"
    )
    assert validate_flow(ok, CONTEXT) == []


@pytest.mark.parametrize(
    ("block", "field", "kind"),
    [
        ("{type: TransferToQueue, queue: suport}", "queue", "queue"),
        ("{type: PlayPrompt, prompt: welcome.wav, next: end}", "prompt", "prompt"),
        ("{type: CheckHours, hours: ofice, open: end, closed: end}", "hours", "hours"),
        (
            "{type: CheckHoliday, calendar: us, holiday: end, not_holiday: end}",
            "calendar",
            "calendar",
        ),
        ("{type: TransferToFlow, flow: before-hours}", "flow", "flow"),
        ("{type: Voicemail, queue: suport, next: end}", "queue", "queue"),
    ],
)
def test_unknown_resource(block: str, field: str, kind: str) -> None:
    problem = only(
        validate_flow(flow(f"  a: {block}\n  end: {{type: Disconnect}}\n"), CONTEXT), "a"
    )
    assert (problem.block, problem.field) == ("a", field)
    assert problem.message.startswith(f"unknown {kind} ")
    assert problem.fix.startswith(f"create {kind} ")


def test_voicemail_queue_names_the_block_and_the_fix() -> None:
    problem = only(validate_flow(flow("  a: {type: Voicemail, queue: suport}\n"), CONTEXT))
    assert (problem.block, problem.field) == ("a", "queue")
    assert problem.message == "unknown queue 'suport'"
    assert "support" in problem.fix  # the nearest known queue is suggested
    ok = flow("  a: {type: Voicemail, queue: support, next: b}\n  b: {type: Voicemail}\n")
    assert validate_flow(ok, CONTEXT) == []  # a queue named, or none at all (last queue)


def test_unknown_resource_with_nothing_defined_says_so() -> None:
    problem = only(
        validate_flow(flow("  a: {type: TransferToQueue, queue: support}\n"), FlowContext())
    )
    assert "none is defined yet" in problem.fix


def test_caller_id_must_be_one_of_our_numbers() -> None:
    problem = only(
        validate_flow(
            flow("  a: {type: TransferToNumber, number: '09012345678', caller_id: '0311112222'}\n"),
            CONTEXT,
        )
    )
    assert (problem.block, problem.field) == ("a", "caller_id")
    assert "not one of our numbers" in problem.message


def test_caller_id_in_e164_or_national_form_matches() -> None:
    for caller_id in ("05012345678", "+815012345678", "+81312345678"):
        ok = flow(
            f"  a: {{type: TransferToNumber, number: '09012345678', caller_id: '{caller_id}'}}\n"
        )
        assert validate_flow(ok, CONTEXT) == [], caller_id


def test_cycle_without_loop_guard() -> None:
    looping = flow(
        "  retry_menu: {type: GetDigits, text: menu, branches: {'1': q}, invalid: announce,"
        " timeout: announce}\n"
        "  announce: {type: PlayPrompt, text: sorry, next: retry_menu}\n"
        "  q: {type: TransferToQueue, queue: support}\n",
        start="retry_menu",
    )
    problem = only(validate_flow(looping, CONTEXT))
    assert (problem.block, problem.field) == ("retry_menu", "invalid")
    assert str(problem) == (
        "block \"retry_menu\" field 'invalid': cycle retry_menu -> announce -> retry_menu has no "
        "LoopGuard; add a LoopGuard block with max_passes on the cycle, or end it with Disconnect"
    )


def test_block_pointing_at_itself() -> None:
    problem = only(
        validate_flow(flow("  a: {type: SetAttribute, attributes: {x: 1}, next: a}\n"), CONTEXT)
    )
    assert problem.block == "a" and "cycle a -> a has no LoopGuard" in problem.message


def test_cycle_through_loop_guard_exceeded_branch_is_unbounded() -> None:
    sneaky = flow(
        "  a: {type: PlayPrompt, text: hi, next: g}\n"
        "  g: {type: LoopGuard, max_passes: 2, next: a, exceeded: a}\n"
    )
    problem = only(validate_flow(sneaky, CONTEXT))
    assert "only through its 'exceeded' branch" in problem.message
    assert "g.exceeded" in problem.fix


def test_two_separate_cycles_are_both_reported() -> None:
    two = flow(
        "  a: {type: CheckHours, hours: office, open: b, closed: c}\n"
        "  b: {type: PlayPrompt, text: open, next: b2}\n"
        "  b2: {type: PlayPrompt, text: again, next: b}\n"
        "  c: {type: PlayPrompt, text: closed, next: c}\n"
    )
    assert sorted(p.block for p in validate_flow(two, CONTEXT)) == ["b", "c"]


def test_requirements_4_endless_after_hours_loop_is_refused() -> None:
    """REQUIREMENTS §4: announcement -> second agent group -> (unanswered) -> announcement…"""
    endless = parse_flow((EXAMPLES / "refused" / "endless_after_hours.yaml").read_text())
    problems = validate_flow(endless, CONTEXT)
    assert [(p.block, p.field) for p in problems] == [("announcement", "next")]
    assert (
        "cycle announcement -> second_group -> announcement has no LoopGuard" in problems[0].message
    )
    with pytest.raises(FlowRejectedError, match="refused"):
        check_publishable(endless, CONTEXT)


def test_cycle_across_flows() -> None:
    main = flow(
        "  a: {type: PlayPrompt, text: main, next: t}\n  t: {type: TransferToFlow, flow: other}\n",
        name="main",
    )
    other = flow("  x: {type: TransferToFlow, flow: main}\n", start="x", name="other")
    context = FlowContext(flows={"other": other})
    problem = only(validate_flow(main, context))
    assert (problem.block, problem.field) == ("t", "flow")
    assert (
        "cycle across flows main:t -> other:x -> main:a -> main:t has no LoopGuard"
        in problem.message
    )


def test_transfer_to_own_flow_is_a_cycle() -> None:
    main = flow(
        "  a: {type: PlayPrompt, text: again, next: t}\n  t: {type: TransferToFlow, flow: main}\n",
        name="main",
    )
    problem = only(validate_flow(main, FlowContext()))
    assert (problem.block, problem.field) == ("t", "flow")
    assert "main:t -> main:a -> main:t" in problem.message


def test_cycle_across_flows_with_a_guard_is_accepted() -> None:
    main = flow(
        "  a: {type: LoopGuard, max_passes: 2, next: t, exceeded: bye}\n"
        "  t: {type: TransferToFlow, flow: other}\n"
        "  bye: {type: Disconnect}\n",
        name="main",
    )
    other = flow("  x: {type: TransferToFlow, flow: main}\n", start="x", name="other")
    assert validate_flow(main, FlowContext(flows={"other": other})) == []


def test_transfer_chain_without_cycle_is_accepted() -> None:
    main = flow("  t: {type: TransferToFlow, flow: other}\n", start="t", name="main")
    other = flow("  x: {type: Disconnect}\n", start="x", name="other")
    assert validate_flow(main, FlowContext(flows={"other": other})) == []


def test_problems_of_several_kinds_come_together() -> None:
    bad = flow(
        "  a: {type: CheckHours, hours: nope, open: b}\n"
        "  b: {type: PlayPrompt, text: hi, next: a}\n"
        "  c: {type: Disconnect}\n"
    )
    kinds = {(p.block, p.field) for p in validate_flow(bad, CONTEXT)}
    assert kinds == {("a", "closed"), ("a", "hours"), ("c", ""), ("a", "open")}
