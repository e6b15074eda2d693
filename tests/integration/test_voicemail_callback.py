"""Voicemail callback tasks with real phones (issue 4: "records a message and leaves a
callback task").

A baresip caller (440 Hz) reaches a Voicemail block while no agent is logged in, speaks
and hangs up. An agent phone (1000 Hz) registers: it is rung first, hears the message
(440 Hz in what it received), then the caller's number is dialled through the demo trunk,
where the "customer's phone" answers (a baresip at the trunk's host and port, 660 Hz, so
the live customer is told apart from the recorded message), and the two are bridged: each
hears the other. The callback is its own outbound interaction that names the voicemail
interaction; the voicemail's timeline says the callback was created and completed. The
same with a restart between the message and the agent logging in (the task is stored),
and with a customer who rejects every call (retried after the queue's delay, then failed).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.integration.peers import free_port
from tests.integration.peers.audio import dominant_frequency, make_tone_wav, read_mono
from tests.integration.peers.baresip import BaresipAccount, BaresipUA
from tests.integration.peers.tsunagu import TsunaguServer
from tests.integration.test_calls import (
    Login,
    demo_center,
    login,
    records,
    tone_at_end,
    wait_records,
)
from tsunagu.store.interactions import InteractionRecord

__all__ = ["login"]  # a fixture used by name

CALLER = "0908880000"
VOICEMAIL_NUMBER = "0312349999"
CUSTOMER_HZ = 660.0

FLOW = """
name: leave-message
version: 1
start: message
blocks:
  message:
    type: Voicemail
    text: Message please.
    language: en
    max_seconds: 20
    queue: support
