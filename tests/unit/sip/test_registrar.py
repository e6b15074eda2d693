"""Registrar rules of RFC 3261 §10.3, driven without sockets and with time passed in."""

from __future__ import annotations

from pathlib import Path

import pytest

from tsunagu.settings import RegistrarSettings
from tsunagu.sip.bindings_store import BindingJournal
from tsunagu.sip.errors import SipParseError
from tsunagu.sip.message import SipRequest, parse_message
from tsunagu.sip.registrar import BindingChange, Registrar

SOURCE = ("UDP", "192.0.2.7", 40000)


def register(
    contact: str | None, *, expires: int | None = None, cseq: int = 1, call_id: str = "c1"
) -> SipRequest:
    lines = [
        "REGISTER sip:127.0.0.1 SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.7:40000;branch=z9hG4bK-" + str(cseq),
        "From: <sip:1001@127.0.0.1>;tag=a",
        "To: <sip:1001@127.0.0.1>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        "User-Agent: test-phone",
    ]
    if contact is not None:
        lines.append(f"Contact: {contact}")
    if expires is not None:
        lines.append(f"Expires: {expires}")
    lines.append("Content-Length: 0")
    msg = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(msg, SipRequest)
    return msg


def make(changes: list[BindingChange] | None = None, **kw: int) -> Registrar:
    sink = changes if changes is not None else []
    return Registrar(RegistrarSettings(**kw), on_change=sink.append)


def test_register_then_lookup_and_expiry() -> None:
    changes: list[BindingChange] = []
    reg = make(changes)
    out = reg.register(
        register("<sip:1001@10.0.0.5:5062>", expires=120), "1001", SOURCE, 1000.0, to_tag="t"
    )
    assert out.response.status == 200
    assert out.response.headers.get("Contact") == "<sip:1001@10.0.0.5:5062>;expires=120"
    assert [b.contact for b in reg.lookup("1001", 1000.0)] == ["sip:1001@10.0.0.5:5062"]
    binding = reg.lookup("1001", 1000.0)[0]
    assert (binding.source_host, binding.source_port, binding.user_agent) == (
        "192.0.2.7",
        40000,
        "test-phone",
    )
    assert reg.lookup("1001", 1119.0) and not reg.lookup("1001", 1120.0)
    expired = reg.expire(1121.0)
    assert len(expired) == 1 and expired[0].removed[0].contact == "sip:1001@10.0.0.5:5062"
    assert [len(c.added) for c in changes] == [1, 0]


def test_interval_too_brief_is_423_with_min_expires() -> None:
    reg = make(min_expires=60)
    out = reg.register(register("<sip:1001@h>", expires=30), "1001", SOURCE, 0.0, to_tag="t")
    assert out.response.status == 423
    assert out.response.headers.get("Min-Expires") == "60"
    assert not reg.lookup("1001", 0.0)


def test_expires_capped_and_contact_param_wins() -> None:
    reg = make(max_expires=3600)
    reg.register(
        register("<sip:1001@h>;expires=99999", expires=100), "1001", SOURCE, 0.0, to_tag="t"
    )
    assert reg.lookup("1001", 0.0)[0].expires_at == 3600.0
    reg.register(register("<sip:1001@h>", expires=100, cseq=2), "1001", SOURCE, 0.0, to_tag="t")
    assert reg.lookup("1001", 0.0)[0].expires_at == 100.0


def test_several_contacts_and_query_without_contact() -> None:
    reg = make()
    reg.register(
        register("<sip:1001@a>;q=0.5, <sip:1001@b>;q=0.9"), "1001", SOURCE, 0.0, to_tag="t"
    )
    out = reg.register(register(None, cseq=2), "1001", SOURCE, 1.0, to_tag="t")
    assert out.response.status == 200
    assert out.response.headers.values("Contact") == [
        "<sip:1001@b>;expires=3599",
        "<sip:1001@a>;expires=3599",
    ]


def test_unregister_one_and_wildcard() -> None:
    reg = make()
    reg.register(register("<sip:1001@a>, <sip:1001@b>"), "1001", SOURCE, 0.0, to_tag="t")
    reg.register(register("<sip:1001@a>", expires=0, cseq=2), "1001", SOURCE, 0.0, to_tag="t")
    assert [b.contact for b in reg.lookup("1001", 0.0)] == ["sip:1001@b"]
    out = reg.register(register("*", expires=0, cseq=3), "1001", SOURCE, 0.0, to_tag="t")
    assert out.response.status == 200 and not reg.lookup("1001", 0.0)
    assert out.change is not None and [b.contact for b in out.change.removed] == ["sip:1001@b"]


def test_wildcard_without_expires_zero_is_refused() -> None:
    reg = make()
    with pytest.raises(SipParseError):
        reg.register(register("*", expires=10), "1001", SOURCE, 0.0, to_tag="t")


def test_out_of_order_register_does_not_undo_newer_one() -> None:
    reg = make()
    reg.register(register("<sip:1001@a>", cseq=5), "1001", SOURCE, 0.0, to_tag="t")
    late = reg.register(
        register("<sip:1001@a>", expires=0, cseq=4), "1001", SOURCE, 1.0, to_tag="t"
    )
    assert late.response.status == 500
    assert reg.lookup("1001", 1.0)


def test_contact_limit_drops_oldest() -> None:
    reg = make(max_contacts_per_aor=2)
    for i, host in enumerate("abc"):
        reg.register(
            register(f"<sip:1001@{host}>", call_id=host), "1001", SOURCE, float(i), to_tag="t"
        )
    assert sorted(b.contact for b in reg.lookup("1001", 3.0)) == ["sip:1001@b", "sip:1001@c"]


def test_journal_survives_restart(tmp_path: Path) -> None:
    path = tmp_path / "bindings.sqlite3"
    journal = BindingJournal(path)
    reg = Registrar(RegistrarSettings(), on_change=journal.record)
    reg.register(register("<sip:1001@a>, <sip:1001@b>"), "1001", SOURCE, 0.0, to_tag="t")
    reg.register(register("<sip:1001@b>", expires=0, cseq=2), "1001", SOURCE, 0.0, to_tag="t")
    journal.close()

    again = BindingJournal(path)
    restored = Registrar(RegistrarSettings())
    assert restored.restore(again.load(), 10.0) == 1
    binding = restored.lookup("1001", 10.0)[0]
    assert binding.contact == "sip:1001@a" and binding.source_port == 40000
    fresh = Registrar(RegistrarSettings())
    assert fresh.restore(again.load(), 3600.0) == 0
    again.close()
