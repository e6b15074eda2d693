"""Attended (consult) transfer with real phones (RFC 5589 §7, RFC 3891, RFC 3515).

The customer is a baresip "carrier" phone sending 440 Hz to the demo number (queue
support). Agent A (1001) is a pjsua2 phone sending 700 Hz: it answers, holds the customer,
calls agent B (1002, a baresip phone sending 1000 Hz), then transfers with pjsua's
``xferReplaces`` — a REFER on the customer's dialog whose Refer-To names B with the
consultation dialog in Replaces. Who hears what is judged by FFT on what the phones
received and on the stereo recording; the record and the ACD states through the store
and the REST API.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.integration.conftest import Tones
from tests.integration.peers.audio import dominant_frequency, make_tone_wav, read_mono, read_wav
from tests.integration.peers.baresip import BaresipUA
from tests.integration.peers.pjsua import PjsuaAccount, PjsuaAgent, PjsuaCall
from tests.integration.peers.tsunagu import TsunaguServer
from tests.integration.test_calls import (
    agent_phone,
    caller_phone,
    demo_server,
    is_available,
    login,
    tone_at_end,
    wait_records,
)

__all__ = ["agent_phone", "caller_phone", "demo_server", "login"]  # fixtures used by name

A_HZ = 700.0
B_HZ = 1000.0
CUSTOMER_HZ = 440.0
MUSIC_HZ = (523.25, 392.0)  # the default music on hold's chimes
DID = "0312345678"


def labels(samples: np.ndarray, rate: int) -> str:
    """One letter per half second: A (agent 1001), B (agent 1002), M (music), ``.``."""
    step = rate // 2
    out = ""
    for start in range(0, len(samples) - step + 1, step):
        frequency = dominant_frequency(samples[start : start + step], rate)
        if abs(frequency - A_HZ) < 15:
            out += "A"
        elif abs(frequency - B_HZ) < 15:
            out += "B"
        elif min(abs(frequency - m) for m in MUSIC_HZ) < 15:
            out += "M"
        else:
            out += "."
    return out


def states(server: TsunaguServer) -> dict[str, str]:
    return {a["id"]: a["state"] for a in server.api("/api/v1/agents")}


@pytest.fixture
def agent_a(
    demo_server: TsunaguServer, pjsua_factory: Callable[..., PjsuaAgent], peer_dir: Path
) -> PjsuaAccount:
    """Agent 1001 on a pjsua2 phone that answers at once and sends 700 Hz."""
    tone = make_tone_wav(peer_dir / "agent-a-700.wav", A_HZ, 90.0)
    account = pjsua_factory("pj-1001").add_account(
        "1001",
        password="demo-1001",
        registrar=demo_server.registrar,
        auto_answer=200,
        play=tone,
        record_dir=peer_dir,
    )
    account.wait_registered()
    demo_server.wait_log(is_available("1001"))
    return account


def customer_held_with_a(
    server: TsunaguServer,
    agent_a: PjsuaAccount,
    agent_b: BaresipUA,
    customer: BaresipUA,
) -> PjsuaCall:
    """The customer's queue call answered by A (B is away meanwhile, then available
    again), talked to for 2 s, then held by A's phone."""
    server.api("/api/v1/agents/1002/state", "PUT", {"state": "away", "reason": "busy"})
    customer.call_and_wait(f"sip:{DID}@127.0.0.1:{server.sip_port}")
    call = agent_a.wait_incoming(timeout=30)
    call.wait_confirmed(timeout=10)
    server.api("/api/v1/agents/1002/state", "PUT", {"state": "available"})
    time.sleep(2)
    mark = server.log_mark()
    call.hold()
    server.wait_log(lambda line: line.get("msg") == "call held", since=mark)
    time.sleep(2)
    return call


def consult_b(server: TsunaguServer, agent_a: PjsuaAccount, agent_b: BaresipUA) -> PjsuaCall:
    since = agent_b.mark()
    consult = agent_a.call(f"sip:1002@127.0.0.1:{server.sip_port}")
    consult.wait_confirmed(timeout=20)
    agent_b.wait_event("CALL_ESTABLISHED", timeout=10, since=since)
    time.sleep(1.5)
    return consult


