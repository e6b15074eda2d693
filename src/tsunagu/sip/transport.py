"""The only place SIP touches sockets: a thin asyncio adapter for UDP and TCP (RFC 3261 §18).

Everything protocol-shaped happens in the sans-IO core; this module moves bytes. UDP
datagrams are handed up whole; TCP streams are framed by Content-Length
(:class:`~tsunagu.sip.message.StreamFramer`). Connections are reused in both directions
(§18.2.2: responses go back on the connection the request came in on; requests to a phone
registered over TCP use the connection it registered on) and bounded: a cap on
connections in total and per source address, and an idle timeout, so a scanner cannot
exhaust file descriptors. CRLF keep-alive pings (RFC 5626 §3.5.1) get their pong.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, cast

from tsunagu.settings import TransportSettings
from tsunagu.sip.errors import SipParseError
from tsunagu.sip.message import StreamFramer
from tsunagu.sip.peer import Peer

log = logging.getLogger("tsunagu.sip.transport")

MessageHandler = Callable[[bytes, Peer], None]
#: Called with a framing error on a stream; may return bytes to send before closing.
FramingErrorHandler = Callable[[SipParseError, bytes, Peer], bytes | None]


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: SipTransport) -> None:
        self._owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self._owner.deliver(data, Peer("UDP", str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and friends: the peer is gone; timers will notice.
        log.debug("udp error: %s", exc)


class _TcpConnection(asyncio.Protocol):
    def __init__(self, owner: SipTransport) -> None:
        self._owner = owner
        self._framer = StreamFramer(owner.settings.max_message_bytes)
        self.transport: asyncio.Transport | None = None
        self.peer: Peer | None = None
        self.last_activity = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport implements asyncio.Transport without subclassing it.
        stream = cast(asyncio.Transport, transport)
        host, port = stream.get_extra_info("peername")[:2]
        self.transport = stream
        self.peer = Peer("TCP", str(host), int(port))
        if not self._owner.admit(self):
            stream.abort()

    def data_received(self, data: bytes) -> None:
        assert self.peer is not None and self.transport is not None
        self.last_activity = time.monotonic()
        self._framer.feed(data)
        pings = self._framer.keepalive_pings
        try:
            for raw in self._framer.messages():
                self._owner.deliver(raw, self.peer)
        except SipParseError as exc:
            answer = self._owner.on_framing_error(exc, bytes(data), self.peer)
            if answer:
                self.transport.write(answer)
            log.info(
                "closing TCP connection after framing error",
                extra={"peer": str(self.peer), "reason": exc.reason},
            )
            self.transport.close()
            return
        if self._framer.keepalive_pings > pings:
            self.transport.write(b"\r\n")

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner.forget(self)

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.last_activity = time.monotonic()
            self.transport.write(data)


class SipTransport:
    """UDP and TCP listeners on one address and port."""

    def __init__(
        self,
        settings: TransportSettings,
        on_message: MessageHandler,
        on_framing_error: FramingErrorHandler | None = None,
    ) -> None:
        self.settings = settings
        self._on_message = on_message
        self._on_framing_error = on_framing_error
        self._udp: asyncio.DatagramTransport | None = None
        self._server: asyncio.Server | None = None
        self._connections: dict[tuple[str, int], _TcpConnection] = {}
        self._per_ip: dict[str, int] = {}
        self._reaper: asyncio.Task[None] | None = None
        self.local_host = ""
        self.local_port = 0

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        udp, _ = await loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self), local_addr=(host, port)
        )
        self._udp = udp
        bound = udp.get_extra_info("sockname")
        self.local_host, self.local_port = str(bound[0]), int(bound[1])
        self._server = await loop.create_server(
            lambda: _TcpConnection(self), host, self.local_port, reuse_address=True
        )
        self._reaper = asyncio.create_task(self._reap_idle())

    async def stop(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections.values()):
            if conn.transport is not None:
                conn.transport.close()
        if self._server is not None:
            await self._server.wait_closed()
        if self._udp is not None:
            self._udp.close()

    # -- inbound -------------------------------------------------------------------------
    def deliver(self, data: bytes, peer: Peer) -> None:
        try:
            self._on_message(data, peer)
        except Exception:  # the transport must outlive any bug above it
            log.exception("unhandled error while processing a message from %s", peer)

    def on_framing_error(self, exc: SipParseError, data: bytes, peer: Peer) -> bytes | None:
        if self._on_framing_error is None:
            return None
        return self._on_framing_error(exc, data, peer)

    def admit(self, conn: _TcpConnection) -> bool:
        assert conn.peer is not None
        ip = conn.peer.host
        if len(self._connections) >= self.settings.tcp_max_connections:
            log.warning(
                "TCP connection refused: server connection limit reached",
                extra={"peer": str(conn.peer)},
            )
            return False
        if self._per_ip.get(ip, 0) >= self.settings.tcp_max_connections_per_ip:
            log.warning(
                "TCP connection refused: per-address limit reached", extra={"peer": str(conn.peer)}
            )
            return False
        self._connections[(ip, conn.peer.port)] = conn
        self._per_ip[ip] = self._per_ip.get(ip, 0) + 1
        return True

    def forget(self, conn: _TcpConnection) -> None:
        if conn.peer is None:
            return
        key = (conn.peer.host, conn.peer.port)
        if self._connections.get(key) is conn:
            del self._connections[key]
            left = self._per_ip.get(conn.peer.host, 1) - 1
            if left:
                self._per_ip[conn.peer.host] = left
            else:
                self._per_ip.pop(conn.peer.host, None)

    @property
    def tcp_connections(self) -> int:
        return len(self._connections)

    # -- outbound ------------------------------------------------------------------------
    def send(self, peer: Peer, data: bytes) -> None:
        if peer.transport == "UDP":
            if self._udp is not None:
                self._udp.sendto(data, (peer.host, peer.port))
            return
        conn = self._connections.get((peer.host, peer.port))
        if conn is not None:
            conn.send(data)
            return
        asyncio.get_running_loop().create_task(self._connect_and_send(peer, data))

    async def _connect_and_send(self, peer: Peer, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(
                lambda: _TcpConnection(self), peer.host, peer.port
            )
        except OSError as exc:
            log.warning("TCP connect failed", extra={"peer": str(peer), "error": str(exc)})
            return
        conn.send(data)

    async def _reap_idle(self) -> None:
        idle = self.settings.tcp_idle_timeout_s
        while True:
            await asyncio.sleep(min(idle / 4, 30.0))
            cutoff = time.monotonic() - idle
            for conn in list(self._connections.values()):
                if conn.last_activity < cutoff and conn.transport is not None:
                    conn.transport.close()
