"""Calls end to end with real phones: a carrier call to each demo number, internal calls,
queue behaviour — checked by what the phones hear (frequency, speech energy) and by the
one interaction record each conversation leaves (issue 4's proof, and part of issue 5's)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import time
import urllib.error
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml

from tests.integration.peers import free_port
from tests.integration.peers.audio import (
    dominant_frequency,
    read_mono,
    read_wav,
    speech_energy_windows,
)
from tests.integration.peers.baresip import BaresipAccount, BaresipUA
from tests.integration.peers.tsunagu import TsunaguServer
from tsunagu.store import InteractionFilter, open_store
from tsunagu.store.interactions import InteractionRecord

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def demo_center(**queue_overrides: Any) -> dict[str, Any]:
    """The demo's contact-center sections, with flow paths made absolute."""
    demo = yaml.safe_load((EXAMPLES / "demo.yaml").read_text())
    config = {key: demo[key] for key in ("teams", "agents", "trunks", "numbers", "queues")}
    config["flows"] = [{"file": str(EXAMPLES / f["file"])} for f in demo["flows"]]
    for queue in config["queues"]:
        queue.update(queue_overrides)
    return config


@pytest.fixture
def demo_server(tsunagu_factory: Callable[..., TsunaguServer]) -> TsunaguServer:
    return tsunagu_factory(config=demo_center(ring_timeout_s=4))


def records(server: TsunaguServer) -> list[InteractionRecord]:
    async def fetch() -> list[InteractionRecord]:
        store = await open_store(
            f"sqlite+aiosqlite:///{server.data_dir}/tsunagu.sqlite3", migrate_schema=False
        )
        try:
            page = await store.history.search(InteractionFilter(), limit=50)
            found = [await store.history.get(i.id) for i in page.items]
            return [r for r in found if r is not None]
        finally:
            await store.close()

    # A private loop in a thread: asyncio.run here would unset pytest-asyncio's loop.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, fetch()).result()


def wait_records(
    server: TsunaguServer,
    count: int,
    timeout: float = 15.0,
) -> list[InteractionRecord]:
    deadline = time.monotonic() + timeout
    while True:
        found = [r for r in records(server) if r.interaction.status != "active"]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.3)


