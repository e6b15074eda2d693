"""The SIP core end to end without sockets: bytes in, bytes out, time passed in."""

from __future__ import annotations

import pytest

from tests.conformance import SERVER_ANSWER, corpus_files
from tsunagu.settings import Settings, parse_settings
from tsunagu.sip.core import Outgoing, SipCore
from tsunagu.sip.digest import DigestAuthenticator, build_authorization
from tsunagu.sip.guard import SourceGuard
from tsunagu.sip.message import SipResponse, parse_message
from tsunagu.sip.peer import Peer
from tsunagu.sip.registrar import Registrar

PHONE = Peer("UDP", "127.0.0.1", 5080)


def settings(**ban: object) -> Settings:
    return parse_settings({
        "server": {"domain": "127.0.0.1"},
        "security": {"ban": {"auth_failures": 3, **ban}},
        "agents": [{"id": "1001", "sip_password": "demo-1001"},
                   {"id": "1002", "sip_password": "demo-1002"}],
    })  # fmt: skip


def make_core(cfg: Settings | None = None) -> SipCore:
    cfg = cfg or settings()
    passwords = {a.id: a.sip_password for a in cfg.agents}
    return SipCore(
        cfg,
        authenticator=DigestAuthenticator("tsunagu", passwords.get, secret=b"k" * 32),
        guard=SourceGuard(cfg.security.ban),
        registrar=Registrar(cfg.sip.registrar),
    )


def answers(out: list[Outgoing]) -> list[SipResponse]:
    result = []
    for item in out:
        msg = parse_message(item.data)
        assert isinstance(msg, SipResponse)
        result.append(msg)
    return result


def register(
    user: str = "1001",
    *,
    cseq: int = 1,
    auth: str | None = None,
    ua: str = "baresip",
    to_user: str | None = None,
    branch: str = "",
) -> bytes:
    lines = [
        "REGISTER sip:127.0.0.1 SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:5080;rport;branch=z9hG4bK{branch or cseq}x{user}",
        f"From: <sip:{user}@127.0.0.1>;tag=ft",
        f"To: <sip:{to_user or user}@127.0.0.1>",
        f"Call-ID: reg-{user}",
        f"CSeq: {cseq} REGISTER",
        f"Contact: <sip:{user}@127.0.0.1:5080>",
        "Expires: 600",
        f"User-Agent: {ua}",
    ]
    if auth:
        lines.append(f"Authorization: {auth}")
    return ("\r\n".join([*lines, "Content-Length: 0"]) + "\r\n\r\n").encode()


def login(
    core: SipCore,
    user: str,
    password: str,
    *,
    now: float = 0.0,
    cseq: int = 1,
    to_user: str | None = None,
) -> SipResponse:
    (challenge,) = answers(
        core.receive(register(user, cseq=cseq, to_user=to_user), PHONE, now, now)
    )
    assert challenge.status == 401
    www = challenge.headers.values("WWW-Authenticate")
    assert len(www) == 2 and "SHA-256" in www[0] and "MD5" in www[1]
    auth = build_authorization(
        www[0], "REGISTER", "sip:127.0.0.1", user, password, cnonce="c0ffee", nc=1
    )
    (final,) = answers(
        core.receive(register(user, cseq=cseq + 1, auth=auth, to_user=to_user), PHONE, now, now)
    )
    return final


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: p.name)
def test_rfc4475_server_answers(path: object) -> None:
    from pathlib import Path

    assert isinstance(path, Path)
    core = make_core()
    out = core.receive(path.read_bytes(), PHONE, 0.0, 0.0)
    expected = SERVER_ANSWER[path.name]
    if expected is None:
        assert out == []
    else:
        # Read only the status line: a 400 echoes the peer's own malformed To/From (§8.2.6).
        statuses = [int(o.data.split(b" ", 2)[1]) for o in out]
        assert statuses == [expected]
    # The server keeps serving afterwards.
    (ok,) = answers(core.receive(register("1002", branch="after"), PHONE, 1.0, 1.0))
    assert ok.status == 401


