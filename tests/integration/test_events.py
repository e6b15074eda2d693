"""Events end to end with real phones (issue #5 item 7): a carrier call (baresip) to the
demo DID reaches a baresip agent; a real HTTP receiver configured as a webhook gets a
correctly signed screen-pop ``call.offered`` naming the agent, the caller, the customer and
the interaction, then ``call.answered`` and ``call.ended``; WebSocket clients (the
``websockets`` library) see the same call — everything as admin, only their own as an
agent. A receiver that fails gets retries, then a dead letter, listed and redelivered
through the API once it is fixed."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.integration import test_calls
from tests.integration.peers.baresip import BaresipUA
from tests.integration.peers.event_stream import EventStream
from tests.integration.peers.http_receiver import Received, WebhookReceiver
from tests.integration.peers.tsunagu import TEST_API_KEY, TsunaguServer
from tests.integration.test_calls import Login, demo_center, wait_records

# The call tests' phone fixtures, shared.
login = test_calls.login
caller_phone = test_calls.caller_phone

SECRET = "whsec-integration-0123456789"
CALLER = "0901234567"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as running:
        yield running


def stream_url(server: TsunaguServer, query: str = "") -> str:
    return f"ws://127.0.0.1:{server.http_port}/api/v1/events{query}"


def verified(request: Received, secret: str = SECRET) -> dict[str, Any]:
    """The body, once its signature is checked the way docs/API.md tells receivers to."""
    fields = dict(p.split("=", 1) for p in request.headers["x-tsunagu-signature"].split(","))
    signed = fields["t"].encode() + b"." + request.body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(fields["v1"], expected), "bad signature"
    assert abs(time.time() - int(fields["t"])) < 300, "stale timestamp"
    body = json.loads(request.body)
    assert request.headers["x-tsunagu-event"] == body["type"]
    assert isinstance(body, dict)
    return body


def of_type(name: str) -> Callable[[Received], bool]:
    return lambda r: r.headers.get("x-tsunagu-event") == name


def agent_key(server: TsunaguServer, user: str, agent_id: str) -> str:
    """An agent-role API key, made through the API like an operator would."""
    server.api(f"/api/v1/config/users/{user}", "PUT", {"role": "agent", "agent": agent_id})
    created = server.api(f"/api/v1/users/{user}/keys", "POST", {"label": "events test"})
    token = created["token"]
    assert isinstance(token, str)
    return token


def test_screen_pop_webhook_and_streams_by_role(
    tsunagu_factory: Callable[..., TsunaguServer],
    login: Login,
    caller_phone: BaresipUA,
    receiver: WebhookReceiver,
) -> None:
    config = demo_center(strategy="preferred_agent", rep_timeout_s=10, ring_timeout_s=4)
    config["customers"] = [{"number": CALLER, "agent": "1001", "name": "Tanaka Taro"}]
    config["events"] = {
        "webhooks": [
            {
                "name": "crm",
                "url": receiver.url,
                "secret": SECRET,
                "events": ["call.offered", "call.answered", "call.ended"],
            }
        ]
    }
    server = tsunagu_factory(config=config)
    token = agent_key(server, "aoki", "1001")
    with (
        EventStream(stream_url(server), header_token=TEST_API_KEY) as admin,
        EventStream(stream_url(server), message_token=token) as agent,
    ):
        admin.wait_for(lambda f: f["type"] == "hello")
        (hello,) = agent.wait_for(lambda f: f["type"] == "hello")
        assert hello["role"] == "agent" and hello["agent"] == "1001"
        phones = {a: login(server, a) for a in ("1001", "1002")}
        caller_phone.call_and_wait(f"sip:0312345678@127.0.0.1:{server.sip_port}")
        phones["1001"].wait_event("CALL_ESTABLISHED", timeout=30)
        time.sleep(1)
        caller_phone.hangup()
        (record,) = wait_records(server, 1)
        iid = record.interaction.id
        admin.wait_for(lambda f: f["type"] == "call.ended")
        agent.wait_for(lambda f: f["type"] == "call.ended")

        # The webhook: a signed screen-pop naming agent, caller, customer and interaction.
        (offer_request,) = receiver.wait_for(of_type("call.offered"))
        offer = verified(offer_request)
        assert offer["data"]["interaction_id"] == iid
        assert offer["data"]["agent_id"] == "1001"
        assert offer["data"]["caller"] == CALLER
        assert offer["data"]["dialled"] == "0312345678"
        assert offer["data"]["queue"] == "support"
        assert offer["data"]["customer"] == {
            "number": "+81901234567",
            "name": "Tanaka Taro",
            "rep": "1001",
        }
        assert offer["data"]["attributes"]["caller"] == CALLER
        (answered,) = [verified(r) for r in receiver.wait_for(of_type("call.answered"))]
        (ended,) = [verified(r) for r in receiver.wait_for(of_type("call.ended"))]
        assert answered["data"]["agent_id"] == "1001" and answered["data"]["interaction_id"] == iid
        assert ended["data"]["disposition"] == "answered" and ended["data"]["agents"] == ["1001"]
        assert offer["seq"] < answered["seq"] < ended["seq"]
        ids = {r.headers["x-tsunagu-delivery"] for r in receiver.received()}
        assert len(ids) == 3  # one delivery per event

        # The admin's stream: the whole call, and both agents' states.
        call_types = [f["type"] for f in admin.events(iid)]
        assert call_types == ["call.started", "call.offered", "call.answered", "call.ended"]
        assert admin.events(iid)[1] == offer  # the same event, the same shape
        states = {f["data"]["agent_id"] for f in admin.events() if f["type"] == "agent.state"}
        assert states == {"1001", "1002"}

        # The agent's stream: their own screen-pop and states, nothing about 1002.
        mine = agent.events()
        assert [f["type"] for f in agent.events(iid)] == [
            "call.offered",
            "call.answered",
            "call.ended",
        ]
        assert all(
            f["type"] in ("call.offered", "call.answered", "call.ended", "agent.state")
            for f in mine
        )
        agent_states = [f for f in mine if f["type"] == "agent.state"]
        assert agent_states and {f["data"]["agent_id"] for f in agent_states} == {"1001"}
        assert [f["data"]["new"] for f in agent_states][:3] == ["available", "reserved", "on_call"]


def test_a_key_in_the_query_string_is_refused(
    tsunagu_factory: Callable[..., TsunaguServer],
) -> None:
    server = tsunagu_factory(config=demo_center())
    with EventStream(stream_url(server, f"?token={TEST_API_KEY}")) as refused:
        code, reason = refused.wait_closed()
    assert code == 1008 and reason is not None and "credentials in the URL" in reason
    (error,) = refused.received()
    assert error["type"] == "error" and error["error_id"] == "auth.token_in_query"
    assert not [line for line in server.logs() if TEST_API_KEY in json.dumps(line)]


def test_failing_receiver_dead_letter_then_redelivery(
    tsunagu_factory: Callable[..., TsunaguServer],
    caller_phone: BaresipUA,
    receiver: WebhookReceiver,
) -> None:
    receiver.status = 500
    config = demo_center()
    config["events"] = {
        "webhooks": [
            {
                "name": "flaky",
                "url": receiver.url,
                "secret": SECRET,
                "events": ["call.ended"],
                "max_attempts": 3,
                "backoff_base_s": 0.2,
                "backoff_max_s": 0.5,
            }
        ]
    }
    server = tsunagu_factory(config=config)
    caller_phone.call_and_wait(f"sip:0312345600@127.0.0.1:{server.sip_port}")  # after hours
    caller_phone.wait_event("CALL_CLOSED", timeout=30)
    (record,) = wait_records(server, 1)

    attempts = receiver.wait_for(count=3)
    assert all(a.status == 500 for a in attempts)
    delivery = attempts[0].headers["x-tsunagu-delivery"]
    assert {a.headers["x-tsunagu-delivery"] for a in attempts} == {delivery}
    deadline = time.monotonic() + 10
    while (status := server.api("/api/v1/webhooks"))[0]["dead_letters"] != 1:
        assert time.monotonic() < deadline, status
        time.sleep(0.1)
    (hook,) = status
    assert hook["name"] == "flaky" and hook["dead"] == 1 and hook["failed_attempts"] == 3
    assert SECRET not in json.dumps(status)
    page = server.api("/api/v1/webhooks/dead-letters?pending=true")
    (letter,) = page["items"]
    assert letter["id"] == delivery and letter["attempts"] == 3
    assert letter["payload"]["data"]["interaction_id"] == record.interaction.id
    assert letter["last_error"] == "HTTP 500 (gave up: max attempts)"
    assert len(receiver.received()) == 3  # given up: no more attempts

    receiver.status = 200
    redelivered = server.api(f"/api/v1/webhooks/dead-letters/{delivery}/redeliver", "POST")
    assert redelivered["redelivered_at"] is not None
    (good,) = receiver.wait_for(lambda r: r.status == 200)
    assert good.headers["x-tsunagu-delivery"] == delivery
    assert verified(good) == letter["payload"]
    with pytest.raises(urllib.error.HTTPError) as again:
        server.api(f"/api/v1/webhooks/dead-letters/{delivery}/redeliver", "POST")
    with again.value:
        assert again.value.code == 409
        assert json.load(again.value)["error_id"] == "webhook.already_redelivered"
    # Audited on the call's own timeline.
    detail = server.api(f"/api/v1/interactions/{record.interaction.id}")
    audits = [e for e in detail["events"] if e["type"] == "audit"]
    assert any(e["data"]["action"] == "webhook.redeliver" for e in audits)
    assert not [line for line in server.logs() if SECRET in json.dumps(line)]