def is_available(agent_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda line: (
        line.get("msg") == "agent state"
        and line.get("agent") == agent_id
        and line.get("to") == "available"
    )


Login = Callable[..., BaresipUA]


@pytest.fixture
def login(baresip_factory: Callable[..., BaresipUA], agent_tone: Path) -> Login:
    """``login(server, agent_id, answermode="auto")``: an agent's phone (1000 Hz tone),
    registered, with the agent available in the ACD."""

    def make(
        server: TsunaguServer, agent_id: str, answermode: Literal["auto", "manual"] = "auto"
    ) -> BaresipUA:
        account = BaresipAccount(
            agent_id, f"demo-{agent_id}", server.registrar, answermode=answermode
        )
        # Keep peer names short: baresip's sndfile cuts dump paths near 128 characters
        # (the ".wav" goes first), and the tests' temporary directories are deep.
        ua = baresip_factory(account, agent_tone, name=f"agent-{agent_id}")
        ua.register_and_wait()
        server.wait_log(is_available(agent_id))
        return ua

    return make


@pytest.fixture
def agent_phone(demo_server: TsunaguServer, login: Login) -> Callable[..., BaresipUA]:
    """``agent_phone(agent_id, answermode="auto")`` on the demo server."""

    def make(agent_id: str, answermode: Literal["auto", "manual"] = "auto") -> BaresipUA:
        return login(demo_server, agent_id, answermode)

    return make


@pytest.fixture
def caller_phone(baresip_factory: Callable[..., BaresipUA], caller_tone: Path) -> BaresipUA:
    """A carrier-side phone: no registration, calls straight from 127.0.0.1 (the trunk)."""
    return baresip_factory(BaresipAccount("0901234567"), caller_tone, name="carrier")


def tone_at_end(path: Path, seconds: float = 2.0) -> float:
    rate, samples = read_mono(path)
    return dominant_frequency(samples[-int(seconds * rate) :], rate)


def test_carrier_call_reaches_agent_with_two_way_audio_and_one_record(
    demo_server: TsunaguServer, agent_phone: Callable[..., BaresipUA], caller_phone: BaresipUA
) -> None:
    agent = agent_phone("1001")
    caller_phone.call_and_wait(f"sip:0312345678@127.0.0.1:{demo_server.sip_port}")
    agent.wait_event("CALL_ESTABLISHED", timeout=30)
    time.sleep(3)
    caller_phone.hangup()
    agent.wait_event("CALL_CLOSED", timeout=10)
    (record,) = wait_records(demo_server, 1)

    # The caller heard the TTS greeting first, then the agent's 1000 Hz tone.
    (heard,) = caller_phone.heard()
    rate, samples = read_mono(heard)
    assert speech_energy_windows(samples[: 4 * rate], rate), "no greeting heard"
    assert abs(tone_at_end(heard) - 1000) < 15
    (agent_heard,) = agent.heard()
    assert abs(tone_at_end(agent_heard) - 440) < 15

    # One conversation, one record: caller and agent legs, answered, recorded in stereo.
    interaction = record.interaction
    assert interaction.disposition == "answered" and interaction.queue == "support"
    assert interaction.dialled == "0312345678"
    assert sorted(leg.role for leg in record.legs) == ["agent", "caller"]
    assert len({leg.call_id for leg in record.legs}) == 2
    assert interaction.agents_answered == ("1001",)
    (recording,) = [r for r in interaction.recordings if r["kind"] == "call"]
    rate, channels = read_wav(recording["path"])
    assert channels.shape[0] == 2
    assert abs(dominant_frequency(channels[0], rate) - 440) < 15  # caller on the left
    assert abs(dominant_frequency(channels[1], rate) - 1000) < 15  # agent on the right
    types = [e.type for e in record.events]
    assert "queue.entered" in types and "bridged" in types

    # The same conversation through the REST API: one interaction with both legs.
    page = demo_server.api("/api/v1/interactions?dialled=0312345678")
    (item,) = page["items"]
    detail = demo_server.api(f"/api/v1/interactions/{item['id']}")
    assert sorted(leg["role"] for leg in detail["legs"]) == ["agent", "caller"]
    agents = {a["id"]: a["state"] for a in demo_server.api("/api/v1/agents")}
    assert agents["1001"] in ("available", "wrap_up")


def test_after_hours_number_announces_and_hangs_up(
    demo_server: TsunaguServer, caller_phone: BaresipUA
) -> None:
    caller_phone.call_and_wait(f"sip:0312345600@127.0.0.1:{demo_server.sip_port}")
    # baresip reports a BYE from the far end as "Connection reset by peer".
    closed = caller_phone.wait_event("CALL_CLOSED", timeout=30)
    assert "reset by peer" in closed.param
    (heard,) = caller_phone.heard()
    rate, samples = read_mono(heard)
    assert speech_energy_windows(samples, rate), "no announcement heard"
    (record,) = wait_records(demo_server, 1)
    assert record.interaction.disposition == "after_hours"
    steps = [e.type for e in record.events]
    assert "flow.FlowStarted" in steps


def test_menu_digit_routes_to_the_chosen_queue(
    demo_server: TsunaguServer, agent_phone: Callable[..., BaresipUA], caller_phone: BaresipUA
) -> None:
    sales = agent_phone("1003")  # in both queues; 2 = sales
    caller_phone.call_and_wait(f"sip:0312345601@127.0.0.1:{demo_server.sip_port}")
    time.sleep(1.0)
    caller_phone.send_dtmf("2")
    sales.wait_event("CALL_ESTABLISHED", timeout=30)
    time.sleep(1)
    caller_phone.hangup()
    (record,) = wait_records(demo_server, 1)
    assert record.interaction.queue == "sales"
    assert record.interaction.disposition == "answered"


def test_internal_call_between_extensions(
    demo_server: TsunaguServer, agent_phone: Callable[..., BaresipUA]
) -> None:
    callee = agent_phone("1002")
    caller = agent_phone("1001", answermode="manual")
    caller.call_and_wait(f"sip:1002@127.0.0.1:{demo_server.sip_port}", timeout=20)
    callee.wait_event("CALL_ESTABLISHED", timeout=10)
    time.sleep(2.5)
    caller.hangup()
    callee.wait_event("CALL_CLOSED", timeout=10)
    assert abs(tone_at_end(caller.heard()[-1]) - 1000) < 15
    (record,) = wait_records(demo_server, 1)
    assert record.interaction.direction == "internal"
    assert record.interaction.disposition == "answered"


def test_ring_no_answer_offers_the_next_agent(
    demo_server: TsunaguServer, agent_phone: Callable[..., BaresipUA], caller_phone: BaresipUA
) -> None:
    sleepy = agent_phone("1001", answermode="manual")  # longest idle: offered first
    awake = agent_phone("1002")
    caller_phone.call_and_wait(f"sip:0312345678@127.0.0.1:{demo_server.sip_port}")
    sleepy.wait_event("CALL_INCOMING", timeout=20)
    sleepy.wait_event("CALL_CLOSED", timeout=15)  # cancelled after the 4 s ring timeout
    awake.wait_event("CALL_ESTABLISHED", timeout=20)
    caller_phone.hangup()
    (record,) = wait_records(demo_server, 1)
    assert "1001" in record.interaction.agents_offered
    assert record.interaction.agents_answered == ("1002",)
    demo_server.wait_log(
        lambda line: (
            line.get("msg") == "agent state"
            and line.get("agent") == "1001"
            and line.get("to") == "away"
        )
    )


def test_caller_hanging_up_in_queue_is_abandoned(
    demo_server: TsunaguServer, agent_phone: Callable[..., BaresipUA], caller_phone: BaresipUA
) -> None:
    ringing = agent_phone("1001", answermode="manual")
    caller_phone.call_and_wait(f"sip:0312345678@127.0.0.1:{demo_server.sip_port}")
    ringing.wait_event("CALL_INCOMING", timeout=20)
    time.sleep(1)
    caller_phone.hangup()
    ringing.wait_event("CALL_CLOSED", timeout=10)  # its ringing was cancelled
    (record,) = wait_records(demo_server, 1)
    assert record.interaction.disposition in ("abandoned", "short_abandoned")


def _invite(port: int, number: str, source_port: int) -> bytes:
    sdp = (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        "m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    return (
        f"INVITE sip:{number}@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{source_port};rport;branch=z9hG4bK{number}{source_port}\r\n"
        f"From: <sip:0901234567@127.0.0.1>;tag=x\r\nTo: <sip:{number}@127.0.0.1>\r\n"
        f"Call-ID: raw-{number}-{source_port}\r\nCSeq: 1 INVITE\r\n"
        f"Contact: <sip:0901234567@127.0.0.1:{source_port}>\r\nMax-Forwards: 70\r\n"
        f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}"
    ).encode()


