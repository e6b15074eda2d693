"""Bad input over real sockets: the RFC 4475 torture messages over UDP and TCP, brute force,
floods and scanners against a running server, which must keep serving throughout."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from tests.conformance import SERVER_ANSWER, corpus_files
from tests.integration.peers.tsunagu import TsunaguServer
from tsunagu.sip.digest import build_authorization


def _udp(
    server: TsunaguServer,
    data: bytes,
    *,
    wait: float = 1.0,
    source: str = "127.0.0.1",
) -> list[bytes]:
    """Send one datagram and collect what comes back within ``wait`` seconds."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(0.1)
        sock.sendto(data, ("127.0.0.1", server.sip_port))
        replies: list[bytes] = []
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                replies.append(sock.recv(65535))
            except TimeoutError:
                if replies:
                    break
        return replies


def _status(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1])


def _options(user_agent: str = "probe", *, branch: str = "z9hG4bKprobe") -> bytes:
    return (
        "OPTIONS sip:127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:9;rport;branch={branch}\r\n"
        "From: <sip:probe@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\n"
        f"Call-ID: {branch}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
        f"User-Agent: {user_agent}\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def _with_our_via(data: bytes, index: int) -> bytes:
    """Put a Via of ours on top, with rport (RFC 3581), so the answer comes back to our
    socket: the corpus's own Vias name hosts like 192.0.2.15 that we cannot listen on.
    Everything below the start line stays byte for byte as in the corpus."""
    start, sep, rest = data.partition(b"\r\n")
    via = f"Via: SIP/2.0/UDP 127.0.0.1:9;rport;branch=z9hG4bKcorpus{index}".encode()
    return start + sep + via + b"\r\n" + rest


def test_rfc4475_over_udp_answers_and_keeps_serving(tsunagu_server: TsunaguServer) -> None:
    for index, path in enumerate(corpus_files()):
        replies = _udp(tsunagu_server, _with_our_via(path.read_bytes(), index), wait=0.5)
        expected = SERVER_ANSWER[path.name]
        statuses = [_status(r) for r in replies if _status(r) != 100]
        if expected is None:
            assert statuses == [], path.name
        else:
            assert statuses == [expected], path.name
        assert [_status(r) for r in _udp(tsunagu_server, _options())] == [200]


def test_rfc4475_over_tcp_never_breaks_the_server(tsunagu_server: TsunaguServer) -> None:
    """On a stream, framing decides: a message the server can frame gets its answer, one it
    cannot (no or lying Content-Length) ends that connection. Either way others are served."""
    answered = 0
    for path in corpus_files():
        with socket.create_connection(("127.0.0.1", tsunagu_server.sip_port), timeout=2) as conn:
            conn.sendall(path.read_bytes())
            conn.settimeout(0.5)
            try:
                data = conn.recv(65535)
            except TimeoutError:
                data = b""  # e.g. clerr.dat: Content-Length promises bytes that never come
            if data.startswith(b"SIP/2.0 "):
                answered += 1
        assert [_status(r) for r in _udp(tsunagu_server, _options())] == [200], path.name
    assert answered >= 30
    assert tsunagu_server.running


def test_brute_force_is_banned_and_logged(
    tsunagu_factory: Callable[..., TsunaguServer],
) -> None:
    server = tsunagu_factory(
        config={"security": {"ban": {"auth_failures": 4, "ban_s": 300}}},
    )
    attacker = "127.0.0.7"
    for attempt in range(4):
        challenge = _udp(server, _register(cseq=2 * attempt + 1), source=attacker)
        assert [_status(r) for r in challenge] == [401]
        www = next(
            line.split(b": ", 1)[1].decode()
            for line in challenge[0].split(b"\r\n")
            if line.startswith(b"WWW-Authenticate") and b"MD5" in line
        )
        auth = build_authorization(
            www, "REGISTER", "sip:127.0.0.1", "1001", f"guess{attempt}", cnonce="ab", nc=1
        )
        answer = _udp(server, _register(cseq=2 * attempt + 2, auth=auth), source=attacker)
        assert [_status(r) for r in answer] == [403]
    # Banned: silence from now on, for that source only.
    assert _udp(server, _register(cseq=99), source=attacker, wait=0.5) == []
    assert [_status(r) for r in _udp(server, _options())] == [200]
    ban = server.wait_log(lambda line: line.get("event") == "banned")
    assert ban["source"] == attacker


def test_scanner_user_agent_gets_no_answer(tsunagu_server: TsunaguServer) -> None:
    assert _udp(tsunagu_server, _options("friendly-scanner"), wait=0.5) == []
    assert _udp(tsunagu_server, _options("sipvicious 0.3", branch="z9hG4bKsv"), wait=0.5) == []
    tsunagu_server.wait_log(lambda line: line.get("event") == "scanner_dropped")
    assert [_status(r) for r in _udp(tsunagu_server, _options("Zoiper"))] == [200]


def test_request_flood_is_banned(tsunagu_factory: Callable[..., TsunaguServer]) -> None:
    server = tsunagu_factory(
        config={"security": {"ban": {"requests_per_window": 50, "request_window_s": 2.0}}},
        log_level="INFO",
    )
    flooder = "127.0.0.9"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((flooder, 0))
        for i in range(200):  # bounded flood, including garbage
            sock.sendto(
                b"garbage\r\n\r\n" if i % 2 else _options(branch=f"z9hG4bKf{i}"),
                ("127.0.0.1", server.sip_port),
            )
    ban = server.wait_log(lambda line: line.get("event") == "banned")
    assert ban["source"] == flooder
    assert _udp(server, _options(branch="z9hG4bKafter"), source=flooder, wait=0.5) == []
    assert [_status(r) for r in _udp(server, _options(branch="z9hG4bKother"))] == [200]


def _register(*, cseq: int, auth: str | None = None) -> bytes:
    lines = [
        "REGISTER sip:127.0.0.1 SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:9;rport;branch=z9hG4bKbf{cseq}",
        "From: <sip:1001@127.0.0.1>;tag=bf",
        "To: <sip:1001@127.0.0.1>",
        "Call-ID: brute-force",
        f"CSeq: {cseq} REGISTER",
        "Contact: <sip:1001@127.0.0.1:9>",
        "User-Agent: SIPp",  # MD5-only client, like the tools attackers use
    ]
    if auth:
        lines.append(f"Authorization: {auth}")
    return ("\r\n".join([*lines, "Content-Length: 0"]) + "\r\n\r\n").encode()