def test_malformed_reason_says_what_is_wrong_and_unknown_method_gets_allow() -> None:
    core = make_core()
    by_name = {p.name: p.read_bytes() for p in corpus_files()}
    (bad,) = answers(core.receive(by_name["mismatch01.dat"], PHONE, 0.0, 0.0))
    assert bad.status == 400 and "CSeq" in bad.reason
    (unknown,) = answers(core.receive(by_name["esc02.dat"], PHONE, 0.0, 0.0))
    assert unknown.status == 501 and "REGISTER" in (unknown.headers.get("Allow") or "")
    (ext,) = answers(core.receive(by_name["bext01.dat"], PHONE, 0.0, 0.0))
    assert ext.headers.get("Unsupported") == "nothingsupportsthis, nothingsupportsthiseither"
    (media,) = answers(core.receive(by_name["invut.dat"], PHONE, 0.0, 0.0))
    assert media.headers.get("Accept") == "application/sdp"


def test_register_with_digest_then_refresh_and_unregister() -> None:
    core = make_core()
    ok = login(core, "1001", "demo-1001")
    assert ok.status == 200
    assert ok.headers.get("Contact") == "<sip:1001@127.0.0.1:5080>;expires=600"
    assert [b.contact for b in core.registrar.lookup("1001", 0.0)] == ["sip:1001@127.0.0.1:5080"]
    binding = core.registrar.lookup("1001", 0.0)[0]
    assert (binding.source_host, binding.source_port) == ("127.0.0.1", 5080)


def test_wrong_password_and_unknown_user_look_identical() -> None:
    core = make_core()
    wrong = login(core, "1001", "not-the-password")
    unknown = login(core, "9999", "whatever-password")
    assert (wrong.status, wrong.reason) == (unknown.status, unknown.reason) == (403, "Forbidden")
    assert not core.registrar.lookup("1001", 0.0)


def test_cannot_register_someone_elses_address() -> None:
    core = make_core()
    refused = login(core, "1001", "demo-1001", to_user="1002")
    assert refused.status == 403
    assert not core.registrar.lookup("1002", 0.0)


def test_brute_force_gets_banned_and_silenced() -> None:
    core = make_core()
    for i in range(3):
        assert login(core, "1001", f"guess-{i}", now=float(i), cseq=10 * i + 1).status == 403
    assert core.receive(register("1001", cseq=99), PHONE, 4.0, 4.0) == []
    # Another source is unaffected.
    other = Peer("UDP", "127.0.0.2", 5080)
    assert [r.status for r in answers(core.receive(register(cseq=100), other, 4.0, 4.0))] == [401]


def test_scanner_user_agent_dropped() -> None:
    core = make_core()
    assert core.receive(register(ua="friendly-scanner"), PHONE, 0.0, 0.0) == []


def test_retransmission_absorbed_with_same_answer() -> None:
    core = make_core()
    first = core.receive(register(), PHONE, 0.0, 0.0)
    again = core.receive(register(), PHONE, 0.2, 0.2)
    assert [o.data for o in again] == [o.data for o in first]


def test_rport_and_received_stamped_and_response_routed_to_source() -> None:
    core = make_core()
    nat = Peer("UDP", "198.51.100.9", 40123)
    (out,) = core.receive(register(), nat, 0.0, 0.0)
    assert out.peer == nat
    response = parse_message(out.data)
    via = response.top_via
    assert via.params["rport"] == "40123" and via.params["received"] == "198.51.100.9"


def test_options_answered_without_auth() -> None:
    core = make_core()
    data = register().replace(b"REGISTER sip", b"OPTIONS sip").replace(b"1 REGISTER", b"1 OPTIONS")
    (ok,) = answers(core.receive(data, PHONE, 0.0, 0.0))
    assert ok.status == 200 and "INVITE" in (ok.headers.get("Allow") or "")


def test_invite_requires_auth() -> None:
    core = make_core()
    invite = (
        b"INVITE sip:1002@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKi1\r\n"
        b"From: <sip:1001@127.0.0.1>;tag=a\r\nTo: <sip:1002@127.0.0.1>\r\nCall-ID: inv1\r\n"
        b"CSeq: 1 INVITE\r\nContact: <sip:1001@127.0.0.1:5080>\r\nContent-Length: 0\r\n\r\n"
    )
    out = answers(core.receive(invite, PHONE, 0.0, 0.0))
    assert [r.status for r in out] == [401]