def _final_status(sock: socket.socket) -> int:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        data = sock.recv(65535)
        status = int(data.split(b" ", 2)[1])
        if status >= 200:
            return status
    raise AssertionError("no final response")


def test_unknown_number_404_and_untrusted_source_challenged(demo_server: TsunaguServer) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        port = sock.getsockname()[1]
        sock.sendto(
            _invite(demo_server.sip_port, "0399999999", port), ("127.0.0.1", demo_server.sip_port)
        )
        assert _final_status(sock) == 404
    # 127.0.0.2 is not the demo carrier: a call from there must authenticate (no toll fraud).
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.2", 0))
        sock.settimeout(5)
        port = sock.getsockname()[1]
        sock.sendto(
            _invite(demo_server.sip_port, "0312345678", port), ("127.0.0.1", demo_server.sip_port)
        )
        assert _final_status(sock) == 401


def test_kill9_mid_call_leaves_an_interrupted_record(
    demo_server: TsunaguServer, agent_phone: Callable[..., BaresipUA], caller_phone: BaresipUA
) -> None:
    agent = agent_phone("1001")
    caller_phone.call_and_wait(f"sip:0312345678@127.0.0.1:{demo_server.sip_port}")
    agent.wait_event("CALL_ESTABLISHED", timeout=30)
    demo_server.wait_log(lambda line: line.get("msg") == "call bridged")
    time.sleep(1.5)  # let the record catch up with the bridge
    demo_server.kill9()
    demo_server.start()
    (record,) = wait_records(demo_server, 1)
    interaction = record.interaction
    assert interaction.status == "interrupted" and interaction.disposition == "interrupted"
    assert interaction.queue == "support" and interaction.agents_answered == ("1001",)
    assert sorted(leg.role for leg in record.legs) == ["agent", "caller"]
    assert all(leg.ended_at is not None for leg in record.legs)
    assert record.events[-1].type == "interrupted"
    # The recording written up to the crash still plays: caller left, agent right.
    (recording,) = [r for r in interaction.recordings if r["kind"] == "call"]
    rate, channels = read_wav(recording["path"])
    assert channels.shape[1] > rate // 2
    assert abs(dominant_frequency(channels[0], rate) - 440) < 15


