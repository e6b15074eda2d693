"""Trunk registration against a real registrar: SIPp checking digest on loopback.

Tsunagu's server is not started here: :class:`TrunkRegistrations` is driven through a
tiny asyncio UDP adapter written below, which stands in for the SIP core's client
transactions (send a request, hand back its responses, report Timer F). The registrar
is SIPp (``registrar_auth.xml``, which echoes our Contact and so grants what we ask, and
``registrar_grant.xml``, which grants a short expiry of its own), so the digest answer,
the CSeq/Call-ID rules and the refresh timing are checked by someone else's code.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import cast

import pytest

from tests.integration.peers import LOOPBACK
from tests.integration.peers.sipp import Sipp
from tests.integration.peers.tsunagu import TsunaguServer
from tsunagu.calls.trunk_registration import TrunkRegistrations, TrunkState
from tsunagu.settings import TrunkSettings
from tsunagu.sip.message import SipRequest, SipResponse, parse_message
from tsunagu.sip.uri import SipUri

S = TrunkState
USERS = [("2001", "pw-2001-right"), ("2002", "pw-2002-right")]
#: Generous bound on every wait; a healthy run needs a fraction of it.
WAIT_S = 15.0
#: Our Timer F stand-in: loopback answers in milliseconds, so this only ends a hung test.
TIMER_F_S = 8.0


class UdpRegistrationAdapter(asyncio.DatagramProtocol):
    """Just enough of a SIP transport and transaction layer for :class:`TrunkRegistrations`.

    The transaction id is the top Via branch (RFC 3261 §17.1.3 matching); a transaction
    without a final response after :data:`TIMER_F_S` is reported as timed out. Loopback
    does not lose datagrams, so there are no retransmissions.
    """

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.DatagramTransport | None = None
        self.manager: TrunkRegistrations | None = None
        self.sent: list[SipRequest] = []
        self.received: list[SipResponse] = []
        self._deadlines: dict[str, float] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's datagram transport does not subclass DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    @property
    def port(self) -> int:
        assert self.transport is not None
        port: int = self.transport.get_extra_info("sockname")[1]
        return port

    def send(self, request: SipRequest, transport: str, host: str, port: int) -> str:
        assert transport == "UDP" and self.transport is not None
        branch = request.top_via.branch
        assert branch is not None
        self.sent.append(request)
        self.transport.sendto(bytes(request), (host, port))
        self._deadlines[branch] = self.loop.time() + TIMER_F_S
        return branch

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        message = parse_message(data)
        manager = self.manager
        if not isinstance(message, SipResponse) or manager is None:
            return
        self.received.append(message)
        tx_id = message.top_via.branch
        if tx_id is None or not manager.owns(tx_id):
            return
        if message.status >= 200:
            self._deadlines.pop(tx_id, None)
        manager.on_response(tx_id, message, self.loop.time())

    async def run_timers(self) -> None:
        """Drive Timer F and the manager's refresh/retry timers with the loop's clock."""
        while True:
            manager = self.manager
            now = self.loop.time()
            if manager is not None:
                for tx_id, deadline in list(self._deadlines.items()):
                    if now >= deadline:
                        del self._deadlines[tx_id]
                        manager.on_timeout(tx_id, now)
                due = manager.next_timer()
                if due is not None and now >= due:
                    manager.handle_timer(now)
            await asyncio.sleep(0.01)

    def sent_by(self, user: str) -> list[SipRequest]:
        out = []
        for request in self.sent:
            uri = request.to.uri
            assert isinstance(uri, SipUri)
            if uri.user == user:
                out.append(request)
        return out


@contextmanager
def registrar(sipp_factory: Callable[..., Sipp], scenario: str, **kwargs: object) -> Iterator[Sipp]:
    sipp = sipp_factory(
        scenario,
        name=scenario,
        users=USERS,
        users_index=True,
        forget_ended_calls=True,
        timeout_s=60,
        **kwargs,
    ).start()
    sipp.wait_listening()
    try:
        yield sipp
    finally:
        sipp.stop()


def carrier_trunk(name: str, user: str, password: str, sipp: Sipp) -> TrunkSettings:
    return TrunkSettings(
        name=name,
        kind="register",
        host=LOOPBACK,
        port=sipp.local_port,
        transport="udp",
        username=user,
        password=password,
        register_expires=60,
    )


async def until(condition: Callable[[], bool], what: str, manager: TrunkRegistrations) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {manager.status()}")
        await asyncio.sleep(0.01)


@contextmanager
def adapter_task(adapter: UdpRegistrationAdapter) -> Iterator[None]:
    task = asyncio.get_running_loop().create_task(adapter.run_timers())
    try:
        yield
    finally:
        task.cancel()
        assert adapter.transport is not None
        adapter.transport.close()


async def open_adapter() -> UdpRegistrationAdapter:
    _, protocol = await asyncio.get_running_loop().create_datagram_endpoint(
        UdpRegistrationAdapter, local_addr=(LOOPBACK, 0)
    )
    return protocol


async def test_right_credentials_register_and_wrong_ones_fail_with_403(
    sipp_factory: Callable[..., Sipp],
) -> None:
    with registrar(sipp_factory, "registrar_auth", calls=3) as sipp:
        adapter = await open_adapter()
        manager = TrunkRegistrations(
            [
                carrier_trunk("good", "2001", "pw-2001-right", sipp),
                carrier_trunk("bad", "2002", "not-the-password", sipp),
            ],
            LOOPBACK,
            adapter.port,
            adapter.send,
            user_agent="Tsunagu-test",
        )
        adapter.manager = manager
        with adapter_task(adapter):
            manager.start(adapter.loop.time())
            await until(
                lambda: manager["good"].state is S.REGISTERED and manager["bad"].state is S.FAILED,
                "good registered and bad failed",
                manager,
            )
            good, bad = manager.status()["good"], manager.status()["bad"]
            # registrar_auth echoes our Contact without expires: we keep what we asked.
            assert good["granted_expires"] == 60
            assert bad["last_status"] == 403, bad
            retry, failed_at = bad["next_retry"], bad["since"]
            assert isinstance(retry, float) and isinstance(failed_at, float)
            assert retry - failed_at == pytest.approx(30.0)  # the first back-off step

            challenged, authorized = adapter.sent_by("2001")
            assert "Authorization" not in challenged.headers
            assert 'username="2001"' in (authorized.headers.get("Authorization") or "")
            assert authorized.call_id == challenged.call_id
            assert authorized.cseq.number == challenged.cseq.number + 1
            assert [r.status for r in adapter.received if r.call_id == authorized.call_id] == [
                401,
                200,
            ]
            assert len(adapter.sent_by("2002")) == 2  # no loop on the refusal

            manager.stop(adapter.loop.time())
            await until(lambda: not manager.stopping(), "the removal answered", manager)
            assert manager["good"].state is S.UNREGISTERED
            assert manager["bad"].state is S.UNREGISTERED
            removal = adapter.sent_by("2001")[-1]
            assert removal.expires() == 0 and removal.call_id == challenged.call_id
            assert len(adapter.sent_by("2002")) == 2  # nothing bound, nothing to remove
        result = sipp.wait(timeout=WAIT_S)
        assert result.successful == 2 and result.failed == 1, result.explain()


async def test_short_granted_expiry_is_refreshed_on_the_same_call_id(
    sipp_factory: Callable[..., Sipp],
) -> None:
    refreshes = 2
    calls = 1 + refreshes + 1  # register, refreshes, removal: one SIPp call each
    with registrar(
        sipp_factory, "registrar_grant", calls=calls, variables={"granted": "2"}
    ) as sipp:
        adapter = await open_adapter()
        manager = TrunkRegistrations(
            [carrier_trunk("carrier", "2001", "pw-2001-right", sipp)],
            LOOPBACK,
            adapter.port,
            adapter.send,
        )
        adapter.manager = manager
        reg = manager["carrier"]
        accepted: list[float] = []

        def count_registered() -> bool:
            for event in manager.pop_events():
                if event.new is S.REGISTERED:
                    accepted.append(event.at)
            return len(accepted) >= 1 + refreshes

        with adapter_task(adapter):
            manager.start(adapter.loop.time())
            await until(count_registered, f"{refreshes} refreshes", manager)
            status = reg.status()
            assert status["granted_expires"] == 2  # from the Contact's expires parameter
            # The next refresh is due half-way through the binding the registrar granted,
            # and refreshes never came early (no wall-clock upper bound: a loaded machine
            # may be late, and that is not what this test is about).
            bound_until, next_refresh = status["bound_until"], status["next_refresh"]
            assert isinstance(bound_until, float) and isinstance(next_refresh, float)
            assert bound_until - next_refresh == pytest.approx(1.0)
            gaps = [b - a for a, b in itertools.pairwise(accepted)]
            assert all(gap >= 0.9 for gap in gaps), gaps
            manager.stop(adapter.loop.time())
            await until(lambda: not manager.stopping(), "the removal answered", manager)
            assert reg.state is S.UNREGISTERED

        sent = adapter.sent_by("2001")
        # register (401, then with credentials), each refresh with cached credentials
        # verified at once, then the removal: 1 + 1 + refreshes + 1 requests.
        assert len(sent) == 3 + refreshes
        assert {r.call_id for r in sent} == {reg.call_id}
        numbers = [r.cseq.number for r in sent]
        assert numbers == list(range(numbers[0], numbers[0] + len(sent)))
        assert "Authorization" not in sent[0].headers
        assert all("Authorization" in r.headers for r in sent[1:])
        assert [r.expires() for r in sent] == [60] * (len(sent) - 1) + [0]
        # The registrar granted 2 s on each 200, and listed no binding after the removal.
        finals = [r for r in adapter.received if r.status == 200]
        assert [str(c) for c in finals[0].contacts or []] == [
            f"<sip:2001@{LOOPBACK}:{adapter.port}>;expires=2"
        ]
        assert finals[-1].contacts == []
        result = sipp.wait(timeout=WAIT_S)
        assert result.ok and result.successful == calls, result.explain()


def test_server_registers_its_trunk_and_shows_it_in_health(
    sipp_factory: Callable[..., Sipp], tsunagu_factory: Callable[..., TsunaguServer]
) -> None:
    """The whole server: a ``kind: register`` trunk is registered at start-up through the
    real SIP core and transaction layer, and /health shows its state."""
    user, password = USERS[0]
    with registrar(sipp_factory, "registrar_auth", calls=2) as sipp:
        server = tsunagu_factory(
            config={
                "trunks": [
                    {
                        "name": "carrier-reg",
                        "kind": "register",
                        "host": LOOPBACK,
                        "port": sipp.local_port,
                        "username": user,
                        "password": password,
                    }
                ]
            }
        )
        line = server.wait_log(
            lambda entry: (
                entry.get("msg") == "trunk registration" and entry.get("to") == "registered"
            ),
            timeout=WAIT_S,
        )
        assert line["trunk"] == "carrier-reg"
        trunks = server.api("/api/v1/health")["trunks"]
        assert trunks["carrier-reg"]["state"] == "registered"
        server.stop()  # sends the un-REGISTER on the way out
