"""Flow documents: parsing every block type, errors that name block and field, templates."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import JsonValue, ValidationError

from tsunagu.flows.model import (
    BLOCK_TYPES,
    AttrValue,
    CheckAttributeBlock,
    Flow,
    FlowParseError,
    FlowProblem,
    GetDigitsBlock,
    InvokeWebhookBlock,
    PlayPromptBlock,
    parse_flow,
    render_json,
    render_text,
    render_url,
    template_names,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "flows"

EVERY_BLOCK = """
name: every-block
version: 3
start: play
blocks:
  play:
    {type: PlayPrompt, text: "こんにちは {{caller}} 様", language: ja, barge_in: true, next: menu}
  menu:
    type: GetDigits
    prompt: menu.wav
    max_digits: 4
    timeout_s: 4.5
    retries: 1
    branches: {1: hours, "12": holiday, "0#": hours}
    terminator: "*"
    invalid: bye
    timeout: bye
    store_as: choice
  hours: {type: CheckHours, hours: office, open: holiday, closed: bye}
  holiday: {type: CheckHoliday, calendar: jp, holiday: bye, not_holiday: hook, store_name_as: hol}
  hook:
    type: InvokeWebhook
    url: "https://crm.example/customers/{{caller}}?from={{dialed}}"
    method: GET
    timeout_s: 2
    headers: {Authorization: "Bearer {{token}}"}
    body: {caller: "{{caller}}", note: "call from {{caller}}", nested: {n: 1}}
    store_prefix: crm.
    next: check
    error: bye
  check:
    type: CheckAttribute
    attribute: crm.tier
    conditions:
      - {op: equals, value: gold, next: set}
      - {op: greater, value: 3, next: set}
      - {op: exists, next: queue}
    default: queue
  set: {type: SetAttribute, attributes: {vip: true, greeting: "VIP {{caller}}", n: 2}, next: guard}
  guard: {type: LoopGuard, max_passes: 3, next: queue, exceeded: bye}
  queue: {type: TransferToQueue, queue: support, on_failure: number}
  number:
    type: TransferToNumber
    number: "09012345678"
    caller_id: "+815012345678"
    timeout_s: 20
    on_failure: vm
  vm: {type: Voicemail, text: "メッセージをどうぞ", max_seconds: 60, next: other}
  other: {type: TransferToFlow, flow: after-hours}
  bye: {type: Disconnect, reason: after_hours}