def test_customer_reaches_their_own_rep_first(
    tsunagu_factory: Callable[..., TsunaguServer],
    caller_phone: BaresipUA,
    login: Login,
) -> None:
    """REQUIREMENTS §3: the caller's assigned rep (1002) rings first, though 1001 has been
    idle longer."""
    config = demo_center(strategy="preferred_agent", rep_timeout_s=10)
    config["customers"] = [{"number": "0901234567", "agent": "1002"}]
    server = tsunagu_factory(config=config)
    phones = {agent_id: login(server, agent_id) for agent_id in ("1001", "1002")}
    caller_phone.call_and_wait(f"sip:0312345678@127.0.0.1:{server.sip_port}")
    phones["1002"].wait_event("CALL_ESTABLISHED", timeout=30)
    caller_phone.hangup()
    (record,) = wait_records(server, 1)
    assert record.interaction.agents_answered == ("1002",)
    assert "1001" not in record.interaction.agents_offered
    entered = next(e for e in record.events if e.type == "queue.entered")
    assert entered.data["preferred_agent"] == "1002"


def test_maximum_call_duration_ends_both_sides(
    tsunagu_factory: Callable[..., TsunaguServer],
    caller_phone: BaresipUA,
    login: Login,
) -> None:
    config = demo_center()
    config["calls"] = {"max_duration_s": 3}
    server = tsunagu_factory(config=config)
    agent = login(server, "1001", "auto")
    caller_phone.call_and_wait(f"sip:0312345678@127.0.0.1:{server.sip_port}")
    agent.wait_event("CALL_ESTABLISHED", timeout=30)
    caller_phone.wait_event("CALL_CLOSED", timeout=15)
    agent.wait_event("CALL_CLOSED", timeout=15)
    (record,) = wait_records(server, 1)
    assert any(e.type == "hangup" and e.data.get("by") == "max_duration" for e in record.events)


def test_overflow_group_joins_in_a_surge_and_leaves_after(
    tsunagu_factory: Callable[..., TsunaguServer],
    baresip_factory: Callable[..., BaresipUA],
    caller_tone: Path,
    login: Login,
) -> None:
    """REQUIREMENTS §5 item 13: with the queue's own agent busy and a caller waiting, the
    pre-approved helpers (1002) join; once the surge is over they are released."""
    config = demo_center()
    support = next(q for q in config["queues"] if q["id"] == "support")
    support.update(
        agents=["1001"],
        overflow_check_s=1,
        overflow=[
            {"id": "helpers", "agents": ["1002"], "waiting_at_least": 1, "min_active_s": 1},
        ],
    )
    server = tsunagu_factory(config=config)
    agents = {agent_id: login(server, agent_id) for agent_id in ("1001", "1002")}
    first = baresip_factory(BaresipAccount("0901110001"), caller_tone, name="caller-1")
    second = baresip_factory(BaresipAccount("0901110002"), caller_tone, name="caller-2")
    first.call_and_wait(f"sip:0312345678@127.0.0.1:{server.sip_port}")
    agents["1001"].wait_event("CALL_ESTABLISHED", timeout=30)
    second.call_and_wait(f"sip:0312345678@127.0.0.1:{server.sip_port}")
    joined = server.wait_log(lambda line: line.get("msg") == "overflow group activated", timeout=30)
    assert joined["group"] == "helpers" and joined["queue"] == "support"
    agents["1002"].wait_event("CALL_ESTABLISHED", timeout=30)
    first.hangup()
    second.hangup()
    left = server.wait_log(lambda line: line.get("msg") == "overflow group released", timeout=30)
    assert left["group"] == "helpers"
    answered = {
        r.interaction.caller: r.interaction.agents_answered for r in wait_records(server, 2)
    }
    assert answered == {"0901110001": ("1001",), "0901110002": ("1002",)}
    # A supervisor can also release and bring in the group by hand through the API (audited).
    server.api("/api/v1/queues/support/overflow/helpers", "PUT", {"active": False})
    server.api("/api/v1/queues/support/overflow/helpers", "PUT", {"active": True})
    manual = server.wait_log(
        lambda line: line.get("msg") == "overflow group activated" and line.get("manual") is True
    )
    assert manual["group"] == "helpers"
    with pytest.raises(urllib.error.HTTPError) as refused:
        server.api("/api/v1/queues/support/overflow/nobody", "PUT", {"active": True})
    assert refused.value.code == 404
    refused.value.close()  # an HTTPError holds the response's socket