"""


@pytest.fixture
def customer_tone(tmp_path: Path) -> Path:
    return make_tone_wav(tmp_path / "customer-660.wav", CUSTOMER_HZ, 90.0)


def _server(
    tsunagu_factory: Callable[..., TsunaguServer],
    tmp_path: Path,
    flow_queue: str = "support",
    **queue: Any,
) -> tuple[TsunaguServer, int]:
    customer_port = free_port(with_next=True)  # baresip binds TLS on the next port
    flow = tmp_path / "leave-message.yaml"
    flow.write_text(FLOW.replace("queue: support", f"queue: {flow_queue}"))
    config = demo_center(ring_timeout_s=10, **queue)
    config["trunks"][0]["port"] = customer_port  # the carrier delivers our callback here
    config["flows"].append({"file": str(flow)})
    config["numbers"].append({"number": VOICEMAIL_NUMBER, "flow": "leave-message"})
    return tsunagu_factory(config=config), customer_port


def _leave_message(
    server: TsunaguServer, baresip_factory: Callable[..., BaresipUA], caller_tone: Path
) -> InteractionRecord:
    """The caller hears the prompt, speaks (440 Hz) for a few seconds and hangs up."""
    caller = baresip_factory(BaresipAccount(CALLER), caller_tone, name="caller")
    caller.call_and_wait(f"sip:{VOICEMAIL_NUMBER}@127.0.0.1:{server.sip_port}")
    time.sleep(6)  # ~1.5 s of prompt, then the message
    caller.hangup()
    caller.wait_event("CALL_CLOSED", timeout=10)
    (record,) = wait_records(server, 1, timeout=20)
    assert record.interaction.disposition == "voicemail"
    _wait_task(server, lambda t: t["state"] == "pending")
    return record


def _wait_task(
    server: TsunaguServer, done: Callable[[dict[str, Any]], bool], timeout: float = 20.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        items = server.api("/api/v1/callbacks")["items"]
        if len(items) == 1 and done(items[0]):
            task: dict[str, Any] = items[0]
            return task
        if time.monotonic() > deadline:
            raise AssertionError(f"callback task not as expected: {items}")
        time.sleep(0.3)


def _frequencies(path: Path, window_s: float = 0.5) -> list[float]:
    """The dominant frequency of each loud window of what a phone heard."""
    rate, samples = read_mono(path)
    size = int(window_s * rate)
    out = []
    for start in range(0, len(samples) - size, size):
        chunk = samples[start : start + size]
        if float(np.sqrt(np.mean(np.square(chunk)))) > 0.01:
            out.append(dominant_frequency(chunk, rate))
    return out


def _longest_run(indexes: list[int]) -> int:
    """The most consecutive window indexes in ``indexes`` (a steady tone, not speech)."""
    best = run = 0
    for n, index in enumerate(indexes):
        run = run + 1 if n and index == indexes[n - 1] + 1 else 1
        best = max(best, run)
    return best


@pytest.mark.parametrize("restart", [False, True], ids=["live", "after-restart"])
def test_voicemail_is_called_back_agent_first_then_the_customer(
    *,
    restart: bool,
    tmp_path: Path,
    tsunagu_factory: Callable[..., TsunaguServer],
    baresip_factory: Callable[..., BaresipUA],
    caller_tone: Path,
    customer_tone: Path,
    login: Login,
) -> None:
    server, customer_port = _server(tsunagu_factory, tmp_path, caller_id="0312345678")
    voicemail = _leave_message(server, baresip_factory, caller_tone)
    (message,) = [r for r in voicemail.interaction.recordings if r["kind"] == "voicemail"]
    if restart:
        server.restart()  # the task is in the store; start-up puts it back in the ACD
        assert _wait_task(server, lambda t: t["state"] == "pending")["attempts"] == 0
    customer = baresip_factory(
        BaresipAccount(CALLER, answermode="auto"),
        customer_tone,
        name="customer",
        sip_port=customer_port,
    )
    agent = login(server, "1001")
    agent.wait_event("CALL_ESTABLISHED", timeout=30)
    customer.wait_event("CALL_ESTABLISHED", timeout=60)  # after the message is played
    time.sleep(3)
    customer.hangup()
    found = wait_records(server, 2, timeout=30)
    (callback,) = [r for r in found if r.interaction.id != voicemail.interaction.id]

    # The callback interaction names the voicemail it answers, and dialled its caller.
    assert callback.interaction.direction == "outbound"
    assert callback.interaction.disposition == "callback"
    assert callback.interaction.queue == "support"
    assert callback.interaction.attributes["callback_for"] == voicemail.interaction.id
    assert callback.interaction.agents_answered == ("1001",)
    (link,) = [e for e in callback.events if e.type == "callback_for"]
    assert link.data["interaction"] == voicemail.interaction.id
    (dialled,) = [e for e in callback.events if e.type == "callback.dialled"]
    assert dialled.data["number"] == CALLER
    assert dialled.data["caller_id"] == "0312345678"  # the queue's, not the trunk's
    assert [r["kind"] for r in callback.interaction.recordings] == ["call"]
    # ... and the voicemail's timeline follows the thread.
    thread = next(r for r in records(server) if r.interaction.id == voicemail.interaction.id)
    types = [e.type for e in thread.events]
    assert "callback.created" in types and "callback.completed" in types
    completed = next(e for e in thread.events if e.type == "callback.completed")
    assert completed.data["interaction"] == callback.interaction.id
    task = _wait_task(server, lambda t: t["state"] == "done")
    assert task["voicemail_interaction_id"] == voicemail.interaction.id
    assert task["last_interaction_id"] == callback.interaction.id
    assert Path(message["path"]).exists()  # what the agent was played

    # The agent heard the recorded message (440 Hz) before the live customer (660 Hz) ...
    heard = _frequencies(agent.heard()[-1])
    message_at = [i for i, f in enumerate(heard) if abs(f - 440) < 15]
    customer_at = [i for i, f in enumerate(heard) if abs(f - CUSTOMER_HZ) < 15]
    assert _longest_run(message_at) >= 4, heard  # 2 s of the message without a break
    assert customer_at and max(message_at) < min(customer_at), heard
    assert abs(tone_at_end(agent.heard()[-1]) - CUSTOMER_HZ) < 15
    # ... and the customer heard the agent.
    assert abs(tone_at_end(customer.heard()[-1]) - 1000) < 15


def test_a_customer_who_never_answers_is_retried_then_failed(
    *,
    tmp_path: Path,
    tsunagu_factory: Callable[..., TsunaguServer],
    baresip_factory: Callable[..., BaresipUA],
    caller_tone: Path,
    customer_tone: Path,
    login: Login,
) -> None:
    server, customer_port = _server(
        tsunagu_factory, tmp_path, callback_attempts=2, callback_retry_s=2
    )
    voicemail = _leave_message(server, baresip_factory, caller_tone)
    customer = baresip_factory(
        BaresipAccount(CALLER, answermode="manual"),
        customer_tone,
        name="customer",
        sip_port=customer_port,
    )
    agent = login(server, "1001")
    for attempt in (1, 2):
        agent.wait_event("CALL_ESTABLISHED", timeout=30)
        customer.wait_event("CALL_INCOMING", timeout=60)
        customer.hangup()  # rejects the incoming call
        agent.wait_event("CALL_CLOSED", timeout=20)
        if attempt == 1:
            task = _wait_task(server, lambda t: t["attempts"] == 1)
            assert task["state"] in ("pending", "dialling") and task["not_before"]
    task = _wait_task(server, lambda t: t["state"] == "failed")
    assert task["attempts"] == 2 and "not answered" in task["last_error"]
    found = wait_records(server, 3, timeout=30)
    attempts = [r for r in found if r.interaction.id != voicemail.interaction.id]
    assert len(attempts) == 2
    assert {r.interaction.disposition for r in attempts} == {"failed"}
    assert {r.interaction.attributes["callback_for"] for r in attempts} == {
        voicemail.interaction.id
    }
    thread = next(r for r in records(server) if r.interaction.id == voicemail.interaction.id)
    types = [e.type for e in thread.events]
    assert types.count("callback.attempt_failed") == 1 and types.count("callback.failed") == 1


ROUTED = """
name: try-queue
version: 1
start: queue
blocks:
  queue:
    type: TransferToQueue
    queue: sales
    on_failure: message
  message:
    type: Voicemail
    text: Message please.
    language: en
    max_seconds: 3
