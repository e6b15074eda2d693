"""Contact-center sections <-> store documents: round trips, per-document validation
naming the field, the whole-picture checks named by kind/name, and secrets."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from tsunagu.center import build_center
from tsunagu.config_documents import (
    center_from_documents,
    document_problems,
    documents_to_config,
    documents_to_settings,
    settings_to_documents,
    whole_picture_problems,
)
from tsunagu.config_kinds import (
    CENTER_KINDS,
    REDACTED,
    REDACTED_CHANGED,
    redact_document,
    redact_pair,
    restore_secrets,
)
from tsunagu.settings import ConfigError, FlowFileSettings, Settings, load_settings, parse_settings
from tsunagu.store import KINDS

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo.yaml"


@pytest.fixture
def demo() -> Settings:
    return load_settings(DEMO)


def _sorted(settings: Settings, kind: str, key: str) -> list[Any]:
    return sorted(getattr(settings, kind), key=lambda item: getattr(item, key))


def test_every_center_kind_is_a_store_kind() -> None:
    assert set(CENTER_KINDS) <= set(KINDS)
    assert "customers" in KINDS


def test_demo_round_trip_settings_documents_settings(demo: Settings) -> None:
    docs = settings_to_documents(demo)
    assert sorted(docs["numbers"]) == ["+81312345600", "+81312345601", "+81312345678"]
    assert docs["numbers"]["+81312345600"] == {
        "number": "0312345600",
        "flow": "demo-after-hours",
        "name": "After-hours demo",
    }
    assert docs["agents"]["1001"] == {
        "name": "Aoki",
        "sip_password": "demo-1001",
        "team": "support-team",
    }
    # A flow is stored as its document, menu keys as strings (JSON has no int keys).
    assert docs["flows"]["demo-menu"]["blocks"]["menu"]["branches"] == {
        "1": "to_support",
        "2": "to_sales",
    }
    back, flows = documents_to_settings(demo, docs)
    for kind, key in [
        ("agents", "id"),
        ("teams", "id"),
        ("trunks", "name"),
        ("numbers", "number"),
        ("queues", "id"),
        ("calendars", "name"),
    ]:
        assert _sorted(back, kind, key) == _sorted(demo, kind, key), kind
    assert back.server == demo.server and back.api == demo.api
    # The center built from the documents equals the one built from the YAML.
    from_yaml = build_center(demo)
    from_docs = center_from_documents(demo, docs)
    assert from_docs.flows == from_yaml.flows
    assert from_docs.numbers == from_yaml.numbers
    assert from_docs.queues == from_yaml.queues
    assert set(flows) == set(from_yaml.flows)


def test_documents_to_config_is_a_config_file_that_round_trips(demo: Settings) -> None:
    docs = settings_to_documents(demo)
    text = yaml.safe_dump(documents_to_config(docs), sort_keys=False)
    again = parse_settings(yaml.safe_load(text))
    assert settings_to_documents(again) == docs
    assert all(entry.flow is not None for entry in again.flows)  # flows inline


EVERY_KIND = """
teams: [{id: t1, name: Team one}]
agents:
  - {id: "2001", name: A, sip_password: secret-2001, team: t1, skills: {ja: 3}}
trunks:
  - {name: reg, kind: register, host: sip.example.net, username: u, password: trunk-pass}
  - {name: ip1, allow: [192.0.2.0/24], number_format: e164}
hours:
  - name: office
    weekly: {mon: ["09:00-18:00"]}
    overrides: [{date: 2025-01-02, closed: true}]
calendars: [{name: jp, country: JP, closures: [{date: 2025-12-31}]}]
queues:
  - {id: q1, agents: ["2001"], strategy: ring_all, music_on_hold: hold/m.wav,
     fallback_flow: f1}
flows:
  - flow: {name: f1, version: 1, start: d, blocks: {d: {type: Disconnect}}}