def test_waiting_caller_hears_position_announcements(
    tsunagu_factory: Callable[..., TsunaguServer],
    caller_phone: BaresipUA,
    login: Login,
) -> None:
    server = tsunagu_factory(
        config=demo_center(ring_timeout_s=30, announce_every_s=2, announce_language="en")
    )
    agent = login(server, "1001", "manual")
    caller_phone.call_and_wait(f"sip:0312345678@127.0.0.1:{server.sip_port}")
    agent.wait_event("CALL_INCOMING", timeout=20)  # rings, nobody answers: the caller waits
    time.sleep(7)
    caller_phone.hangup()
    (record,) = wait_records(server, 1)
    announced = [e for e in record.events if e.type == "queue.announced"]
    assert announced and announced[0].data["text"].startswith("You are caller number 1.")
    # The announcement was speech, not the chime of the music on hold.
    (heard,) = caller_phone.heard()
    rate, samples = read_mono(heard)
    assert speech_energy_windows(samples[int(len(samples) * 0.4) :], rate)


def test_queued_callback_dials_the_agent_then_the_customer(
    tsunagu_factory: Callable[..., TsunaguServer],
    baresip_factory: Callable[..., BaresipUA],
    caller_tone: Path,
    login: Login,
) -> None:
    """Press 1 to keep your place: the caller hangs up; when an agent is free the agent is
    dialled first and then the customer, through the carrier trunk (REQUIREMENTS §5)."""
    customer_port = free_port(with_next=True)  # baresip binds TLS on the next port
    config = demo_center(
        ring_timeout_s=3, announce_every_s=2, announce_language="en", offer_callback=True
    )
    config["trunks"][0]["port"] = customer_port  # the carrier delivers our callback here
    server = tsunagu_factory(config=config)
    busy = login(server, "1001", "manual")
    customer = baresip_factory(
        BaresipAccount("0901234567", answermode="auto"),
        caller_tone,
        name="customer",
        sip_port=customer_port,
    )
    customer.call_and_wait(f"sip:0312345678@127.0.0.1:{server.sip_port}")
    busy.wait_event("CALL_INCOMING", timeout=20)
    server.wait_log(lambda line: line.get("msg") == "agent state" and line.get("to") == "away")
    time.sleep(2.5)  # the next announcement offers the callback
    customer.send_dtmf("1")
    customer.wait_event("CALL_CLOSED", timeout=20)  # we said goodbye and hung up
    # Another agent logs in (1001 is never offered a call it let ring out): the callback is
    # dialled to them first, then to the customer.
    agent = login(server, "1002")  # available at once: the callback is offered to them
    agent.wait_event("CALL_ESTABLISHED", timeout=30)
    customer.wait_event("CALL_ESTABLISHED", timeout=30)
    time.sleep(2)
    customer.hangup()
    (record,) = wait_records(server, 1, timeout=30)
    assert record.interaction.disposition == "callback"
    types = [e.type for e in record.events]
    assert "queue.callback_requested" in types and "callback.dialled" in types
    assert record.interaction.agents_answered == ("1002",)
    assert abs(tone_at_end(customer.heard()[-1]) - 1000) < 15


@pytest.mark.parametrize("strategy", ["round_robin", "longest_idle"])
def test_calls_are_spread_over_three_agents(
    strategy: str,
    tsunagu_factory: Callable[..., TsunaguServer],
    caller_phone: BaresipUA,
    login: Login,
) -> None:
    server = tsunagu_factory(config=demo_center(strategy=strategy))
    for agent_id in ("1001", "1002", "1003"):
        login(server, agent_id)
    for _ in range(3):
        mark, log_mark = caller_phone.mark(), server.log_mark()
        caller_phone.call_and_wait(f"sip:0312345678@127.0.0.1:{server.sip_port}")
        server.wait_log(lambda line: line.get("msg") == "call bridged", since=log_mark)
        time.sleep(1)
        caller_phone.hangup()
        caller_phone.wait_event("CALL_CLOSED", timeout=10, since=mark)
    answered = sorted(a for r in wait_records(server, 3) for a in r.interaction.agents_answered)
    assert answered == ["1001", "1002", "1003"]  # each agent took exactly one call