def test_attended_transfer_hands_the_customer_to_the_consulted_agent(
    demo_server: TsunaguServer,
    agent_a: PjsuaAccount,
    agent_phone: Callable[..., BaresipUA],
    caller_phone: BaresipUA,
) -> None:
    agent_b = agent_phone("1002")
    customer_call = customer_held_with_a(demo_server, agent_a, agent_b, caller_phone)
    consult = consult_b(demo_server, agent_a, agent_b)
    assert (states(demo_server)["1001"], states(demo_server)["1002"]) == ("on_call", "on_call")
    b_calls = len([e for e in agent_b.events() if e.type == "CALL_ESTABLISHED"])

    customer_call.xfer_replaces(consult)
    final = customer_call.wait_transfer_final()
    assert final["code"] == 200, final
    customer_call.wait_disconnected(timeout=10)
    consult.wait_disconnected(timeout=10)
    time.sleep(3)
    now = states(demo_server)
    assert now["1002"] == "on_call"  # now on the customer's call
    assert now["1001"] in ("wrap_up", "available"), now
    (live,) = demo_server.api("/api/v1/calls")
    assert (live["agent"], live["state"]) == ("1002", "talking")
    mark = demo_server.log_mark()
    caller_phone.hangup()
    agent_b.wait_event("CALL_CLOSED", timeout=10)

    # No new INVITE to B: its one established call is the consultation.
    assert len([e for e in agent_b.events() if e.type == "CALL_ESTABLISHED"]) == b_calls
    # The customer heard A, then music on hold, then B — to the end.
    rate, samples = read_mono(caller_phone.heard()[-1])
    heard = labels(samples, rate)
    assert "AA" in heard, heard
    after_a = heard.index("AA")
    assert "MM" in heard[after_a:], heard
    after_music = heard.index("MM", after_a)
    assert "BBBB" in heard[after_music:], heard
    assert heard.rstrip(".").endswith("BB"), heard
    # B heard A during the consultation, then the customer.
    assert abs(tone_at_end(agent_b.heard()[-1]) - CUSTOMER_HZ) < 15

    done = wait_records(demo_server, 2)
    inbound = next(r for r in done if r.interaction.direction == "inbound")
    internal = next(r for r in done if r.interaction.direction == "internal")
    assert {"1001", "1002"} <= set(inbound.interaction.agents_answered)
    (transfer,) = inbound.interaction.transfers
    assert transfer["attended"] is True and transfer["kind"] == "attended"
    assert (transfer["from"], transfer["to"]) == ("1001", "1002")
    assert "transfer" in [e.type for e in inbound.events]
    assert sorted(leg.role for leg in inbound.legs) == ["agent", "agent", "caller"]
    assert inbound.interaction.disposition == "answered"
    assert internal.interaction.disposition == "answered"
    assert "transferred" in [leg.end_reason for leg in internal.legs]
    # One stereo file: on the agent (right) channel A's tone, later B's.
    (recording,) = [r for r in inbound.interaction.recordings if r["kind"] == "call"]
    rate, channels = read_wav(recording["path"])
    on_agent = labels(channels[1], rate)
    assert "AA" in on_agent and "BB" in on_agent[on_agent.index("AA") :], on_agent
    assert abs(dominant_frequency(channels[0][-2 * rate :], rate) - CUSTOMER_HZ) < 15

    demo_server.wait_log(is_available("1002"), timeout=20, since=mark)  # after wrap-up
    # Every state above came from the call path, none from a reconciler repair.
    repaired = [x for x in demo_server.logs() if x.get("msg") == "presence repaired"]
    assert not repaired, repaired


def test_replaces_naming_an_unknown_dialog_leaves_everything_up(
    demo_server: TsunaguServer,
    agent_a: PjsuaAccount,
    agent_phone: Callable[..., BaresipUA],
    caller_phone: BaresipUA,
) -> None:
    """202, then a final NOTIFY 481 (what an INVITE with that Replaces would get, RFC 3891
    §3); the customer stays on hold with A (music), the consultation stays up."""
    agent_b = agent_phone("1002")
    customer_call = customer_held_with_a(demo_server, agent_a, agent_b, caller_phone)
    consult = consult_b(demo_server, agent_a, agent_b)
    bogus = "nosuchcall%3Bto-tag%3Dabc%3Bfrom-tag%3Ddef"
    # In <>: a bare addr-spec may not carry headers (RFC 3261 §20); pjsua sends it as given.
    customer_call.xfer(f"<sip:1002@127.0.0.1:{demo_server.sip_port}?Replaces={bogus}>")
    final = customer_call.wait_transfer_final()
    assert final["code"] == 481, final
    time.sleep(3)
    assert states(demo_server) == {**states(demo_server), "1001": "on_call", "1002": "on_call"}
    (live,) = [c for c in demo_server.api("/api/v1/calls") if c["caller"] != "1001"]
    assert live["agent"] == "1001"
    rate, samples = read_mono(caller_phone.heard()[-1])
    last = labels(samples[-4 * rate :], rate)  # still music on hold, neither agent
    assert last.count("M") >= 3 and "A" not in last and "B" not in last, last
    assert abs(tone_at_end(agent_b.heard()[-1]) - A_HZ) < 15  # B still talks to A
    ends = [e for e in agent_a.agent.events() if e.get("state") == "DISCONNECTED"]
    assert not ends, ends
    # B ends the consultation, A takes the customer off hold: they talk again.
    mark = demo_server.log_mark()
    agent_b.hangup()
    consult.wait_disconnected(timeout=10)
    customer_call.unhold()
    demo_server.wait_log(lambda line: line.get("msg") == "call resumed", since=mark)
    time.sleep(3)
    caller_phone.hangup()
    customer_call.wait_disconnected(timeout=10)
    rate, samples = read_mono(caller_phone.heard()[-1])
    heard = labels(samples, rate)
    assert "AAA" in heard[heard.rindex("M") :], heard
    (inbound,) = [r for r in wait_records(demo_server, 2) if r.interaction.direction == "inbound"]
    failed = [e for e in inbound.events if e.type == "transfer.failed"]
    assert failed and failed[0].data["status"] == 481
    assert not inbound.interaction.transfers
    assert inbound.interaction.agents_answered == ("1001",)


