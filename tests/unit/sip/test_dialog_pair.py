"""Two user agents built from our parts, talking over an in-memory network.

Each :class:`Agent` is a miniature call layer: a transaction layer, a dialog table, and
the INVITE machinery, wired the way ``calls/`` will wire them. Messages cross the network
as bytes (serialised and parsed again) with a fixed latency, and the network can drop
chosen messages. The clock is simulated: a whole call with retransmissions and back-offs
runs in milliseconds.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from tsunagu.sip.dialog import DialogId, TerminationReason, build_invite, next_hop
from tsunagu.sip.dialog_table import DialogTable, unknown_dialog_response
from tsunagu.sip.headers import NameAddress
from tsunagu.sip.invite_client import UacInvite
from tsunagu.sip.invite_events import (
    Answered,
    AnsweredAfterCancel,
    DialogTerminated,
    EarlyDialog,
    InviteAcknowledged,
    InviteCompleted,
    InviteFailed,
    InviteFailure,
    ReinviteAccepted,
    ReinviteGlare,
    ReinviteReceived,
    ReinviteRetryDue,
    SendAck,
    SendCancel,
    SendRequest,
    SendResponse,
    SessionEvent,
)
from tsunagu.sip.invite_session import InviteSession, SessionState
from tsunagu.sip.message import SipRequest, make_response, parse_message
from tsunagu.sip.peer import Peer
from tsunagu.sip.transaction import (
    AckReceived,
    CancelReceived,
    Event,
    RequestReceived,
    ResponseReceived,
    SendMessage,
    StrayResponse,
    TransactionLayer,
    TransactionTimeout,
)
from tsunagu.sip.uri import SipUri, Uri

SDP = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
Drop = Callable[[bytes], bool]


@dataclass(order=True)
class _Item:
    at: float
    seq: int
    run: Callable[[float], None] = field(compare=False)


class World:
    """The network and the clock: a heap of deliveries and scheduled actions."""

    def __init__(self, latency: float = 0.02) -> None:
        self.latency = latency
        self.agents: dict[str, Agent] = {}
        self.now = 0.0
        self._heap: list[_Item] = []
        self._seq = itertools.count()
        self.drop: Drop = lambda _data: False
        self.dropped: list[bytes] = []

    def at(self, when: float, run: Callable[[float], None]) -> None:
        heapq.heappush(self._heap, _Item(when, next(self._seq), run))

    def send(self, source: Agent, to: Peer, data: bytes, now: float) -> None:
        if self.drop(data):
            self.dropped.append(data)
            return
        target = self.agents[to.host]
        self.at(now + self.latency, lambda t: target.receive(data, source.peer, t))

    def run(self, until: float) -> None:
        while True:
            times = [a.next_timer() for a in self.agents.values()]
            due = [t for t in times if t is not None]
            if self._heap:
                due.append(self._heap[0].at)
            if not due or min(due) > until:
                break
            now = min(due)
            self.now = now
            if self._heap and self._heap[0].at == now:
                heapq.heappop(self._heap).run(now)
            else:
                for agent in self.agents.values():
                    agent.fire(now)
        self.now = until


class Agent:
    """A user agent: the transaction layer, a dialog table and the INVITE machinery."""

    def __init__(self, world: World, name: str, host: str, *, seed: int) -> None:
        self.world = world
        self.name = name
        self.host = host
        self.peer = Peer("UDP", host, 5060)
        self.contact = NameAddress.parse(f"<sip:{name}@{host}:5060>")
        self.layer = TransactionLayer()
        self.table: DialogTable[InviteSession, UacInvite] = DialogTable()
        self.rng = random.Random(seed)
        self.uacs: dict[str, UacInvite] = {}  # INVITE client transaction → UacInvite
        self.invite_peer: dict[str, Peer] = {}  # Call-ID → where our INVITE went
        self.client_tx: dict[str, tuple[InviteSession, str]] = {}  # tx → session, method
        self.server_invites: dict[str, InviteSession] = {}  # INVITE server tx → session
        self.events: list[tuple[float, SessionEvent]] = []
        self.answer_after: float | None = 1.0
        self.wants_reinvite = False
        world.agents[host] = self

    # -- what the call layer would do -----------------------------------------------------
    def via(self, _transport: str) -> tuple[str, int]:
        return self.host, 5060

    def call(self, callee: Agent, now: float) -> UacInvite:
        invite = build_invite(
            SipUri(callee.host, callee.name, 5060),
            from_=NameAddress.parse(f"<sip:{self.name}@example.test>"),
            to=NameAddress.parse(f"<sip:{callee.name}@example.test>"),
            local_contact=self.contact,
            sent_by=(self.host, 5060),
            body=SDP,
            content_type="application/sdp",
        )
        tx_id, out = self.layer.send_request(invite, callee.peer, now)
        uac = UacInvite(invite, local_via=self.via, rng=self.rng)
        self.uacs[tx_id] = uac
        self.invite_peer[invite.call_id] = callee.peer
        self.table.add_pending(uac.key, uac)
        self.transmit(out, now)
        return uac

    def find_session(self, dialog_id: DialogId) -> InviteSession:
        """In the table, or a branch only its UacInvite knows (a fork being BYEd)."""
        found = self.table.get(dialog_id)
        for uac in self.uacs.values():
            for branch in uac.sessions.values():
                if found is None and branch.id == dialog_id:
                    found = branch
        assert found is not None
        return found

    def sessions(self) -> list[InviteSession]:
        return list(self.table.values())

    def of_type(self, kind: type) -> list[SessionEvent]:
        return [e for _, e in self.events if isinstance(e, kind)]

    def resolve(self, uri: Uri) -> Peer:
        assert isinstance(uri, SipUri)
        return Peer("UDP", uri.host, uri.port or 5060)

    def transmit(self, events: list[Event], now: float) -> None:
        for event in events:
            if isinstance(event, SendMessage):
                assert isinstance(event.peer, Peer)
                self.world.send(self, event.peer, bytes(event.message), now)

    def carry(self, session: InviteSession | None, events: list[SessionEvent], now: float) -> None:
        for event in events:
            self.events.append((now, event))
            if isinstance(event, SendRequest):
                owner = session or self.find_session(event.dialog_id)
                peer = self.resolve(next_hop(event.request))
                tx_id, out = self.layer.send_request(event.request, peer, now)
                self.client_tx[tx_id] = (owner, event.request.method)
                self.transmit(out, now)
            elif isinstance(event, SendCancel):
                peer = self.invite_peer[event.request.call_id]
                _, out = self.layer.send_request(event.request, peer, now)
                self.transmit(out, now)
            elif isinstance(event, SendAck):
                peer = self.resolve(next_hop(event.request))
                self.world.send(self, peer, bytes(event.request), now)
            elif isinstance(event, SendResponse):
                self.transmit(self.layer.send_response(event.tx_id, event.response, now), now)
            elif isinstance(event, (EarlyDialog, Answered)):
                self.table.add(event.session.dialog, event.session)
            elif isinstance(event, InviteCompleted):
                self.table.remove_pending((event.call_id, event.local_tag))
            elif isinstance(event, ReinviteReceived):
                target = self.table.get(event.dialog_id)
                assert target is not None
                ok = make_response(
                    event.request, 200, body=SDP, extra=[("Content-Type", "application/sdp")]
                )
                self.carry(target, target.respond(ok, now), now)
            elif isinstance(event, ReinviteRetryDue) and self.wants_reinvite:
                target = self.table.get(event.dialog_id)
                assert target is not None
                self.reinvite(target, now)

    def reinvite(self, session: InviteSession, now: float) -> None:
        self.carry(session, session.reinvite(now, body=SDP, content_type="application/sdp"), now)

    def hangup(self, session: InviteSession, now: float) -> None:
        self.carry(session, session.hangup(now), now)

    # -- the network and the clock --------------------------------------------------------
    def receive(self, data: bytes, source: Peer, now: float) -> None:
        message = parse_message(data)
        if isinstance(message, SipRequest):
            events = self.layer.receive_request(message, source, now)
            self.transmit(events, now)
            for event in events:
                self._request_event(event, now)
            return
        for event in self.layer.receive_response(message, source, now):
            self._response_event(event, now)

    def _request_event(self, event: Event, now: float) -> None:
        if isinstance(event, RequestReceived):
            request = event.request
            if request.method == "INVITE" and request.to.tag is None:
                self._incoming_call(event.tx_id, request, now)
                return
            session = self.table.match_request(request)
            if session is None:
                refusal = unknown_dialog_response(request)
                assert refusal is not None
                self.transmit(self.layer.send_response(event.tx_id, refusal, now), now)
            else:
                self.carry(session, session.receive_request(event.tx_id, request, now), now)
        elif isinstance(event, CancelReceived):
            target = self.server_invites.get(event.invite_tx_id or "")
            if target is None:
                refusal = make_response(event.request, 481)
                self.transmit(self.layer.send_response(event.tx_id, refusal, now), now)
            else:
                events = target.receive_cancel(
                    event.tx_id, event.request, now, invite_tx_id=event.invite_tx_id
                )
                self.carry(target, events, now)
        elif isinstance(event, AckReceived):
            session = self.table.match_request(event.request)
            if session is not None:
                self.carry(session, session.receive_ack(event.request, now), now)

    def _incoming_call(self, tx_id: str, invite: SipRequest, now: float) -> None:
        session = InviteSession.uas(
            invite, tx_id, local_contact=self.contact, local_via=self.via, rng=self.rng
        )
        self.table.add(session.dialog, session)
        self.server_invites[tx_id] = session
        self.carry(session, session.respond(make_response(invite, 180), now), now)
        if self.answer_after is not None:
            ok = make_response(invite, 200, body=SDP, extra=[("Content-Type", "application/sdp")])
            self.world.at(
                now + self.answer_after, lambda t: self.carry(session, session.respond(ok, t), t)
            )

    def _response_event(self, event: Event, now: float) -> None:
        if isinstance(event, ResponseReceived):
            uac = self.uacs.get(event.tx_id)
            if uac is not None:
                self.carry(None, uac.receive_response(event.response, now), now)
            elif event.tx_id in self.client_tx:
                session, _ = self.client_tx[event.tx_id]
                self.carry(session, session.receive_response(event.response, now), now)
        elif isinstance(event, StrayResponse):
            pending = self.table.match_pending(event.response)
            if pending is not None:
                self.carry(None, pending.receive_response(event.response, now), now)
            elif (dialog := self.table.match_response(event.response)) is not None:
                self.carry(dialog, dialog.receive_response(event.response, now), now)
        elif isinstance(event, TransactionTimeout):
            uac = self.uacs.get(event.tx_id)
            if uac is not None:
                self.carry(None, uac.failed(now), now)
            elif event.tx_id in self.client_tx:
                session, method = self.client_tx[event.tx_id]
                self.carry(session, session.transaction_failed(method, now), now)

    def next_timer(self) -> float | None:
        times = [self.layer.next_timer()]
        times += [uac.next_timer() for uac in self.uacs.values()]
        times += [s.next_timer() for s in self.table.values()]
        due = [t for t in times if t is not None]
        return min(due) if due else None

    def fire(self, now: float) -> None:
        for event in self.layer.handle_timer(now):
            self._response_event(event, now)
        for uac in list(self.uacs.values()):
            self.carry(None, uac.handle_timer(now), now)
        for session in list(self.table.values()):
            self.carry(session, session.handle_timer(now), now)


def two_agents(latency: float = 0.02) -> tuple[World, Agent, Agent]:
    world = World(latency)
    return world, Agent(world, "alice", "10.0.0.1", seed=1), Agent(world, "bob", "10.0.0.2", seed=2)


def only(agent: Agent) -> InviteSession:
    (session,) = agent.sessions()
    return session


def statuses(agent: Agent) -> list[int]:
    return [e.response.status for _, e in agent.events if isinstance(e, SendResponse)]


def terminated(agent: Agent) -> list[TerminationReason]:
    return [e.reason for e in agent.of_type(DialogTerminated) if isinstance(e, DialogTerminated)]


# -- scenarios ----------------------------------------------------------------------------
def test_call_answered_acknowledged_and_hung_up_by_the_caller() -> None:
    world, alice, bob = two_agents()
    alice.call(bob, 0.0)
    world.run(5.0)
    caller, callee = only(alice), only(bob)
    assert caller.state is SessionState.IDLE and callee.state is SessionState.IDLE
    assert caller.id == (callee.id.call_id, callee.id.remote_tag, callee.id.local_tag)
    assert len(bob.of_type(InviteAcknowledged)) == 1
    retransmitted = [
        e for e in bob.of_type(SendResponse) if isinstance(e, SendResponse) and e.retransmission
    ]
    assert retransmitted == []  # the ACK came 40 ms after the 2xx
    alice.hangup(caller, 5.0)
    world.run(40.0)
    assert terminated(alice) == [TerminationReason.LOCAL_HANGUP]
    assert terminated(bob) == [TerminationReason.REMOTE_BYE]
    assert alice.next_timer() is None and bob.next_timer() is None  # nothing left running


def test_callee_hangs_up() -> None:
    world, alice, bob = two_agents()
    alice.call(bob, 0.0)
    world.run(3.0)
    bob.hangup(only(bob), 3.0)
    world.run(40.0)
    assert terminated(bob) == [TerminationReason.LOCAL_HANGUP]
    assert terminated(alice) == [TerminationReason.REMOTE_BYE]


def test_lost_ack_is_recovered_by_2xx_retransmission_and_the_same_ack() -> None:
    world, alice, bob = two_agents()
    acks: list[bytes] = []

    def drop_first_ack(data: bytes) -> bool:
        if data.startswith(b"ACK "):
            acks.append(data)
            return len(acks) == 1
        return False

    world.drop = drop_first_ack
    alice.call(bob, 0.0)
    world.run(5.0)
    assert len(acks) == 2 and acks[0] == acks[1]  # byte-identical ACK re-sent (§13.2.2.4)
    retransmitted = [
        e for e in bob.of_type(SendResponse) if isinstance(e, SendResponse) and e.retransmission
    ]
    assert len(retransmitted) == 1  # at T1; its ACK stopped the rest
    assert only(bob).state is SessionState.IDLE and len(bob.of_type(InviteAcknowledged)) == 1


def test_every_ack_lost_ends_in_ack_timeout_and_bye() -> None:
    world, alice, bob = two_agents()
    world.drop = lambda data: data.startswith(b"ACK ")
    alice.call(bob, 0.0)
    world.run(40.0)
    # The UAS gave up at 64*T1 after its 2xx; the call layer answers AckTimeout with BYE.
    callee = only(bob)
    assert callee.state is SessionState.IDLE
    bob.hangup(callee, world.now)
    world.run(80.0)
    assert terminated(alice) == [TerminationReason.REMOTE_BYE]
    acks = [d for d in world.dropped if d.startswith(b"ACK ")]
    assert len(acks) == 11  # one per 2xx: the first plus 10 retransmissions


def test_reinvite_glare_resolves_by_back_off() -> None:
    world, alice, bob = two_agents(latency=0.05)
    alice.call(bob, 0.0)
    world.run(5.0)
    alice.wants_reinvite = bob.wants_reinvite = True
    alice.reinvite(only(alice), 10.0)
    bob.reinvite(only(bob), 10.0)  # they cross on the wire
    world.run(30.0)
    for agent in (alice, bob):
        assert len(agent.of_type(ReinviteGlare)) == 1
        assert len(agent.of_type(ReinviteAccepted)) == 1
        assert only(agent).state is SessionState.IDLE
    (alice_glare,) = alice.of_type(ReinviteGlare)
    (bob_glare,) = bob.of_type(ReinviteGlare)
    assert isinstance(alice_glare, ReinviteGlare) and isinstance(bob_glare, ReinviteGlare)
    # Alice generated the Call-ID: 2.1-4 s; Bob did not: 0-2 s (§14.1).
    assert 2.1 - 1e-9 <= alice_glare.retry_at - world_glare_time(alice) <= 4.0 + 1e-9
    assert 0.0 <= bob_glare.retry_at - world_glare_time(bob) <= 2.0 + 1e-9


def world_glare_time(agent: Agent) -> float:
    return next(t for t, e in agent.events if isinstance(e, ReinviteGlare))


def test_answer_crossing_the_cancel_is_acked_and_byed() -> None:
    world, alice, bob = two_agents()
    uac = alice.call(bob, 0.0)
    # The INVITE reaches Bob at 0.02; he answers at 1.02; the 200 reaches Alice at 1.04.
    # Alice cancels at 1.03: her CANCEL and Bob's 200 cross on the wire.
    world.run(1.03)
    alice.carry(None, uac.cancel(1.03), 1.03)
    world.run(40.0)
    assert len(alice.of_type(AnsweredAfterCancel)) == 1
    assert terminated(alice) == [TerminationReason.CANCELLED]
    assert terminated(bob) == [TerminationReason.REMOTE_BYE]  # ACKed, then BYEd
    assert len(bob.of_type(InviteAcknowledged)) == 1
    # Bob's CANCEL arrived after his 200: it got its own 200 and changed nothing (§9.2).
    assert 487 not in statuses(bob)


def test_cancel_while_ringing() -> None:
    world, alice, bob = two_agents()
    bob.answer_after = None  # rings forever
    uac = alice.call(bob, 0.0)
    world.run(3.0)
    alice.carry(None, uac.cancel(3.0), 3.0)
    world.run(40.0)
    assert terminated(bob) == [TerminationReason.CANCELLED]
    assert terminated(alice) == [TerminationReason.CANCELLED]
    assert bob.sessions()[0].dialog.is_terminated
    assert statuses(bob) == [180, 200, 487]  # 200 answers the CANCEL
    (failed,) = alice.of_type(InviteFailed)
    assert isinstance(failed, InviteFailed) and failed.reason is InviteFailure.CANCELLED


def test_bye_after_bye_gets_481_over_the_wire() -> None:
    world, alice, bob = two_agents()
    alice.call(bob, 0.0)
    world.run(3.0)
    caller = only(alice)
    stale = caller.dialog.create_request("INFO")  # built before the BYE, sent after it
    alice.hangup(caller, 3.0)
    world.run(4.0)
    tx_id, out = alice.layer.send_request(stale, bob.peer, 4.0)
    alice.transmit(out, 4.0)
    answers: list[int] = []
    original = alice._response_event

    def spy(event: Event, now: float) -> None:
        if isinstance(event, ResponseReceived) and event.tx_id == tx_id:
            answers.append(event.response.status)
        original(event, now)

    alice._response_event = spy  # type: ignore[method-assign]
    world.run(10.0)
    assert answers == [481]
