"""Configuration changes reach a running server without a restart, and a restart with a
YAML that differs from the store keeps the store's configuration — with real phones.

The server is the real ``python -m tsunagu serve``; changes are made through the REST API
as admin (the same path a UI or a deploy script uses); callers are baresip phones calling
from the demo trunk's address."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.peers.baresip import BaresipUA
from tests.integration.peers.tsunagu import TsunaguServer
from tests.integration.test_calls import (
    Login,
    caller_phone,
    demo_center,
    login,
    wait_records,
)

__all__ = ["caller_phone", "login"]  # fixtures, imported for this module's tests


def reloaded(server: TsunaguServer, since: int, revision: int) -> dict[str, Any]:
    """Wait (bounded) for the log line saying the center of ``revision`` is in use."""
    return server.wait_log(
        lambda line: (
            line.get("msg") == "configuration reloaded" and line.get("revision", 0) >= revision
        ),
        timeout=10,
        what=f"configuration reloaded at revision {revision}",
        since=since,
    )


def api_error(server: TsunaguServer, path: str, method: str, body: object = None) -> Any:
    with pytest.raises(urllib.error.HTTPError) as caught:
        server.api(path, method, body)
    return caught.value.code, json.loads(caught.value.read())


def test_a_number_added_through_the_api_runs_its_flow_without_a_restart(
    tsunagu_factory: Callable[..., TsunaguServer], caller_phone: BaresipUA, tmp_path: Path
) -> None:
    server = tsunagu_factory(config=demo_center(ring_timeout_s=4))
    pid = server.pid
    mark = server.log_mark()
    entity = server.api(
        "/api/v1/config/numbers/+81312345699",
        "PUT",
        {"flow": "demo-after-hours", "name": "added live"},
    )
    reloaded(server, mark, entity["revision"])

    caller_phone.call_and_wait(f"sip:0312345699@127.0.0.1:{server.sip_port}")
    closed = caller_phone.wait_event("CALL_CLOSED", timeout=30)
    assert "reset by peer" in closed.param  # our BYE: the flow hung up
    (record,) = wait_records(server, 1)
    assert record.interaction.dialled == "0312345699"
    assert record.interaction.disposition == "after_hours"
    assert server.pid == pid and server.running  # no restart

    # A change the whole picture refuses never reaches the store: deleting a flow that a
    # number still uses is 409, naming the number, and the number keeps working.
    status, body = api_error(server, "/api/v1/config/flows/demo-after-hours", "DELETE")
    assert status == 409 and body["error_id"] == "config.in_use"
    assert "numbers/+81312345699.flow: unknown flow 'demo-after-hours'" in (
        " ".join(body["details"]["problems"])
    )
    status, body = api_error(
        server, "/api/v1/config/numbers/+81312345698", "PUT", {"flow": "no-such-flow"}
    )
    assert status == 422 and body["error_id"] == "config.invalid"
    assert body["details"]["problems"] == [
        "numbers/+81312345698.flow: unknown flow 'no-such-flow'; add the flow first"
    ]

    # Another process: `tsunagu config apply` against the same database sends the support
    # line to the after-hours flow; the running server picks it up from the store.
    numbers = [
        {"number": "0312345678", "flow": "demo-after-hours"},
        {"number": "0312345600", "flow": "demo-after-hours", "name": "After-hours demo"},
        {"number": "0312345601", "flow": "demo-menu", "name": "Menu demo"},
        {"number": "+81312345699", "flow": "demo-after-hours", "name": "added live"},
    ]
    change = tmp_path / "numbers.yaml"
    change.write_text(yaml.safe_dump({"numbers": numbers}))
    mark = server.log_mark()
    command = [sys.executable, "-m", "tsunagu", "config", "apply", str(change)]
    applied = subprocess.run(
        [*command, "--data-dir", str(server.data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert applied.returncode == 0, applied.stderr
    assert '    $.flow: "demo-support" -> "demo-after-hours"' in applied.stdout.splitlines()
    reloaded(server, mark, entity["revision"] + 1)
    caller_phone.call_and_wait(f"sip:0312345678@127.0.0.1:{server.sip_port}")
    caller_phone.wait_event("CALL_CLOSED", timeout=30)
    records = wait_records(server, 2)
    assert {r.interaction.dialled: r.interaction.disposition for r in records} == {
        "0312345699": "after_hours",
        "0312345678": "after_hours",
    }
    assert server.pid == pid


VIP_FLOW = {
    "name": "vip",
    "version": 1,
    "start": "to_vip",
    "blocks": {
        "to_vip": {"type": "TransferToQueue", "queue": "vip", "on_failure": "bye"},
        "bye": {"type": "Disconnect"},
    },
}


def test_a_new_agent_queue_flow_and_number_work_live(
    tsunagu_factory: Callable[..., TsunaguServer], caller_phone: BaresipUA, login: Login
) -> None:
    """An agent added through the API can register at once (the digest authenticator
    reads the current center), a new queue reaches the ACD, and a caller to a new number
    is answered by the new agent."""
    server = tsunagu_factory(config=demo_center(ring_timeout_s=4))
    mark = server.log_mark()
    server.api("/api/v1/config/agents/1004", "PUT", {"name": "Doi", "sip_password": "demo-1004"})
    server.api("/api/v1/config/queues/vip", "PUT", {"agents": ["1004"], "ring_timeout_s": 10})
    server.api("/api/v1/config/flows/vip", "PUT", VIP_FLOW)
    last = server.api("/api/v1/config/numbers/+81312345611", "PUT", {"flow": "vip"})
    reloaded(server, mark, last["revision"])
    shown = server.api("/api/v1/config/agents/1004")
    assert shown["document"]["sip_password"] == "<redacted>"

    agent = login(server, "1004")
    caller_phone.call_and_wait(f"sip:0312345611@127.0.0.1:{server.sip_port}")
    agent.wait_event("CALL_ESTABLISHED", timeout=30)
    caller_phone.hangup()
    (record,) = wait_records(server, 1)
    assert record.interaction.queue == "vip"
    assert record.interaction.agents_answered == ("1004",)


def test_restart_with_a_different_yaml_keeps_the_store_and_warns(
    tsunagu_factory: Callable[..., TsunaguServer], caller_phone: BaresipUA
) -> None:
    server = tsunagu_factory(config=demo_center(ring_timeout_s=4))
    seeded = [
        line
        for line in server.logs()
        if line.get("msg") == "configuration store seeded from the YAML"
    ]
    assert seeded and seeded[0]["entities"] == 13
    # The YAML loses the after-hours number: the store, already seeded, still has it.
    server.overrides["numbers"] = [
        n for n in server.overrides["numbers"] if n["number"] != "0312345600"
    ]
    server.restart()
    warning = server.wait_log(
        lambda line: "source of truth" in str(line.get("msg")), timeout=10, what="store wins"
    )
    assert warning["level"] == "warning"
    assert "tsunagu config apply FILE" in warning["msg"]
    assert warning["differs"] == "numbers/+81312345600"
    assert not any("seeded" in str(line.get("msg")) for line in server.logs())

    caller_phone.call_and_wait(f"sip:0312345600@127.0.0.1:{server.sip_port}")
    caller_phone.wait_event("CALL_CLOSED", timeout=30)
    (record,) = wait_records(server, 1)
    assert record.interaction.disposition == "after_hours"


def _flow(name: str, blocks: dict[str, Any], start: str) -> dict[str, Any]:
    return {"name": name, "version": 1, "start": start, "blocks": blocks}


def test_a_call_in_a_flow_keeps_the_flows_it_started_with(
    tsunagu_factory: Callable[..., TsunaguServer], caller_phone: BaresipUA
) -> None:
    """The caller is in ``outer``'s long prompt when ``inner`` (where ``outer`` sends them
    next) is changed: this call still runs the old ``inner``; the next call the new."""
    server = tsunagu_factory(config=demo_center(ring_timeout_s=4))
    long_text = (
        "Please hold while we look at your call. This announcement is long on purpose, so "
        "that the configuration can change while it plays. Thank you for waiting."
    )
    # The two versions end the call with different dispositions.
    inner_blocks = {"bye": {"type": "Disconnect", "reason": "after_hours"}}
    server.api("/api/v1/config/flows/inner", "PUT", _flow("inner", inner_blocks, "bye"))
    outer_blocks = {
        "hello": {"type": "PlayPrompt", "text": long_text, "language": "en", "next": "go"},
        "go": {"type": "TransferToFlow", "flow": "inner"},
    }
    server.api("/api/v1/config/flows/outer", "PUT", _flow("outer", outer_blocks, "hello"))
    mark = server.log_mark()
    added = server.api("/api/v1/config/numbers/+81312345622", "PUT", {"flow": "outer"})
    reloaded(server, mark, added["revision"])

    caller_phone.call_and_wait(f"sip:0312345622@127.0.0.1:{server.sip_port}")
    mark = server.log_mark()
    new_blocks = {"bye": {"type": "Disconnect"}}
    changed = server.api("/api/v1/config/flows/inner", "PUT", _flow("inner", new_blocks, "bye"))
    swapped = reloaded(server, mark, changed["revision"])
    caller_phone.wait_event("CALL_CLOSED", timeout=40)
    (first,) = wait_records(server, 1)
    assert first.interaction.disposition == "after_hours"  # the old inner
    # ... though the new one was in use before this call reached it:
    swapped_at = datetime.fromisoformat(swapped["ts"].replace("Z", "+00:00"))
    assert first.interaction.ended_at is not None
    assert swapped_at < first.interaction.ended_at - timedelta(seconds=1)

    caller_phone.call_and_wait(f"sip:0312345622@127.0.0.1:{server.sip_port}")
    caller_phone.wait_event("CALL_CLOSED", timeout=40)
    records = wait_records(server, 2)
    assert sorted(str(r.interaction.disposition) for r in records) == ["after_hours", "completed"]