"""


def problems_of(text: str) -> list[FlowProblem]:
    with pytest.raises(FlowParseError) as caught:
        parse_flow(text)
    return caught.value.problems


def one_block(block: str, *, extra: str = "") -> str:
    """A flow whose start block is ``block`` (YAML flow mapping) plus ``extra`` blocks."""
    return (
        "name: f\nversion: 1\nstart: b\nblocks:\n"
        f"  b: {block}\n  end: {{type: Disconnect}}\n{extra}"
    )


def test_every_block_type_parses() -> None:
    flow = parse_flow(EVERY_BLOCK)
    assert flow.name == "every-block" and flow.version == 3 and flow.start == "play"
    types = {block.type for block in flow.blocks.values()}
    assert types == set(BLOCK_TYPES)
    menu = flow.blocks["menu"]
    assert isinstance(menu, GetDigitsBlock)
    assert menu.branches == {"1": "hours", "12": "holiday", "0#": "hours"}
    assert menu.timeout_s == 4.5 and menu.terminator == "*"
    check = flow.blocks["check"]
    assert isinstance(check, CheckAttributeBlock)
    assert [c.op for c in check.conditions] == ["equals", "greater", "exists"]


def test_examples_parse() -> None:
    files = sorted(EXAMPLES.glob("*.yaml"))
    assert files, "examples/flows has flows"
    for path in files:
        assert isinstance(parse_flow(path.read_text(encoding="utf-8")), Flow), path


def test_yaml_round_trip_keeps_the_flow() -> None:
    flow = parse_flow(EVERY_BLOCK)
    text = flow.to_yaml()
    assert parse_flow(text) == flow
    assert text.index("type: PlayPrompt") < text.index("text:")


def test_flow_is_immutable() -> None:
    flow = parse_flow(EVERY_BLOCK)
    with pytest.raises(ValidationError):
        flow.version = 4
    with pytest.raises(ValidationError):
        flow.blocks["play"].description = "changed"


def test_drafts_with_missing_branches_parse() -> None:
    # Missing exits are a publishing problem (validate), not a parsing one.
    flow = parse_flow(one_block("{type: CheckHours, hours: office}"))
    assert flow.blocks["b"].exits()[0].target is None


def test_unknown_block_type_names_block_and_lists_types() -> None:
    (problem,) = problems_of(one_block("{type: Dissconnect}"))
    assert (problem.block, problem.field) == ("b", "type")
    assert "Dissconnect" in problem.message
    assert "Disconnect" in problem.fix and "LoopGuard" in problem.fix


def test_missing_type() -> None:
    (problem,) = problems_of(one_block("{next: end}"))
    assert (problem.block, problem.field) == ("b", "type")
    assert "no 'type'" in problem.message


def test_misspelled_field_lists_accepted_fields() -> None:
    (problem,) = problems_of(one_block("{type: PlayPrompt, text: hi, nxt: end}"))
    assert (problem.block, problem.field) == ("b", "nxt")
    assert problem.fix.startswith("remove 'nxt'")
    assert "PlayPrompt accepts: type," in problem.fix and "next" in problem.fix


def test_all_problems_reported_at_once() -> None:
    problems = problems_of(
        "name: f\nversion: 1\nstart: a\nblocks:\n"
        "  a: {type: PlayPrompt, next: b}\n"
        "  b: {type: GetDigits, text: hi, timeout_s: -1}\n"
        "  c: {type: LoopGuard, max_passes: 0}\n"
    )
    where = {(p.block, p.field) for p in problems}
    assert where == {("a", "prompt"), ("b", "timeout_s"), ("c", "max_passes")}


@pytest.mark.parametrize(
    ("block", "field", "message"),
    [
        ("{type: PlayPrompt, next: end}", "prompt", "nothing to say"),
        ("{type: PlayPrompt, prompt: a.wav, text: hi, next: end}", "prompt", "both"),
        ("{type: PlayPrompt, text: hi, language: fr, next: end}", "language", "'ja' or 'en'"),
        (
            "{type: PlayPrompt, prompt: a/../../etc/passwd, next: end}",
            "prompt",
            "leaves the prompt",
        ),
        ("{type: PlayPrompt, text: 'hi {{ name', next: end}", "text", "malformed placeholder"),
        ("{type: PlayPrompt, text: 'hi {{a+b}}', next: end}", "text", "malformed placeholder"),
        ("{type: GetDigits, text: hi, branches: {12: end}}", "branches", "read as a number"),
        ("{type: GetDigits, text: hi, branches: {'12': end}}", "branches.12", "max_digits"),
        (
            "{type: GetDigits, text: hi, max_digits: 2, branches: {'1#': end}}",
            "branches.1#",
            "terminator",
        ),
        ("{type: GetDigits, text: hi, branches: {'a': end}}", "branches.a", "pattern"),
        ("{type: GetDigits, text: hi, max_digits: 0}", "max_digits", "greater than or equal to 1"),
        ("{type: GetDigits, text: hi, retries: true}", "retries", "valid integer"),
        ("{type: InvokeWebhook, url: 'ftp://x/y', next: end, error: end}", "url", "not http"),
        (
            "{type: InvokeWebhook, url: 'https://{{host}}/y', next: end, error: end}",
            "url",
            "host part",
        ),
        (
            "{type: InvokeWebhook, url: 'https://x/y', timeout_s: 60, next: end}",
            "timeout_s",
            "less than or equal to 30",
        ),
        (
            "{type: InvokeWebhook, url: 'https://x/y', body: {a: '{{b'}}",
            "body",
            "malformed placeholder",
        ),
        (
            "{type: CheckAttribute, attribute: x, conditions: [{op: equals}]}",
            "conditions.0.value",
            "needs a value",
        ),
        (
            "{type: CheckAttribute, attribute: x, conditions: [{op: like, value: 1}]}",
            "conditions.0.op",
            "Input should be",
        ),
        ("{type: CheckAttribute, attribute: '1x'}", "attribute", "pattern"),
        ("{type: SetAttribute, attributes: {}}", "attributes", "at least 1"),
        ("{type: TransferToNumber, number: '03-1234-5678'}", "number", "pattern"),
        (
            "{type: TransferToNumber, number: '0312345678', caller_id: anonymous}",
            "caller_id",
            "pattern",
        ),
        ("{type: Voicemail, max_seconds: 6000}", "max_seconds", "less than or equal to 600"),
        ("{type: LoopGuard, next: end, exceeded: end}", "max_passes", "Field required"),
        ("{type: LoopGuard, max_passes: 1000, next: end, exceeded: end}", "max_passes", "100"),
        ("{type: Disconnect, reason: 'Bad Reason'}", "reason", "pattern"),
    ],
)
def test_block_errors_name_block_and_field(block: str, field: str, message: str) -> None:
    problems = problems_of(one_block(block))
    assert [(p.block, p.field) for p in problems] == [("b", field)], problems
    assert message in problems[0].message
    assert problems[0].fix


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        (
            "name: f\nversion: 0\nstart: a\nblocks: {a: {type: Disconnect}}",
            "version",
            "greater than",
        ),
        (
            "name: f\nversion: '2'\nstart: a\nblocks: {a: {type: Disconnect}}",
            "version",
            "valid integer",
        ),
        (
            "name: 'my flow'\nversion: 1\nstart: a\nblocks: {a: {type: Disconnect}}",
            "name",
            "pattern",
        ),
        ("name: f\nversion: 1\nstart: a\nblocks: {}", "blocks", "at least 1"),
        ("name: f\nversion: 1\nstart: a\nblocks: [{type: Disconnect}]", "blocks", "is a list"),
        ("name: f\nversion: 1\nblocks: {a: {type: Disconnect}}", "start", "Field required"),
        (
            "name: f\nversion: 1\nstart: a\nowner: me\nblocks: {a: {type: Disconnect}}",
            "owner",
            "Extra",
        ),
    ],
)
def test_flow_level_errors(text: str, field: str, message: str) -> None:
    problems = problems_of(text)
    assert [(p.block, p.field) for p in problems] == [("", field)], problems
    assert message in problems[0].message


def test_yaml_booleans_as_block_names_are_explained() -> None:
    problems = problems_of(
        "name: f\nversion: 1\nstart: a\nblocks:\n"
        "  a: {type: CheckHours, hours: h, open: yes, closed: b}\n"
        "  b: {type: Disconnect}\n"
    )
    assert [(p.block, p.field) for p in problems] == [("a", "open")]
    assert "yes/no/on/off" in problems[0].message and "quote" in problems[0].fix
    (problem,) = problems_of("name: f\nversion: 1\nstart: a\nblocks:\n  no: {type: Disconnect}\n")
    assert problem.field == "blocks" and "false" in problem.message


def test_duplicate_block_id_is_refused_not_silently_dropped() -> None:
    (problem,) = problems_of(
        "name: f\nversion: 1\nstart: a\nblocks:\n  a: {type: Disconnect}\n  a: {type: Disconnect}\n"
    )
    assert "'a' appears twice (line 6)" in problem.message


def test_yaml_syntax_error_and_non_mapping() -> None:
    (problem,) = problems_of("name: [unclosed\n")
    assert "not valid YAML" in problem.message and "line" in problem.message
    (problem,) = problems_of("- just a list\n")
    assert "not a mapping" in problem.message


def test_problem_text_names_block_field_and_fix() -> None:
    problem = FlowProblem("menu", "timeout", "dead end", "set timeout to a block id")
    assert str(problem) == "block \"menu\" field 'timeout': dead end; set timeout to a block id"
    assert str(FlowProblem("", "start", "m", "f")) == "flow field 'start': m; f"


# --------------------------------------------------------------------------- templates


def test_render_text_fills_attributes_and_blanks_missing_ones() -> None:
    attrs: dict[str, AttrValue] = {"name": "青木", "n": 3, "vip": True, "none": None}
    assert render_text("{{name}} 様 {{ n }} {{vip}} [{{none}}] [{{missing}}]", attrs) == (
        "青木 様 3 true [] []"
    )
    assert template_names("{{a}} and {{ b.c }}") == ["a", "b.c"]


def test_render_text_evaluates_nothing() -> None:
    # Only a plain name is a placeholder; anything else stays literal text.
    assert render_text("{{__import__('os')}} {x}", {"x": "y"}) == "{{__import__('os')}} {x}"


def test_render_url_percent_encodes_values() -> None:
    attrs = {"caller": "03 1234/../admin?x=1&y#z"}
    url = render_url("https://crm.example/c/{{caller}}?q={{caller}}", attrs)
    assert url == (
        "https://crm.example/c/03%201234%2F..%2Fadmin%3Fx%3D1%26y%23z"
        "?q=03%201234%2F..%2Fadmin%3Fx%3D1%26y%23z"
    )


def test_render_json_keeps_raw_values_for_whole_placeholders() -> None:
    attrs: dict[str, AttrValue] = {"n": 5, "name": "x", "flag": False}
    body: dict[str, JsonValue] = {
        "n": "{{n}}",
        "text": "n={{n}}",
        "list": ["{{flag}}", 1],
        "obj": {"name": "{{name}}"},
    }
    assert render_json(body, attrs) == {
        "n": 5,
        "text": "n=5",
        "list": [False, 1],
        "obj": {"name": "x"},
    }


def test_parsed_blocks_keep_templates_unrendered() -> None:
    flow = parse_flow(EVERY_BLOCK)
    play = flow.blocks["play"]
    hook = flow.blocks["hook"]
    assert isinstance(play, PlayPromptBlock) and play.text == "こんにちは {{caller}} 様"
    assert isinstance(hook, InvokeWebhookBlock) and "{{caller}}" in hook.url


def yaml_blocks(markdown: str) -> list[str]:
    return [part.split("```", 1)[0] for part in markdown.split("```yaml\n")[1:]]


def test_docs_complete_example_is_the_example_file() -> None:
    docs = (EXAMPLES.parents[1] / "docs" / "FLOWS.md").read_text(encoding="utf-8")
    complete = next(b for b in yaml_blocks(docs) if b.startswith("name: main-line"))
    example = (EXAMPLES / "main_line.yaml").read_text(encoding="utf-8")
    assert parse_flow(complete) == parse_flow(example)