def test_ring_all_rings_everyone_and_the_first_answer_wins(
    tsunagu_factory: Callable[..., TsunaguServer],
    caller_phone: BaresipUA,
    login: Login,
) -> None:
    server = tsunagu_factory(config=demo_center(strategy="ring_all", ring_timeout_s=20))
    phones = {
        "1001": login(server, "1001", "manual"),
        "1002": login(server, "1002", "manual"),
        "1003": login(server, "1003"),
    }
    caller_phone.call_and_wait(f"sip:0312345678@127.0.0.1:{server.sip_port}")
    phones["1003"].wait_event("CALL_ESTABLISHED", timeout=30)
    for loser in ("1001", "1002"):
        phones[loser].wait_event("CALL_INCOMING", timeout=5)  # they rang too...
        phones[loser].wait_event("CALL_CLOSED", timeout=10)  # ...and stopped when 1003 won
    caller_phone.hangup()
    (record,) = wait_records(server, 1)
    assert record.interaction.agents_answered == ("1003",)
    assert set(record.interaction.agents_offered) == {"1001", "1002", "1003"}


def test_agent_state_through_the_api_controls_who_is_offered(
    demo_server: TsunaguServer, agent_phone: Callable[..., BaresipUA], caller_phone: BaresipUA
) -> None:
    first = agent_phone("1001")  # longest idle: would be offered first...
    second = agent_phone("1002")
    demo_server.api("/api/v1/agents/1001/state", "PUT", {"state": "away", "reason": "meeting"})
    states = {a["id"]: (a["state"], a["reason"]) for a in demo_server.api("/api/v1/agents")}
    assert states["1001"] == ("away", "meeting")
    caller_phone.call_and_wait(f"sip:0312345678@127.0.0.1:{demo_server.sip_port}")
    second.wait_event("CALL_ESTABLISHED", timeout=30)  # ...but is away, so 1002 answers
    caller_phone.hangup()
    assert all(e.type != "CALL_INCOMING" for e in first.events())
    demo_server.api("/api/v1/agents/1001/state", "PUT", {"state": "available"})
    after = {a["id"]: a["state"] for a in demo_server.api("/api/v1/agents")}
    assert after["1001"] == "available"


def test_maximum_wait_sends_the_caller_to_the_fallback_flow(
    tsunagu_factory: Callable[..., TsunaguServer],
    caller_phone: BaresipUA,
    login: Login,
) -> None:
    server = tsunagu_factory(
        config=demo_center(max_wait_s=3, ring_timeout_s=30, fallback_flow="demo-after-hours")
    )
    ringing = login(server, "1001", "manual")
    caller_phone.call_and_wait(f"sip:0312345678@127.0.0.1:{server.sip_port}")
    ringing.wait_event("CALL_INCOMING", timeout=20)
    ringing.wait_event("CALL_CLOSED", timeout=15)  # the offer is withdrawn at max wait
    caller_phone.wait_event("CALL_CLOSED", timeout=30)  # the fallback flow said goodbye
    (record,) = wait_records(server, 1)
    types = [e.type for e in record.events]
    assert "queue.max_wait" in types
    assert [s["flow"] for s in record.interaction.flow_path][-1] == "demo-after-hours"


def test_agent_blind_transfers_the_caller_to_another_agent(
    demo_server: TsunaguServer, agent_phone: Callable[..., BaresipUA], caller_phone: BaresipUA
) -> None:
    """REFER from the agent's phone (RFC 3515): the caller ends up with 1002; 1001 is let go;
    one record shows both agents and the transfer, and the recording goes on."""
    first = agent_phone("1001")
    second = agent_phone("1002")
    demo_server.api("/api/v1/agents/1002/state", "PUT", {"state": "away", "reason": "busy"})
    caller_phone.call_and_wait(f"sip:0312345678@127.0.0.1:{demo_server.sip_port}")
    first.wait_event("CALL_ESTABLISHED", timeout=30)
    time.sleep(1)
    first.command("transfer", f"sip:1002@127.0.0.1:{demo_server.sip_port}")
    second.wait_event("CALL_ESTABLISHED", timeout=20)
    first.wait_event("CALL_CLOSED", timeout=20)
    time.sleep(2)
    caller_phone.hangup()
    second.wait_event("CALL_CLOSED", timeout=10)
    (record,) = wait_records(demo_server, 1)
    assert record.interaction.transfers and record.interaction.transfers[0]["to"] == "1002"
    types = [e.type for e in record.events]
    assert "transfer.requested" in types and "transferred" in types
    assert sorted(leg.role for leg in record.legs) == ["agent", "agent", "caller"]
    (recording,) = [r for r in record.interaction.recordings if r["kind"] == "call"]
    rate, channels = read_wav(recording["path"])
    assert channels.shape[1] > 3 * rate  # one file across both agents


