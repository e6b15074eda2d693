"""``events.webhooks`` settings: validated once, every problem names its field, and the
secret never shows in a repr (so never in a log line or a traceback)."""

from __future__ import annotations

from typing import Any

import pytest

from tsunagu.settings import ConfigError, parse_settings

GOOD = {
    "name": "crm",
    "url": "https://crm.example.com/hooks/tsunagu",
    "secret": "whsec-0123456789abcdef",
    "events": ["call.offered", "call.ended"],
}


def webhooks(*items: dict[str, Any]) -> dict[str, Any]:
    return {"events": {"webhooks": list(items)}}


def test_a_webhook_with_defaults() -> None:
    (hook,) = parse_settings(webhooks(GOOD)).events.webhooks
    assert hook.events == ["call.offered", "call.ended"]
    assert hook.timeout_s == 10 and hook.max_attempts == 8
    assert parse_settings({}).events.webhooks == []


@pytest.mark.parametrize(
    ("change", "field", "hint"),
    [
        ({"url": "ftp://x.example"}, "events.webhooks[0].url", "http:// or https://"),
        ({"url": "https://"}, "events.webhooks[0].url", "with a host"),
        ({"secret": "short"}, "events.webhooks[0].secret", "at least 16"),
        ({"events": ["call.ofered"]}, "events.webhooks[0].events", "'call.ofered'"),
        ({"events": []}, "events.webhooks[0].events", "at least one"),
        ({"timeout_s": 0}, "events.webhooks[0].timeout_s", "greater than 0"),
        ({"name": "has space"}, "events.webhooks[0].name", "pattern"),
        ({"backoff_base_s": 10, "backoff_max_s": 5}, "events.webhooks[0]", "backoff_max_s"),
        ({"sekret": "x"}, "events.webhooks[0].sekret", "unknown setting"),
    ],
)
def test_bad_webhooks_name_the_field(change: dict[str, Any], field: str, hint: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings(webhooks({**GOOD, **change}))
    problems = dict(info.value.problems)
    assert field in problems, problems
    assert hint in problems[field]


def test_missing_secret_is_required() -> None:
    item = {k: v for k, v in GOOD.items() if k != "secret"}
    with pytest.raises(ConfigError) as info:
        parse_settings(webhooks(item))
    assert dict(info.value.problems)["events.webhooks[0].secret"] == "required; add it"


def test_names_are_unique() -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings(webhooks(GOOD, GOOD))
    assert "crm listed twice" in dict(info.value.problems)["events.webhooks"]


def test_the_secret_is_not_in_repr() -> None:
    settings = parse_settings(webhooks(GOOD))
    assert "whsec-0123456789abcdef" not in repr(settings)
    assert "whsec-0123456789abcdef" not in str(settings.events)