def test_replaces_naming_a_consultation_still_ringing_is_refused(
    demo_server: TsunaguServer,
    agent_a: PjsuaAccount,
    agent_phone: Callable[..., BaresipUA],
    caller_phone: BaresipUA,
) -> None:
    """The consultation rings (B has not answered): our leg to A is an early dialog A
    initiated, so the transfer fails with 481 (RFC 3891 §3); the customer stays held, B's
    phone keeps ringing until A gives up."""
    agent_b = agent_phone("1002", answermode="manual")
    customer_call = customer_held_with_a(demo_server, agent_a, agent_b, caller_phone)
    since = agent_b.mark()
    consult = agent_a.call(f"sip:1002@127.0.0.1:{demo_server.sip_port}")
    consult.wait_state("EARLY", timeout=15)
    customer_call.xfer_replaces(consult)
    final = customer_call.wait_transfer_final()
    assert final["code"] == 481, final
    time.sleep(2)
    rate, samples = read_mono(caller_phone.heard()[-1])
    last = labels(samples[-3 * rate :], rate)
    assert last.count("M") >= 2 and "B" not in last, last
    assert not [e for e in agent_b.events()[since:] if e.type == "CALL_ESTABLISHED"]
    consult.hangup()
    consult.wait_disconnected(timeout=10)
    caller_phone.hangup()
    customer_call.wait_disconnected(timeout=10)
    done = wait_records(demo_server, 2)
    inbound = next(r for r in done if r.interaction.direction == "inbound")
    internal = next(r for r in done if r.interaction.direction == "internal")
    assert inbound.interaction.agents_answered == ("1001",)
    assert internal.interaction.disposition == "abandoned"


def test_attended_transfer_of_a_colleagues_call_keeps_direct_call_states(
    demo_server: TsunaguServer,
    agent_a: PjsuaAccount,
    agent_phone: Callable[..., BaresipUA],
) -> None:
    """The call A transfers is itself an extension call (1003 called 1001): afterwards
    1003 talks to 1002; 1001 is available at once, and 1002 and 1003 are available again
    at once when they hang up (direct calls have no wrap-up)."""
    agent_b = agent_phone("1002")
    colleague = agent_phone("1003")
    colleague.call_and_wait(f"sip:1001@127.0.0.1:{demo_server.sip_port}", timeout=20)
    a_call = agent_a.wait_incoming(timeout=10)
    a_call.wait_confirmed(timeout=10)
    time.sleep(1.5)
    mark = demo_server.log_mark()
    a_call.hold()
    demo_server.wait_log(lambda line: line.get("msg") == "call held", since=mark)
    time.sleep(1.5)
    consult = consult_b(demo_server, agent_a, agent_b)
    a_call.xfer_replaces(consult)
    assert a_call.wait_transfer_final()["code"] == 200
    a_call.wait_disconnected(timeout=10)
    consult.wait_disconnected(timeout=10)
    time.sleep(2.5)
    now = states(demo_server)
    assert (now["1001"], now["1002"], now["1003"]) == ("available", "on_call", "on_call"), now
    mark = demo_server.log_mark()
    colleague.hangup()
    agent_b.wait_event("CALL_CLOSED", timeout=10)
    for agent in ("1002", "1003"):
        demo_server.wait_log(is_available(agent), since=mark)
    # Freed by the call's end itself, not repaired later by the reconciler.
    repaired = [x for x in demo_server.logs()[mark:] if x.get("msg") == "presence repaired"]
    assert not repaired, repaired
    rate, samples = read_mono(colleague.heard()[-1])
    heard = labels(samples, rate)
    assert "AA" in heard and "BBBB" in heard[heard.index("AA") :], heard
    assert abs(tone_at_end(agent_b.heard()[-1]) - B_HZ) < 15  # 1003's 1000 Hz, not A's 700
    done = wait_records(demo_server, 2)
    (moved,) = [r for r in done if r.interaction.transfers]
    assert {"1001", "1002"} <= set(moved.interaction.agents_answered)
    assert moved.interaction.transfers[0]["kind"] == "attended"