def test_blind_transfer_to_an_available_agent_makes_them_busy_and_answered(
    demo_server: TsunaguServer, agent_phone: Callable[..., BaresipUA], caller_phone: BaresipUA
) -> None:
    """The agent a call is blindly transferred to is on_call in the ACD from the first
    ring (never offered a queue call on top), answered in the record, and gets the
    queue's wrap-up at the end, with no presence repair along the way."""
    first = agent_phone("1001")
    caller_phone.call_and_wait(f"sip:0312345678@127.0.0.1:{demo_server.sip_port}")
    first.wait_event("CALL_ESTABLISHED", timeout=30)
    second = agent_phone("1002")  # logs in after the call was given to 1001
    mark = demo_server.log_mark()
    first.command("transfer", f"sip:1002@127.0.0.1:{demo_server.sip_port}")
    second.wait_event("CALL_ESTABLISHED", timeout=20)
    first.wait_event("CALL_CLOSED", timeout=20)
    time.sleep(6)  # past a reconciler pass (every 5 s)
    states = {a["id"]: a["state"] for a in demo_server.api("/api/v1/agents")}
    assert states["1002"] == "on_call"
    (live,) = demo_server.api("/api/v1/calls")
    assert live["agent"] == "1002"
    caller_phone.hangup()
    second.wait_event("CALL_CLOSED", timeout=10)
    demo_server.wait_log(is_available("1002"))
    (record,) = wait_records(demo_server, 1)
    assert record.interaction.agents_answered == ("1001", "1002")
    moves = [
        (line.get("agent"), line.get("to"))
        for line in demo_server.logs()[mark:]
        if line.get("msg") == "agent state"
    ]
    assert ("1002", "on_call") in moves and ("1002", "available") in moves
    assert not [
        line for line in demo_server.logs()[mark:] if line.get("msg") == "presence repaired"
    ]


def test_supervisor_transfers_a_call_through_the_api(
    demo_server: TsunaguServer, agent_phone: Callable[..., BaresipUA], caller_phone: BaresipUA
) -> None:
    first = agent_phone("1001")
    second = agent_phone("1002")
    demo_server.api("/api/v1/agents/1002/state", "PUT", {"state": "away", "reason": "busy"})
    caller_phone.call_and_wait(f"sip:0312345678@127.0.0.1:{demo_server.sip_port}")
    first.wait_event("CALL_ESTABLISHED", timeout=30)
    (live,) = demo_server.api("/api/v1/calls")
    assert live["agent"] == "1001" and live["state"] == "talking"
    demo_server.api(f"/api/v1/calls/{live['interaction_id']}/transfer", "POST", {"target": "1002"})
    second.wait_event("CALL_ESTABLISHED", timeout=20)
    first.wait_event("CALL_CLOSED", timeout=20)
    caller_phone.hangup()
    (record,) = wait_records(demo_server, 1)
    assert record.interaction.transfers[0]["to"] == "1002"


def test_reinvite_from_the_agent_keeps_the_call_up(
    demo_server: TsunaguServer, agent_phone: Callable[..., BaresipUA], caller_phone: BaresipUA
) -> None:
    """A re-INVITE (§14) with a new offer gets our answer from the agent leg's media, and
    audio keeps flowing both ways afterwards."""
    agent = agent_phone("1001")
    caller_phone.call_and_wait(f"sip:0312345678@127.0.0.1:{demo_server.sip_port}")
    agent.wait_event("CALL_ESTABLISHED", timeout=30)
    mark = demo_server.log_mark()
    agent.command("reinvite")
    time.sleep(3)
    caller_phone.hangup()
    agent.wait_event("CALL_CLOSED", timeout=10)
    assert not [line for line in demo_server.logs()[mark:] if line.get("level") == "error"]
    assert all(e.type != "CALL_CLOSED" for e in agent.events()[:-1])
    assert abs(tone_at_end(caller_phone.heard()[-1]) - 1000) < 15
    assert abs(tone_at_end(agent.heard()[-1]) - 440) < 15
    reinvites = [
        line
        for line in demo_server.logs()[mark:]
        if line.get("msg") == "transaction state" and line.get("to") == "Accepted"
    ]
    assert reinvites, "the re-INVITE was not answered 2xx"