"""
PLAIN = """
name: plain-message
version: 1
start: message
blocks:
  message:
    type: Voicemail
    text: Message please.
    language: en
    max_seconds: 3
"""


def test_a_block_without_queue_uses_the_queue_tried_else_leaves_it_unassigned(
    *,
    tmp_path: Path,
    tsunagu_factory: Callable[..., TsunaguServer],
    baresip_factory: Callable[..., BaresipUA],
    caller_tone: Path,
) -> None:
    config = demo_center()
    for name, text, number in (
        ("try-queue", ROUTED, "0312340001"),
        ("plain-message", PLAIN, "0312340002"),
    ):
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        config["flows"].append({"file": str(path)})
        config["numbers"].append({"number": number, "flow": name})
    server = tsunagu_factory(config=config)
    caller = baresip_factory(BaresipAccount(CALLER), caller_tone, name="caller")
    for number in ("0312340001", "0312340002"):
        since = caller.mark()
        caller.call_and_wait(f"sip:{number}@127.0.0.1:{server.sip_port}")
        caller.wait_event("CALL_CLOSED", timeout=30, since=since)  # 3 s, then we hang up
    found = wait_records(server, 2, timeout=20)
    by_number = {r.interaction.dialled: r.interaction.id for r in found}
    tasks = server.api("/api/v1/callbacks")["items"]
    queues = {t["voicemail_interaction_id"]: t["queue"] for t in tasks}
    # Nobody of "sales" was logged in, so the queue refused the caller: its agents call back.
    assert queues[by_number["0312340001"]] == "sales"
    assert queues[by_number["0312340002"]] is None  # never queued: unassigned, kept
    unassigned = server.api("/api/v1/callbacks?unassigned=true")["items"]
    assert [t["voicemail_interaction_id"] for t in unassigned] == [by_number["0312340002"]]
    assert {t["state"] for t in tasks} == {"pending"}


def test_a_ring_all_queue_rings_every_agent_and_the_first_answer_takes_the_task(
    *,
    tmp_path: Path,
    tsunagu_factory: Callable[..., TsunaguServer],
    baresip_factory: Callable[..., BaresipUA],
    caller_tone: Path,
    customer_tone: Path,
    login: Login,
) -> None:
    server, customer_port = _server(tsunagu_factory, tmp_path, flow_queue="sales")
    _leave_message(server, baresip_factory, caller_tone)
    customer = baresip_factory(
        BaresipAccount(CALLER, answermode="auto"),
        customer_tone,
        name="customer",
        sip_port=customer_port,
    )
    idle = login(server, "1002", "manual")  # rings, never answers
    busy = login(server, "1003")  # "sales" rings both; 1003 answers
    idle.wait_event("CALL_INCOMING", timeout=30)
    busy.wait_event("CALL_ESTABLISHED", timeout=30)
    idle.wait_event("CALL_CLOSED", timeout=20)  # withdrawn: answered elsewhere
    customer.wait_event("CALL_ESTABLISHED", timeout=60)
    customer.hangup()
    task = _wait_task(server, lambda t: t["state"] == "done")
    assert task["last_agent"] == "1003" and task["attempts"] == 0
    agents = {a["id"]: a["state"] for a in server.api("/api/v1/agents")}
    assert agents["1002"] == "available"  # losing the race is not a missed call