numbers: [{number: "+81501234567", flow: f1}]
customers: [{number: "09012345678", agent: "2001", name: Customer}]
"""


def test_every_kind_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(EVERY_KIND)
    settings = load_settings(path)
    docs = settings_to_documents(settings)
    assert {kind for kind, entities in docs.items() if entities} == set(CENTER_KINDS)
    assert docs["numbers"] == {"+81501234567": {"flow": "f1"}}  # E.164 as written: no number
    assert docs["customers"]["+819012345678"]["number"] == "09012345678"
    # A relative music file is made absolute against the config file's directory.
    assert docs["queues"]["q1"]["music_on_hold"] == str(tmp_path / "hold" / "m.wav")
    assert docs["hours"]["office"]["overrides"][0]["date"] == "2025-01-02"
    back, flows = documents_to_settings(settings, docs)
    assert back.flows == []  # flows come back as documents, for build_center
    inline = [FlowFileSettings(flow=doc) for doc in flows.values()]
    assert settings_to_documents(back.model_copy(update={"flows": inline})) == docs
    center = center_from_documents(settings, docs)
    assert center.customers == {"+819012345678": "2001"}
    assert set(center.trunks) == {"reg", "ip1"}
    assert set(center.hours) >= {"office", "always_open"}


DISCONNECT = {"d": {"type": "Disconnect"}}


@pytest.mark.parametrize(
    ("kind", "name", "document", "field"),
    [
        ("agents", "1001", {"sip_password": "short"}, "sip_password"),
        ("agents", "1001", {"sip_password": "long-enough", "skils": {}}, "skils"),
        ("queues", "q", {"strategy": "fastest"}, "strategy"),
        ("queues", "q", {"id": "other"}, "id"),
        ("trunks", "t", {"kind": "ip"}, "(top level)"),
        ("numbers", "0312345678", {"flow": "f"}, "name"),
        ("numbers", "+81312345678", {"flow": 3}, "flow"),
        ("customers", "+81312345678", {}, "agent"),
        ("hours", "h", {"weekly": {"mon": ["25:00-26:00"]}}, "weekly"),
        ("flows", "f", {"name": "g", "version": 1, "start": "d", "blocks": DISCONNECT}, "name"),
    ],
)
def test_the_validator_names_the_field(
    kind: str, name: str, document: dict[str, Any], field: str
) -> None:
    problems = document_problems(kind, name, document)
    assert problems, f"{kind}/{name} {document} was accepted"
    assert any(p.startswith(f"{field}") for p in problems), problems


def test_valid_documents_and_other_kinds_pass() -> None:
    assert document_problems("agents", "1001", {"sip_password": "long-enough"}) == []
    assert document_problems("numbers", "+81312345678", {"flow": "f"}) == []
    assert document_problems("users", "x", {"anything": 1}) == []  # not ours: users.py


def test_whole_picture_problems_name_kind_name_and_field(demo: Settings) -> None:
    docs = settings_to_documents(demo)
    assert whole_picture_problems(docs) == []
    broken = copy.deepcopy(docs)
    broken["numbers"]["+81312345600"]["flow"] = "nope"
    del broken["queues"]["sales"]
    problems = whole_picture_problems(broken)
    assert "numbers/+81312345600.flow: unknown flow 'nope'; add the flow first" in problems
    assert any(p.startswith("flows/demo-menu") and "sales" in p for p in problems), problems
    with pytest.raises(ConfigError) as caught:
        center_from_documents(demo, broken)
    assert ("numbers/+81312345600.flow", "unknown flow 'nope'; add the flow first") in (
        caught.value.problems
    )


def test_an_unbounded_flow_loop_is_refused(demo: Settings) -> None:
    docs = settings_to_documents(demo)
    docs["flows"]["loop"] = {
        "name": "loop",
        "version": 1,
        "start": "a",
        "blocks": {
            "a": {"type": "PlayPrompt", "text": "hi", "next": "b"},
            "b": {"type": "PlayPrompt", "text": "again", "next": "a"},
        },
    }
    problems = whole_picture_problems(docs)
    assert problems and all(p.startswith("flows/loop") for p in problems), problems


def test_secrets_are_redacted_and_restored() -> None:
    agent = {"name": "A", "sip_password": "secret-2001"}
    assert redact_document("agents", agent) == {"name": "A", "sip_password": REDACTED}
    assert redact_document("queues", {"x": 1}) == {"x": 1}
    before, after = redact_pair("agents", agent, {**agent, "sip_password": "secret-2002"})
    assert before == {"name": "A", "sip_password": REDACTED}
    assert after == {"name": "A", "sip_password": REDACTED_CHANGED}
    assert "secret" not in repr((before, after))
    current = {"agents": {"2001": agent}}
    restored, problems = restore_secrets(
        {"agents": {"2001": {"name": "B", "sip_password": REDACTED}}}, current
    )
    assert restored["agents"]["2001"] == {"name": "B", "sip_password": "secret-2001"}
    assert problems == []
    _restored, problems = restore_secrets({"agents": {"9": {"sip_password": REDACTED}}}, current)
    assert problems == [
        "agents/9.sip_password: the export left it out (<redacted>) and nothing is stored "
        "to keep; write the secret"
    ]


@pytest.mark.parametrize("entry", [{}, {"file": "a.yaml", "flow": {"name": "a"}}])
def test_a_flow_entry_is_a_file_or_a_flow_not_both(entry: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings({"flows": [entry]})
    assert caught.value.problems == [
        ("flows[0]", "give either 'file' (a flow file) or 'flow' (the flow itself)")
    ]


def test_an_inline_flow_is_checked_like_a_file() -> None:
    settings = parse_settings({"flows": [{"flow": {"name": "x", "version": 1}}]})
    with pytest.raises(ConfigError) as caught:
        build_center(settings)
    assert caught.value.problems and all(w == "flows[0].flow" for w, _ in caught.value.problems)