def test_refer_sent_on_the_consultation_transfers_the_same_way(
    demo_server: TsunaguServer,
    agent_a: PjsuaAccount,
    agent_phone: Callable[..., BaresipUA],
    caller_phone: BaresipUA,
) -> None:
    """Some phones REFER the transfer target instead: the REFER comes on the consultation
    and its Replaces names the customer's dialog. The outcome is the same, and the
    NOTIFYs go on the dialog the REFER came on."""
    agent_b = agent_phone("1002")
    customer_call = customer_held_with_a(demo_server, agent_a, agent_b, caller_phone)
    consult = consult_b(demo_server, agent_a, agent_b)
    consult.xfer_replaces(customer_call)
    final = consult.wait_transfer_final()
    assert final["code"] == 200, final
    customer_call.wait_disconnected(timeout=10)
    consult.wait_disconnected(timeout=10)
    time.sleep(3)
    assert states(demo_server)["1002"] == "on_call"
    caller_phone.hangup()
    agent_b.wait_event("CALL_CLOSED", timeout=10)
    rate, samples = read_mono(caller_phone.heard()[-1])
    heard = labels(samples, rate)
    assert "BBBB" in heard[heard.index("MM") :], heard
    assert abs(tone_at_end(agent_b.heard()[-1]) - CUSTOMER_HZ) < 15
    (inbound,) = [r for r in wait_records(demo_server, 2) if r.interaction.direction == "inbound"]
    (transfer,) = inbound.interaction.transfers
    assert (transfer["kind"], transfer["from"], transfer["to"]) == ("attended", "1001", "1002")


def test_invite_with_replaces_moves_the_agents_call_to_another_phone(
    demo_server: TsunaguServer,
    agent_a: PjsuaAccount,
    pjsua_factory: Callable[..., PjsuaAgent],
    caller_phone: BaresipUA,
    tones: Tones,
) -> None:
    """Agent 1001's second phone INVITEs with Replaces naming the first phone's dialog
    (RFC 3891): it gets the customer (who now hears its 1000 Hz), the first phone gets
    BYE. Replaces naming no dialog of ours is 481, and nothing changes."""
    caller_phone.call_and_wait(f"sip:{DID}@127.0.0.1:{demo_server.sip_port}")
    first_call = agent_a.wait_incoming(timeout=30)
    first_call.wait_confirmed(timeout=10)
    # Registered only now: calls for 1001 go to the newest binding.
    second = pjsua_factory("pj-1001b").add_account(
        "1001", password="demo-1001", registrar=demo_server.registrar, play=tones.agent
    )
    second.wait_registered()
    time.sleep(1.5)
    mine, ours = first_call.dialog_tags()
    target = f"sip:1001@127.0.0.1:{demo_server.sip_port}"
    bogus = second.call(target, headers=[("Replaces", "nosuch;to-tag=a;from-tag=b")])
    assert bogus.wait_disconnected(timeout=10)["code"] == 481
    replaces = f"{first_call.call_id};to-tag={ours};from-tag={mine}"
    taking = second.call(target, headers=[("Replaces", replaces)])
    taking.wait_confirmed(timeout=10)
    first_call.wait_disconnected(timeout=10)
    time.sleep(3)
    caller_phone.hangup()
    taking.wait_disconnected(timeout=10)
    rate, samples = read_mono(caller_phone.heard()[-1])
    heard = labels(samples, rate)
    assert "AA" in heard and "BBBB" in heard[heard.index("AA") :], heard
    (record,) = wait_records(demo_server, 1)
    (transfer,) = record.interaction.transfers
    assert (transfer["kind"], transfer["from"], transfer["to"]) == ("replaces", "1001", "1001")
    assert sorted(leg.role for leg in record.legs) == ["agent", "agent", "caller"]