def test_agents_on_an_internal_call_are_not_offered_queue_calls(
    demo_server: TsunaguServer, agent_phone: Callable[..., BaresipUA], caller_phone: BaresipUA
) -> None:
    callee = agent_phone("1001")  # longest idle: a queue call would go to 1001 first...
    caller = agent_phone("1002", answermode="manual")
    free = agent_phone("1003")
    marks = {"1001": callee.mark(), "1002": caller.mark()}
    caller.call_and_wait(f"sip:1001@127.0.0.1:{demo_server.sip_port}", timeout=20)
    callee.wait_event("CALL_ESTABLISHED", timeout=10)
    states = {a["id"]: a["state"] for a in demo_server.api("/api/v1/agents")}
    assert (states["1001"], states["1002"], states["1003"]) == ("on_call", "on_call", "available")
    caller_phone.call_and_wait(f"sip:0312345678@127.0.0.1:{demo_server.sip_port}")
    free.wait_event("CALL_ESTABLISHED", timeout=30)  # ...but is talking to 1002
    caller_phone.hangup()
    free.wait_event("CALL_CLOSED", timeout=10)
    established = [
        e.type
        for phone, agent in ((callee, "1001"), (caller, "1002"))
        for e in phone.events()[marks[agent] :]
        if e.type == "CALL_ESTABLISHED"
    ]
    assert established == ["CALL_ESTABLISHED", "CALL_ESTABLISHED"]  # the internal call only
    log_mark = demo_server.log_mark()
    caller.hangup()
    callee.wait_event("CALL_CLOSED", timeout=10)
    for agent in ("1001", "1002"):  # straight back to available: no wrap-up after one's own call
        demo_server.wait_log(is_available(agent), since=log_mark)
    interactions = wait_records(demo_server, 2)
    assert sorted(r.interaction.direction for r in interactions) == ["inbound", "internal"]
    inbound = next(r for r in interactions if r.interaction.direction == "inbound")
    assert inbound.interaction.agents_answered == ("1003",)
    assert inbound.interaction.agents_offered == ("1003",)  # nobody else was even rung


def test_agent_hold_plays_music_to_the_customer_and_resume_reconnects(
    demo_server: TsunaguServer, agent_phone: Callable[..., BaresipUA], caller_phone: BaresipUA
) -> None:
    """baresip's /hold re-offers sendonly (RFC 3264 §8.4): the customer hears music on hold
    (the 523/392 Hz chimes) instead of silence, and /resume brings the agent's 1000 Hz back."""
    agent = agent_phone("1001")
    caller_phone.call_and_wait(f"sip:0312345678@127.0.0.1:{demo_server.sip_port}")
    agent.wait_event("CALL_ESTABLISHED", timeout=30)
    time.sleep(2)
    mark = demo_server.log_mark()
    agent.command("hold")
    demo_server.wait_log(lambda line: line.get("msg") == "call held", since=mark)
    time.sleep(4)
    agent.command("resume")
    demo_server.wait_log(lambda line: line.get("msg") == "call resumed", since=mark)
    time.sleep(3)
    caller_phone.hangup()
    agent.wait_event("CALL_CLOSED", timeout=10)
    rate, samples = read_mono(caller_phone.heard()[-1])
    step = rate // 2
    labels = ""
    for start in range(0, len(samples) - step + 1, step):
        frequency = dominant_frequency(samples[start : start + step], rate)
        if abs(frequency - 1000) < 15:
            labels += "A"  # the agent
        elif min(abs(frequency - 523.25), abs(frequency - 392.0)) < 15:
            labels += "M"  # music on hold
        else:
            labels += "."
    agent_talk = labels.index("A")
    assert "M" in labels[agent_talk:], labels  # music after the agent had answered...
    held = labels.index("M", agent_talk)
    assert "AAAA" in labels[held:], labels  # ...then the agent again, for seconds
    (record,) = wait_records(demo_server, 1)
    types = [e.type for e in record.events]
    assert types.index("hold") < types.index("resume")
