"""The sans-IO flow interpreter: every block, the runtime guard, versions, random graphs."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tsunagu.calendar.holidays import load_calendar
from tsunagu.calendar.hours import always_closed, always_open, load_hours
from tsunagu.flows import model as m
from tsunagu.flows.interpreter import (
    Action,
    CallbackRequested,
    CallWebhook,
    CollectDigits,
    DigitsCollected,
    DigitsTimedOut,
    EnqueueToQueue,
    FlowEnded,
    FlowEnvironment,
    FlowError,
    FlowLimitExceeded,
    FlowLimits,
    FlowRun,
    FlowRunError,
    FlowStarted,
    FlowTransferred,
    Hangup,
    Play,
    Played,
    PromptFile,
    QueueRefused,
    RecordVoicemail,
    Result,
    RunState,
    Speech,
    TransferFailed,
    TransferToNumber,
    VoicemailRecorded,
    WebhookError,
    WebhookFailed,
    WebhookResponse,
)
from tsunagu.flows.model import AttrValue, Flow, parse_flow

TOKYO = ZoneInfo("Asia/Tokyo")
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "flows"
TUESDAY_10 = datetime(2026, 1, 13, 10, 0, tzinfo=TOKYO)
TUESDAY_20 = datetime(2026, 1, 13, 20, 0, tzinfo=TOKYO)
COMING_OF_AGE_DAY_10 = datetime(2026, 1, 12, 10, 0, tzinfo=TOKYO)

OFFICE = load_hours(
    {"name": "office", "weekly": {d: ["09:00-18:00"] for d in ("mon", "tue", "wed", "thu", "fri")}}
)
JP = load_calendar({"name": "jp", "language": "ja"})
ENV = FlowEnvironment(
    hours={"office": OFFICE, "always_open": always_open(), "always_closed": always_closed()},
    calendars={"jp": JP},
)


def flow(blocks: str, *, start: str = "a", name: str = "f", version: int = 1) -> Flow:
    return parse_flow(f"name: {name}\nversion: {version}\nstart: {start}\nblocks:\n{blocks}")


def run_of(
    f: Flow,
    attributes: dict[str, AttrValue] | None = None,
    env: FlowEnvironment = ENV,
    limits: FlowLimits | None = None,
) -> FlowRun:
    return FlowRun(f, attributes, limits, env)


def visited(run: FlowRun) -> list[str]:
    return [step.block for step in run.path]


# --------------------------------------------------------------------------- PlayPrompt


def test_play_prompt_tts_with_attributes_then_next() -> None:
    run = run_of(
        flow(
            "  a: {type: PlayPrompt, text: 'こんにちは {{name}} 様', barge_in: true, next: b}\n"
            "  b: {type: PlayPrompt, prompt: bye.wav, language: en, next: c}\n"
            "  c: {type: Disconnect}\n"
        ),
        {"name": "青木"},
    )
    assert run.start(TUESDAY_10) == Play((Speech("こんにちは 青木 様", "ja"),), barge_in=True)
    assert run.resume(Played(), TUESDAY_10) == Play((PromptFile("bye.wav"),), barge_in=False)
    assert run.resume(Played(), TUESDAY_10) == Hangup("disconnect")
    assert run.state is RunState.ENDED
    assert visited(run) == ["a", "b", "c"]


# --------------------------------------------------------------------------- GetDigits

MENU = (
    "  a: {type: GetDigits, text: menu, max_digits: 2, timeout_s: 4, retries: 1,"
    " branches: {'1': one, '12': twelve}, invalid: bad, timeout: quiet, store_as: choice}\n"
    "  one: {type: Disconnect, reason: one}\n"
    "  twelve: {type: Disconnect, reason: twelve}\n"
    "  bad: {type: Disconnect, reason: bad}\n"
    "  quiet: {type: Disconnect, reason: quiet}\n"
)


def test_get_digits_action_and_branch() -> None:
    run = run_of(flow(MENU))
    assert run.start(TUESDAY_10) == CollectDigits((Speech("menu", "ja"),), 2, 4.0, "#")
    assert run.resume(DigitsCollected("12"), TUESDAY_10) == Hangup("twelve")
    assert run.attributes["choice"] == "12"


def test_get_digits_invalid_input_retries_then_takes_invalid() -> None:
    run = run_of(flow(MENU))
    first = run.start(TUESDAY_10)
    again = run.resume(DigitsCollected("9"), TUESDAY_10)
    assert again == first  # re-prompted once (retries: 1)
    assert run.resume(DigitsCollected("99"), TUESDAY_10) == Hangup("bad")
    assert "choice" not in run.attributes
    assert visited(run) == ["a", "a", "bad"]


def test_get_digits_timeout_retries_then_takes_timeout() -> None:
    run = run_of(flow(MENU))
    run.start(TUESDAY_10)
    assert isinstance(run.resume(DigitsTimedOut(), TUESDAY_10), CollectDigits)
    assert run.resume(DigitsTimedOut(), TUESDAY_10) == Hangup("quiet")


def test_get_digits_retry_then_success() -> None:
    run = run_of(flow(MENU))
    run.start(TUESDAY_10)
    run.resume(DigitsTimedOut(), TUESDAY_10)
    assert run.resume(DigitsCollected("1"), TUESDAY_10) == Hangup("one")


def test_get_digits_retries_reset_when_the_menu_is_entered_again() -> None:
    f = flow(
        "  a: {type: GetDigits, text: menu, retries: 0, branches: {'1': g},"
        " invalid: g, timeout: g}\n"
        "  g: {type: LoopGuard, max_passes: 1, next: a, exceeded: end}\n"
        "  end: {type: Disconnect}\n"
    )
    run = run_of(f)
    run.start(TUESDAY_10)
    # retries: 0 -> straight to invalid; the guard lets us back into a fresh menu once.
    assert isinstance(run.resume(DigitsCollected("5"), TUESDAY_10), CollectDigits)
    assert run.resume(DigitsCollected("5"), TUESDAY_10) == Hangup("disconnect")
    assert visited(run) == ["a", "g", "a", "g", "end"]


def test_get_digits_next_accepts_any_input_and_empty_input_is_invalid() -> None:
    f = flow(
        "  a: {type: GetDigits, text: account number, max_digits: 8, retries: 0,"
        " branches: {'0': operator}, next: got, invalid: bad, timeout: bad, store_as: account}\n"
        "  operator: {type: Disconnect, reason: operator}\n"
        "  got: {type: PlayPrompt, text: 'account {{account}}', next: bad}\n"
        "  bad: {type: Disconnect, reason: bad}\n"
    )
    run = run_of(f)
    run.start(TUESDAY_10)
    assert run.resume(DigitsCollected("12345678"), TUESDAY_10) == Play(
        (Speech("account 12345678", "ja"),)
    )
    run2 = run_of(f)
    run2.start(TUESDAY_10)
    assert run2.resume(DigitsCollected(""), TUESDAY_10) == Hangup("bad")


# --------------------------------------------------------------------------- hours, holidays

HOURS_FLOW = (
    "  a: {type: CheckHoliday, calendar: jp, holiday: hol, not_holiday: h,"
    " store_name_as: holiday}\n"
    "  h: {type: CheckHours, hours: office, open: open, closed: closed}\n"
    "  hol: {type: PlayPrompt, text: '本日は{{holiday}}のため休業です', next: closed}\n"
    "  open: {type: TransferToQueue, queue: support}\n"
    "  closed: {type: Disconnect, reason: after_hours}\n"
)


def test_check_hours_open_on_a_weekday_morning() -> None:
    run = run_of(flow(HOURS_FLOW))
    assert run.start(TUESDAY_10) == EnqueueToQueue("support")
    assert visited(run) == ["a", "h", "open"]


def test_check_hours_closed_on_a_weekday_evening() -> None:
    run = run_of(flow(HOURS_FLOW))
    assert run.start(TUESDAY_20) == Hangup("after_hours")


def test_check_hours_closed_at_the_weekend() -> None:
    run = run_of(flow(HOURS_FLOW))
    assert run.start(datetime(2026, 1, 17, 11, 0, tzinfo=TOKYO)) == Hangup("after_hours")


def test_check_holiday_on_a_public_holiday_says_its_name() -> None:
    run = run_of(flow(HOURS_FLOW))
    assert run.start(COMING_OF_AGE_DAY_10) == Play((Speech("本日は成人の日のため休業です", "ja"),))
    assert run.attributes["holiday"] == "成人の日"


def test_check_hours_with_unknown_hours_is_a_flow_error() -> None:
    run = run_of(flow(HOURS_FLOW), env=FlowEnvironment(calendars={"jp": JP}))
    assert run.start(TUESDAY_10) == Hangup("flow_error:unknown_hours")
    errors = [e for e in run.pop_events() if isinstance(e, FlowError)]
    assert [(e.block, e.kind) for e in errors] == [("h", "unknown_hours")]


def test_check_holiday_with_unknown_calendar_is_a_flow_error() -> None:
    run = run_of(flow(HOURS_FLOW), env=FlowEnvironment())
    assert run.start(TUESDAY_10) == Hangup("flow_error:unknown_calendar")


# --------------------------------------------------------------------------- InvokeWebhook

WEBHOOK = (
    "  a:\n"
    "    type: InvokeWebhook\n"
    "    url: 'https://crm.example/c/{{caller}}?dnis={{dialed}}'\n"
    "    method: POST\n"
    "    timeout_s: 2\n"
    "    headers: {X-Call: '{{call_id}}'}\n"
    "    body: {caller: '{{caller}}', n: '{{n}}', text: 'from {{caller}}'}\n"
    "    store_prefix: crm.\n"
    "    next: ok\n"
    "    error: failed\n"
    "  ok: {type: PlayPrompt, text: '{{crm.name}} {{crm.tier.level}}', next: end}\n"
    "  failed: {type: Disconnect, reason: webhook_failed}\n"
    "  end: {type: Disconnect}\n"
)
CALLER: dict[str, AttrValue] = {
    "caller": "+81 3/1",
    "dialed": "0312345678",
    "call_id": "c1",
    "n": 7,
}


def test_webhook_action_is_rendered() -> None:
    run = run_of(flow(WEBHOOK), CALLER)
    assert run.start(TUESDAY_10) == CallWebhook(
        url="https://crm.example/c/%2B81%203%2F1?dnis=0312345678",
        method="POST",
        body={"caller": "+81 3/1", "n": 7, "text": "from +81 3/1"},
        timeout_s=2.0,
        headers={"X-Call": "c1"},
    )


def test_webhook_json_object_becomes_attributes() -> None:
    run = run_of(flow(WEBHOOK), CALLER)
    run.start(TUESDAY_10)
    body: Any = {"name": "青木", "tier": {"level": "gold"}, "tags": ["a", "b"], "score": 3.5}
    action = run.resume(WebhookResponse(200, body), TUESDAY_10)
    assert action == Play((Speech("青木 gold", "ja"),))
    assert run.attributes["crm.tags"] == '["a", "b"]'
    assert run.attributes["crm.score"] == 3.5
    assert run.attributes["caller"] == "+81 3/1"  # prefix kept the caller's own attribute


def test_webhook_without_body_goes_on() -> None:
    run = run_of(flow(WEBHOOK), CALLER)
    run.start(TUESDAY_10)
    assert isinstance(run.resume(WebhookResponse(204, None), TUESDAY_10), Play)


@pytest.mark.parametrize(
    ("result", "reason"),
    [
        (WebhookResponse(500, {"error": "boom"}), "HTTP 500"),
        (WebhookResponse(200, ["not", "an", "object"]), "not a JSON object"),
        (WebhookFailed("timeout after 2.0 s"), "timeout after 2.0 s"),
    ],
)
def test_webhook_failure_takes_error_branch_and_raises_event(result: Result, reason: str) -> None:
    run = run_of(flow(WEBHOOK), CALLER)
    run.start(TUESDAY_10)
    assert run.resume(result, TUESDAY_10) == Hangup("webhook_failed")
    (event,) = [e for e in run.pop_events() if isinstance(e, WebhookError)]
    assert event.block == "a" and reason in event.reason
    assert event.url.startswith("https://crm.example/c/")
    assert "crm.error" not in run.attributes


def test_webhook_response_is_capped() -> None:
    run = run_of(flow(WEBHOOK), CALLER)
    run.start(TUESDAY_10)
    body: Any = {f"k{i}": "x" * 5000 for i in range(150)}
    run.resume(WebhookResponse(200, body), TUESDAY_10)
    stored = [k for k in run.attributes if k.startswith("crm.")]
    assert len(stored) == 100
    assert run.attributes["crm.k0"] == "x" * 1000


# --------------------------------------------------------------------------- attributes


def check(condition: str, attributes: dict[str, AttrValue]) -> bool:
    f = flow(
        f"  a: {{type: CheckAttribute, attribute: x, conditions: [{condition}], default: miss}}\n"
        "  hit: {type: Disconnect, reason: hit}\n"
        "  miss: {type: Disconnect, reason: miss}\n"
    )
    action = run_of(f, attributes).start(TUESDAY_10)
    assert isinstance(action, Hangup)
    return action.reason == "hit"


@pytest.mark.parametrize(
    ("condition", "attributes", "expected"),
    [
        ("{op: equals, value: gold, next: hit}", {"x": "gold"}, True),
        ("{op: equals, value: gold, next: hit}", {"x": "silver"}, False),
        ("{op: equals, value: gold, next: hit}", {}, False),
        ("{op: equals, value: 10, next: hit}", {"x": "10.0"}, True),
        ("{op: equals, value: true, next: hit}", {"x": True}, True),
        ("{op: equals, value: '{{y}}', next: hit}", {"x": "a", "y": "a"}, True),
        ("{op: not_equals, value: gold, next: hit}", {"x": "silver"}, True),
        ("{op: not_equals, value: gold, next: hit}", {"x": "gold"}, False),
        ("{op: not_equals, value: gold, next: hit}", {}, True),
        ("{op: contains, value: VIP, next: hit}", {"x": "a VIP caller"}, True),
        ("{op: contains, value: VIP, next: hit}", {"x": "regular"}, False),
        ("{op: exists, next: hit}", {"x": ""}, True),
        ("{op: exists, next: hit}", {"x": None}, False),
        ("{op: exists, next: hit}", {}, False),
        ("{op: greater, value: 3, next: hit}", {"x": "10"}, True),
        ("{op: greater, value: 3, next: hit}", {"x": 2}, False),
        ("{op: greater, value: 3, next: hit}", {"x": "ten"}, False),
        ("{op: less, value: 3, next: hit}", {"x": 2.5}, True),
        ("{op: less, value: 3, next: hit}", {"x": 3}, False),
        ("{op: less, value: 3, next: hit}", {"x": True}, False),
        ("{op: less, value: 3, next: hit}", {}, False),
    ],
)
def test_check_attribute(condition: str, attributes: dict[str, AttrValue], expected: bool) -> None:
    assert check(condition, attributes) is expected


def test_check_attribute_first_matching_condition_wins() -> None:
    f = flow(
        "  a: {type: CheckAttribute, attribute: x, default: d, conditions: ["
        "{op: greater, value: 1, next: first}, {op: greater, value: 0, next: second}]}\n"
        "  first: {type: Disconnect, reason: first}\n"
        "  second: {type: Disconnect, reason: second}\n"
        "  d: {type: Disconnect, reason: default}\n"
    )
    assert run_of(f, {"x": 5}).start(TUESDAY_10) == Hangup("first")
    assert run_of(f, {"x": 0.5}).start(TUESDAY_10) == Hangup("second")
    assert run_of(f, {"x": -1}).start(TUESDAY_10) == Hangup("default")


def test_set_attribute_renders_strings_and_keeps_raw_values() -> None:
    f = flow(
        "  a: {type: SetAttribute, attributes: {vip: true, count: '{{n}}', label: 'n={{n}}',"
        " none: null}, next: b}\n"
        "  b: {type: Disconnect}\n"
    )
    run = run_of(f, {"n": 3})
    run.start(TUESDAY_10)
    assert dict(run.attributes) == {"n": 3, "vip": True, "count": 3, "label": "n=3", "none": None}


def test_initial_attributes_are_copied() -> None:
    mine: dict[str, AttrValue] = {"n": 1}
    run = run_of(
        flow("  a: {type: SetAttribute, attributes: {n: 2}, next: b}\n  b: {type: Disconnect}\n"),
        mine,
    )
    run.start(TUESDAY_10)
    assert mine == {"n": 1} and run.attributes["n"] == 2


# --------------------------------------------------------------------------- transfers


def test_queue_accepted_ends_the_run_through_end() -> None:
    run = run_of(flow("  a: {type: TransferToQueue, queue: support}\n"))
    assert run.start(TUESDAY_10) == EnqueueToQueue("support")
    run.pop_events()
    run.end("queued", TUESDAY_10 + timedelta(seconds=1))
    assert run.state is RunState.ENDED and run.end_reason == "queued"
    assert run.pop_events() == [FlowEnded("queued", TUESDAY_10 + timedelta(seconds=1))]
    run.end("caller_hangup", TUESDAY_10)  # idempotent
    assert run.end_reason == "queued"


def test_queue_refused_takes_on_failure_or_hangs_up() -> None:
    with_failure = run_of(
        flow(
            "  a: {type: TransferToQueue, queue: support, on_failure: b}\n  b: {type: Voicemail}\n"
        )
    )
    with_failure.start(TUESDAY_10)
    assert with_failure.resume(QueueRefused("no agents"), TUESDAY_10) == RecordVoicemail((), 120)
    without = run_of(flow("  a: {type: TransferToQueue, queue: support}\n"))
    without.start(TUESDAY_10)
    assert without.resume(QueueRefused(), TUESDAY_10) == Hangup("queue_refused")


def test_transfer_to_number_with_caller_id() -> None:
    f = flow(
        "  a: {type: TransferToNumber, number: '09012345678', caller_id: '05012345678',"
        " timeout_s: 20, on_failure: b}\n"
        "  b: {type: Disconnect, reason: unreachable}\n"
    )
    run = run_of(f)
    assert run.start(TUESDAY_10) == TransferToNumber("09012345678", "05012345678", 20.0)
    assert run.resume(TransferFailed("486 Busy Here"), TUESDAY_10) == Hangup("unreachable")
    bare = run_of(flow("  a: {type: TransferToNumber, number: '09012345678'}\n"))
    assert bare.start(TUESDAY_10) == TransferToNumber("09012345678", None, 30.0)
    assert bare.resume(TransferFailed(), TUESDAY_10) == Hangup("transfer_failed")


def test_transfer_to_flow_continues_in_the_other_flow() -> None:
    main = flow(
        "  a: {type: SetAttribute, attributes: {x: 1}, next: t}\n"
        "  t: {type: TransferToFlow, flow: other}\n",
        name="main",
    )
    other = flow(
        "  s: {type: PlayPrompt, text: 'x={{x}}', next: e}\n  e: {type: Disconnect}\n",
        start="s",
        name="other",
        version=4,
    )
    env = FlowEnvironment(resolve_flow={"other": other}.get)
    run = run_of(main, env=env)
    assert run.start(TUESDAY_10) == Play((Speech("x=1", "ja"),))
    assert run.flow is other
    assert [(s.flow, s.version, s.block) for s in run.path] == [
        ("main", 1, "a"),
        ("main", 1, "t"),
        ("other", 4, "s"),
    ]
    assert FlowTransferred("main", "other", 4, TUESDAY_10) in run.pop_events()


def test_transfer_to_unknown_flow_is_a_flow_error() -> None:
    run = run_of(flow("  t: {type: TransferToFlow, flow: gone}\n", start="t"))
    assert run.start(TUESDAY_10) == Hangup("flow_error:unknown_flow")


# --------------------------------------------------------------------------- voicemail, guard


def test_voicemail_leaves_a_callback_task() -> None:
    f = flow("  a: {type: Voicemail, prompt: leave-message.wav, max_seconds: 60}\n")
    run = run_of(f, {"caller": "0312345678"})
    assert run.start(TUESDAY_10) == RecordVoicemail((PromptFile("leave-message.wav"),), 60)
    later = TUESDAY_10 + timedelta(seconds=45)
    assert run.resume(VoicemailRecorded("rec-1", 41.5), later) == Hangup("voicemail")
    (task,) = [e for e in run.pop_events() if isinstance(e, CallbackRequested)]
    assert (task.block, task.recording, task.duration_s, task.at) == ("a", "rec-1", 41.5, later)
    assert task.attributes == {"caller": "0312345678"}


def test_voicemail_names_its_queue_for_the_call_layer() -> None:
    f = flow("  a: {type: Voicemail, queue: support}\n")
    assert run_of(f).start(TUESDAY_10) == RecordVoicemail((), 120, "support")


def test_voicemail_with_next() -> None:
    f = flow(
        "  a: {type: Voicemail, text: どうぞ, next: b}\n  b: {type: Disconnect, reason: thanks}\n"
    )
    run = run_of(f)
    assert run.start(TUESDAY_10) == RecordVoicemail((Speech("どうぞ", "ja"),), 120)
    assert run.resume(VoicemailRecorded("r", 3.0), TUESDAY_10) == Hangup("thanks")


def test_loop_guard_counts_passes_per_call() -> None:
    f = flow(
        "  a: {type: PlayPrompt, text: again, next: g}\n"
        "  g: {type: LoopGuard, max_passes: 3, next: a, exceeded: bye}\n"
        "  bye: {type: Disconnect, reason: guard}\n"
    )
    run = run_of(f)
    action: Action = run.start(TUESDAY_10)
    plays = 0
    while isinstance(action, Play):
        plays += 1
        action = run.resume(Played(), TUESDAY_10)
    assert action == Hangup("guard")
    assert plays == 4  # the first pass plus three let through by the guard
    assert visited(run).count("g") == 4


# --------------------------------------------------------------------------- runtime guard


def drive(run: FlowRun, now: datetime, *, play_s: float = 0.0, other_s: float = 0.0) -> Hangup:
    """Answer every action with its failure/neutral result until the run hangs up."""
    action = run.start(now)
    for _ in range(10_000):
        if isinstance(action, Hangup):
            return action
        if isinstance(action, Play):
            now += timedelta(seconds=play_s)
            action = run.resume(Played(), now)
            continue
        now += timedelta(seconds=other_s)
        answers: dict[type[Any], Result] = {
            CollectDigits: DigitsTimedOut(),
            CallWebhook: WebhookFailed("down"),
            EnqueueToQueue: QueueRefused(),
            TransferToNumber: TransferFailed(),
            RecordVoicemail: VoicemailRecorded("r", 1.0),
        }
        action = run.resume(answers[type(action)], now)
    raise AssertionError("the run never ended")


def test_step_cap_ends_an_internal_loop() -> None:
    looping = flow("  a: {type: SetAttribute, attributes: {x: 1}, next: a}\n")
    run = run_of(looping, limits=FlowLimits(max_steps=50))
    assert run.start(TUESDAY_10) == Hangup("flow_limit:steps")
    assert run.steps == 50 and len(run.path) == 50
    limit = [e for e in run.pop_events() if isinstance(e, FlowLimitExceeded)]
    assert [(e.limit, e.value, e.block) for e in limit] == [("steps", 50, "a")]


def test_flow_transfer_cap_ends_a_ping_pong_between_flows() -> None:
    ping = flow("  t: {type: TransferToFlow, flow: pong}\n", start="t", name="ping")
    pong = flow("  t: {type: TransferToFlow, flow: ping}\n", start="t", name="pong")
    env = FlowEnvironment(resolve_flow={"ping": ping, "pong": pong}.get)
    run = run_of(ping, env=env, limits=FlowLimits(max_flow_transfers=10))
    assert run.start(TUESDAY_10) == Hangup("flow_limit:flow_transfers")
    transfers = [e for e in run.pop_events() if isinstance(e, FlowTransferred)]
    assert len(transfers) == 10


ENDLESS = parse_flow((EXAMPLES / "refused" / "endless_after_hours.yaml").read_text())


def test_requirements_4_endless_loop_forced_through_ends_by_time() -> None:
    """The §4 flow, never validated: a 60 s announcement, the second group refuses after
    15 s, round and round. The 30-minute cap ends it."""
    run = run_of(ENDLESS)
    assert drive(run, TUESDAY_20, play_s=60, other_s=15) == Hangup("flow_limit:duration")
    (limit,) = [e for e in run.pop_events() if isinstance(e, FlowLimitExceeded)]
    assert limit.limit == "duration"
    assert limit.at - TUESDAY_20 == timedelta(minutes=30)
    assert run.steps < 200


def test_requirements_4_endless_loop_forced_through_ends_by_steps() -> None:
    """The same loop with instant actions: the step cap ends it."""
    run = run_of(ENDLESS)
    assert drive(run, TUESDAY_20) == Hangup("flow_limit:steps")
    assert run.steps == 200
    assert visited(run)[:4] == ["announcement", "second_group", "announcement", "second_group"]


def test_timer_ends_a_run_stuck_in_an_action() -> None:
    run = run_of(flow("  a: {type: PlayPrompt, text: long, next: b}\n  b: {type: Disconnect}\n"))
    run.start(TUESDAY_10)
    assert run.deadline == TUESDAY_10 + timedelta(minutes=30)
    assert run.handle_timer(TUESDAY_10 + timedelta(minutes=29)) is None
    assert run.handle_timer(TUESDAY_10 + timedelta(minutes=30)) == Hangup("flow_limit:duration")
    assert run.state is RunState.ENDED
    assert run.handle_timer(TUESDAY_10 + timedelta(minutes=31)) is None
    with pytest.raises(FlowRunError):
        run.resume(Played(), TUESDAY_10 + timedelta(minutes=31))


def test_unvalidated_dead_end_hangs_up_with_an_event() -> None:
    run = run_of(flow("  a: {type: CheckHours, hours: office, open: b}\n  b: {type: Disconnect}\n"))
    assert run.start(TUESDAY_20) == Hangup("flow_error:dead_end")
    (error,) = [e for e in run.pop_events() if isinstance(e, FlowError)]
    assert (error.block, error.kind) == ("a", "dead_end")
    assert "'closed'" in error.message


def test_unvalidated_reference_to_a_missing_block() -> None:
    run = run_of(flow("  a: {type: PlayPrompt, text: hi, next: nowhere}\n"))
    run.start(TUESDAY_10)
    assert run.resume(Played(), TUESDAY_10) == Hangup("flow_error:unknown_block")


# --------------------------------------------------------------------------- versions, path, misuse


def versioned(version: int) -> Flow:
    return flow(
        f"  a: {{type: PlayPrompt, text: v{version} greeting, next: b}}\n"
        f"  b: {{type: PlayPrompt, text: v{version} bye, next: c}}\n"
        "  c: {type: Disconnect}\n",
        version=version,
    )


def test_publishing_a_new_version_does_not_disturb_a_run_in_progress() -> None:
    published = {"f": versioned(1)}
    env = FlowEnvironment(resolve_flow=published.get)
    run = FlowRun(published["f"], None, None, env)
    assert run.start(TUESDAY_10) == Play((Speech("v1 greeting", "ja"),))
    published["f"] = versioned(2)  # published while the caller listens to the greeting
    assert run.resume(Played(), TUESDAY_10) == Play((Speech("v1 bye", "ja"),))
    assert {s.version for s in run.path} == {1}
    new_call = FlowRun(published["f"], None, None, env)
    assert new_call.start(TUESDAY_10) == Play((Speech("v2 greeting", "ja"),))


def test_path_records_blocks_with_timestamps_and_start_event() -> None:
    run = run_of(flow("  a: {type: PlayPrompt, text: hi, next: b}\n  b: {type: Disconnect}\n"))
    run.start(TUESDAY_10)
    later = TUESDAY_10 + timedelta(seconds=3)
    run.resume(Played(), later)
    assert [(s.block, s.at) for s in run.path] == [("a", TUESDAY_10), ("b", later)]
    events = run.pop_events()
    assert events[0] == FlowStarted("f", 1, TUESDAY_10)
    assert events[-1] == FlowEnded("disconnect", later)
    assert run.pop_events() == []


def test_misuse_is_a_loud_error() -> None:
    run = run_of(flow("  a: {type: PlayPrompt, text: hi, next: b}\n  b: {type: Disconnect}\n"))
    with pytest.raises(FlowRunError, match="resume is not allowed when the run is idle"):
        run.resume(Played(), TUESDAY_10)
    with pytest.raises(FlowRunError, match="timezone-aware"):
        run.start(datetime(2026, 1, 13, 10, 0))
    run.start(TUESDAY_10)
    with pytest.raises(FlowRunError, match="DigitsCollected does not answer Play"):
        run.resume(DigitsCollected("1"), TUESDAY_10)
    with pytest.raises(FlowRunError, match="start is not allowed"):
        run.start(TUESDAY_10)


def test_example_main_line_end_to_end() -> None:
    main = parse_flow((EXAMPLES / "main_line.yaml").read_text(encoding="utf-8"))
    run = run_of(main)
    assert isinstance(run.start(TUESDAY_10), Play)
    assert isinstance(run.resume(Played(), TUESDAY_10), CollectDigits)
    assert run.resume(DigitsCollected("2"), TUESDAY_10) == EnqueueToQueue("sales")
    assert run.attributes["menu_choice"] == "2"
    after_hours = run_of(main)
    after_hours.start(TUESDAY_20)
    action = after_hours.resume(Played(), TUESDAY_20)
    assert isinstance(action, Play) and isinstance(action.items[0], Speech)
    assert "受付は終了" in action.items[0].text
    assert after_hours.resume(Played(), TUESDAY_20) == Hangup("normal")


# --------------------------------------------------------------------------- random graphs

_KINDS = [
    "PlayPrompt",
    "GetDigits",
    "SetAttribute",
    "CheckAttribute",
    "LoopGuard",
    "CheckHours",
    "InvokeWebhook",
    "TransferToQueue",
    "TransferToFlow",
    "Voicemail",
    "Disconnect",
]


@st.composite
def random_flows(draw: st.DrawFn) -> Flow:
    """Arbitrary graphs, most of them cyclic and never validated; some targets dangle."""
    size = draw(st.integers(1, 8))
    ids = [f"b{i}" for i in range(size)]
    target = st.one_of(st.sampled_from(ids), st.sampled_from(ids), st.just("missing"), st.none())
    blocks: dict[str, Any] = {}
    for block_id in ids:
        kind = draw(st.sampled_from(_KINDS))
        raw: dict[str, Any] = {"type": kind}
        if kind == "PlayPrompt":
            raw |= {"text": "hi", "next": draw(target)}
        elif kind == "GetDigits":
            raw |= {
                "text": "menu",
                "retries": draw(st.integers(0, 3)),
                "branches": {"1": b} if (b := draw(target)) else {},
                "invalid": draw(target),
                "timeout": draw(target),
            }
        elif kind == "SetAttribute":
            raw |= {"attributes": {"x": draw(st.integers(0, 5))}, "next": draw(target)}
        elif kind == "CheckAttribute":
            raw |= {
                "attribute": "x",
                "conditions": [{"op": "greater", "value": 2, "next": draw(target)}],
                "default": draw(target),
            }
        elif kind == "LoopGuard":
            raw |= {
                "max_passes": draw(st.integers(1, 100)),
                "next": draw(target),
                "exceeded": draw(target),
            }
        elif kind == "CheckHours":
            raw |= {"hours": "office", "open": draw(target), "closed": draw(target)}
        elif kind == "InvokeWebhook":
            raw |= {"url": "https://x/y", "next": draw(target), "error": draw(target)}
        elif kind == "TransferToQueue":
            raw |= {"queue": "support", "on_failure": draw(target)}
        elif kind == "Voicemail":
            raw |= {"next": draw(target)}
        elif kind == "TransferToFlow":
            raw |= {"flow": "random"}
        blocks[block_id] = {k: v for k, v in raw.items() if v is not None}
    return m.flow_from_mapping({"name": "random", "version": 1, "start": "b0", "blocks": blocks})


@settings(max_examples=300, deadline=None)
@given(random_flows(), st.integers(1, 60), st.data())
def test_random_flows_never_exceed_the_step_cap(
    f: Flow, max_steps: int, data: st.DataObject
) -> None:
    limits = FlowLimits(max_steps=max_steps, max_flow_transfers=data.draw(st.integers(0, 5)))
    run = FlowRun(
        f, {}, limits, FlowEnvironment(hours={"office": OFFICE}, resolve_flow=lambda _: f)
    )
    now = TUESDAY_10 + timedelta(hours=data.draw(st.integers(0, 23)))
    action = run.start(now)
    actions = 1
    while not isinstance(action, Hangup):
        assert run.steps <= max_steps
        now += timedelta(seconds=data.draw(st.integers(0, 120)))
        options: dict[type[Any], list[Result]] = {
            Play: [Played()],
            CollectDigits: [DigitsCollected("1"), DigitsCollected("7"), DigitsTimedOut()],
            CallWebhook: [WebhookResponse(200, {"x": 9}), WebhookResponse(500), WebhookFailed("x")],
            EnqueueToQueue: [QueueRefused()],
            RecordVoicemail: [VoicemailRecorded("r", 1.0)],
        }
        action = run.resume(data.draw(st.sampled_from(options[type(action)])), now)
        actions += 1
        assert actions <= max_steps + 1, "every action costs at least one step"
    assert run.steps <= max_steps
    assert len(run.path) == run.steps
    assert run.state is RunState.ENDED
