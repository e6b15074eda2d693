"""Self-checks of the real-peer harness, without Tsunagu.

Every Tsunagu integration test trusts these helpers to tell the truth: that a recording
holds what a phone heard, that an event really came from the peer, that SIPp's counters
mean what they say. So the helpers are first pointed at each other, where the right
answer is known: two pjsua2 phones, two baresip phones, SIPp against SIPp, and the REGISTER
clients against SIPp's digest registrar. Audio is judged by FFT: each side sends its own
tone and must hear the other's.
"""

from __future__ import annotations

import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import pytest

from tests.integration.conftest import Tones
from tests.integration.peers import PeerError, PeerTimeoutError, free_port
from tests.integration.peers.audio import (
    assert_tone,
    band_energy_ratio,
    dominant_frequency,
    energy_between,
    make_speech_wav,
    make_tone_wav,
    read_mono,
    read_wav,
    speech_energy_windows,
    wait_for_audio,
)
from tests.integration.peers.baresip import BaresipAccount, BaresipUA
from tests.integration.peers.pjsua import PjsuaAgent
from tests.integration.peers.sipp import Sipp
from tests.integration.peers.tsunagu import TsunaguServer

pytestmark = pytest.mark.integration

USERS = [("1001", "demo-1001"), ("1002", "demo-1002"), ("1003", "demo-1003")]


def _assert_only_tone(path: Path, hz: float) -> None:
    assert_tone(path, hz)
    rate, mono = read_mono(path)
    share = band_energy_ratio(mono, rate, hz)
    assert share > 0.9, f"{path}: only {share:.0%} of the energy is at {hz} Hz"


# --------------------------------------------------------------------------- audio


def test_audio_helpers_measure_what_they_claim(tmp_path: Path) -> None:
    rate = 8000
    tone = make_tone_wav(tmp_path / "t.wav", 697.0, 1.0, rate=rate, amplitude=0.25)
    got_rate, channels = read_wav(tone)
    assert got_rate == rate
    assert channels.shape == (1, rate)
    assert abs(dominant_frequency(channels[0], rate) - 697.0) < 2.0

    # Half a second of silence, then a tone burst: the window finder must see the burst only.
    burst = np.concatenate([np.zeros(rate // 2), channels[0][: rate // 2], np.zeros(rate // 2)])
    spans = speech_energy_windows(burst, rate)
    assert len(spans) == 1
    start, end = spans[0]
    assert abs(start - 0.5) < 0.06 and abs(end - 1.0) < 0.06
    assert energy_between(burst, rate, start_s=0.55, end_s=0.95) == 1.0
    assert energy_between(burst, rate, start_s=0.0, end_s=0.45) == 0.0

    # A recording whose writer has not finalised the header yet (data size 0) still reads.
    blob = bytearray(tone.read_bytes())
    data_at = blob.find(b"data")
    blob[data_at + 4 : data_at + 8] = b"\0\0\0\0"
    open_file = tmp_path / "open.wav"
    open_file.write_bytes(bytes(blob))
    assert read_wav(open_file)[1].shape == (1, rate)

    # A tone mixed with another fails the purity check the call tests rely on.
    other = make_tone_wav(tmp_path / "o.wav", 1000.0, 1.0, rate=rate, amplitude=0.25)
    mixed = channels[0] + read_wav(other)[1][0]
    assert band_energy_ratio(mixed, rate, 697.0) < 0.6


def test_tts_prompt_has_speech_energy(tmp_path: Path) -> None:
    from tests.integration.conftest import require_program

    require_program("espeak-ng")
    require_program("sox")
    wav = make_speech_wav(tmp_path / "prompt.wav", "Thank you for calling. Please hold.")
    rate, mono = read_mono(wav)
    assert rate == 8000
    spans = speech_energy_windows(mono, rate)
    assert spans, "espeak-ng produced silence"
    assert sum(end - start for start, end in spans) > 1.0


# -------------------------------------------------------------------------- pjsua2


def test_pjsua_direct_call_each_side_hears_the_other(
    pjsua_factory: Callable[..., PjsuaAgent], tones: Tones, peer_dir: Path
) -> None:
    a_agent = pjsua_factory("pj-a")
    b_agent = pjsua_factory("pj-b")
    alice = a_agent.add_account("alice", play=tones.caller, record_dir=peer_dir)
    bob = b_agent.add_account("bob", play=tones.agent, record_dir=peer_dir, auto_answer=200)

    out = alice.call(bob.contact_uri)
    inc = bob.wait_incoming()
    assert inc.call_id == out.call_id, "both legs of a direct call share one Call-ID"
    out.wait_confirmed()
    inc.wait_confirmed()

    wait_for_audio(peer_dir / f"alice-{out.name}.wav", 0.6)
    wait_for_audio(peer_dir / f"bob-{inc.name}.wav", 0.6)
    out.send_dtmf("159#")
    assert inc.wait_dtmf(4) == "159#"

    # Mid-call: Bob starts a second recording (closing the first), Alice changes her tone.
    second = peer_dir / "bob-second.wav"
    inc.record(second)
    heard_by_bob = inc.wait_recording_closed()
    out.play(make_tone_wav(peer_dir / "697.wav", 697.0, 30.0))
    wait_for_audio(second, 1.0)
    assert inc.stop_record() == second

    out.hangup()
    inc.wait_disconnected()
    heard_by_alice = out.wait_recording_closed()

    _assert_only_tone(heard_by_alice, tones.agent_hz)
    _assert_only_tone(heard_by_bob, tones.caller_hz)
    assert_tone(second, 697.0)


def test_pjsua_calls_baresip_that_answers_by_command(
    pjsua_factory: Callable[..., PjsuaAgent],
    baresip_factory: Callable[..., BaresipUA],
    tones: Tones,
) -> None:
    phone = baresip_factory(BaresipAccount("agent", answermode="manual"), tones.agent)
    caller = pjsua_factory("pj-caller").add_account("caller", play=tones.caller)

    call = caller.call(phone.contact_uri)
    ringing = phone.wait_event("CALL_INCOMING")
    assert ringing.call_id == call.call_id
    phone.accept()
    call.wait_confirmed()
    wait_for_audio(lambda: next(iter(phone.heard()), None), 0.4)
    call.hangup()
    assert phone.wait_event("CALL_CLOSED").call_id == call.call_id
    assert_tone(phone.heard()[0], tones.caller_hz)


def test_pjsua_refuses_a_ninth_account_instead_of_aborting(
    pjsua_factory: Callable[..., PjsuaAgent],
) -> None:
    agent = pjsua_factory("pj-many")
    for n in range(8):
        agent.add_account(f"u{n}")
    with pytest.raises(PeerError, match="at most 8 accounts"):
        agent.add_account("u8")
    # The process is still alive and answering.
    assert len(agent.command("status")["accounts"]) == 8


# ------------------------------------------------------------------------- baresip


def test_baresip_direct_call_audio_and_dtmf(
    baresip_factory: Callable[..., BaresipUA], tones: Tones
) -> None:
    alice = baresip_factory(BaresipAccount("alice"), tones.caller, name="bs-alice")
    bob = baresip_factory(BaresipAccount("bob", answermode="auto"), tones.agent, name="bs-bob")

    established = alice.call_and_wait(bob.contact_uri)
    assert established.direction == "outgoing"
    incoming = bob.wait_event("CALL_ESTABLISHED")
    assert incoming.call_id == established.call_id
    alice.wait_event("CALL_RTPESTAB")
    bob.wait_event("CALL_RTPESTAB")

    alice.send_dtmf("123#")
    digits = "".join(bob.wait_event("CALL_DTMF_START").param for _ in range(4))
    assert digits == "123#"

    wait_for_audio(lambda: next(iter(alice.heard()), None), 0.6)
    wait_for_audio(lambda: next(iter(bob.heard()), None), 0.6)
    alice.hangup()
    alice.wait_event("CALL_CLOSED")
    closed = bob.wait_event("CALL_CLOSED")
    assert closed.call_id == established.call_id

    _assert_only_tone(alice.heard()[0], tones.agent_hz)
    _assert_only_tone(bob.heard()[0], tones.caller_hz)
    # The "sent" dumps are the phones' own tones: proves which file is which.
    _assert_only_tone(alice.sent()[0], tones.caller_hz)


def test_baresip_wait_times_out_with_the_peer_log(
    baresip_factory: Callable[..., BaresipUA],
) -> None:
    idle = baresip_factory(BaresipAccount("idle"), name="bs-idle")
    with pytest.raises(PeerTimeoutError) as caught:
        idle.wait_event("CALL_INCOMING", timeout=0.3)
    message = str(caught.value)
    assert "CALL_INCOMING" in message
    assert "baresip.log" in message and "baresip is ready" in message
    idle.stop()
    assert not idle.running


# ---------------------------------------------------------------------------- SIPp


def test_sipp_uac_to_uas_twenty_calls(sipp_factory: Callable[..., Sipp]) -> None:
    uas = sipp_factory("uas", name="uas", calls=20, timeout_s=30).start()
    uas.wait_listening()
    uac = sipp_factory(
        "uac", name="uac", remote=f"127.0.0.1:{uas.local_port}", calls=20, rate=50, limit=10
    )
    sent = uac.run()
    assert sent.ok, sent.explain()
    assert sent.successful == 20 and sent.failed == 0
    answered = uas.wait()
    assert answered.ok, answered.explain()
    assert answered.successful == 20


def test_sipp_reports_failures_honestly(sipp_factory: Callable[..., Sipp]) -> None:
    # Nobody listens on this port: every call must be reported failed, not "ok".
    silent = free_port()
    result = sipp_factory(
        "uac", name="uac-nowhere", remote=f"127.0.0.1:{silent}", calls=1, timeout_s=1
    ).run()
    assert not result.ok
    assert result.successful == 0
    assert "timed out" in result.errors


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_register_clients_against_sipp_digest_registrar(
    transport: str,
    sipp_factory: Callable[..., Sipp],
    pjsua_factory: Callable[..., PjsuaAgent],
    baresip_factory: Callable[..., BaresipUA],
) -> None:
    registrar = sipp_factory(
        "registrar_auth",
        name=f"registrar-{transport}",
        transport=transport,
        calls=1000,
        users=USERS,
        users_index=True,
        forget_ended_calls=True,
        timeout_s=60,
    ).start()
    registrar.wait_listening()
    where = f"127.0.0.1:{registrar.local_port}"

    storm = sipp_factory(
        "register_auth",
        name=f"register-{transport}",
        transport=transport,
        remote=where,
        calls=2,
        rate=20,
        users=USERS[:2],
        variables={"expires": "120"},
    ).run()
    assert storm.ok and storm.successful == 2, storm.explain()

    wrong = sipp_factory(
        "register_auth",
        name=f"register-wrong-{transport}",
        transport=transport,
        remote=where,
        calls=1,
        users=[("1001", "not-the-password")],
    ).run()
    assert wrong.failed == 1 and wrong.successful == 0, wrong.explain()

    tr: Literal["udp", "tcp"] = "tcp" if transport == "tcp" else "udp"
    agent = pjsua_factory(f"pj-reg-{transport}")
    acc = agent.add_account(
        "1003", password="demo-1003", registrar=where, transport=tr, reg_timeout=120
    )
    assert acc.wait_registered()["expiration"] == 120
    bad = agent.add_account("1002", password="nope", registrar=where, transport=tr)
    assert bad.wait_reg_state()["code"] == 403
    acc.unregister()
    assert acc.wait_unregistered()["code"] == 200

    phone = baresip_factory(
        BaresipAccount("1001", password="demo-1001", registrar=where, transport=tr, regint=120),
        name=f"bs-reg-{transport}",
    )
    assert phone.register_and_wait().param == "200 OK"
    liar = baresip_factory(
        BaresipAccount("1002", password="nope", registrar=where, transport=tr),
        name=f"bs-bad-{transport}",
    )
    with pytest.raises(PeerError, match=r"REGISTER_FAIL \(403 Forbidden\)"):
        liar.register_and_wait()


# ------------------------------------------------------------------------- Tsunagu


def _fake_python(path: Path, lines: list[str]) -> str:
    """A stand-in for ``python -m tsunagu serve``: writes log lines, then idles."""
    body = "".join(f"echo '{line}' >&2\n" for line in lines)
    path.write_text(f"#!/bin/sh\n{body}exec sleep 60\n", encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_tsunagu_helper_contract_with_a_stand_in(tmp_path: Path) -> None:
    ready = _fake_python(
        tmp_path / "fake-ready",
        ['{"level": "info", "msg": "starting"}', "not json", '{"msg": "tsunagu ready"}'],
    )
    server = TsunaguServer(tmp_path, python=ready, config={"logging": {"level": "INFO"}})
    with server:
        assert [line["msg"] for line in server.logs()] == ["starting", "tsunagu ready"]
        text = server.config_path.read_text(encoding="utf-8")
        assert "demo-1002" in text and f"sip_port: {server.sip_port}" in text
        assert "level: INFO" in text
        first_pid = server.pid
        server.restart()
        assert server.pid != first_pid and server.runs == 2
        server.kill9()
        assert server.returncode() == -9
    assert not server.running

    silent = _fake_python(tmp_path / "fake-silent", ['{"msg": "still starting"}'])
    with pytest.raises(PeerTimeoutError, match="tsunagu ready"):
        TsunaguServer(tmp_path, python=silent, name="silent").start(timeout=0.5)

    crash = tmp_path / "fake-crash"
    crash.write_text('#!/bin/sh\necho \'{"msg": "bad config"}\' >&2\nexit 2\n', encoding="utf-8")
    crash.chmod(0o755)
    with pytest.raises(PeerError, match="exited with status 2"):
        TsunaguServer(tmp_path, python=str(crash), name="crash").start(timeout=5)


def test_tsunagu_command_line_is_the_documented_one(tmp_path: Path) -> None:
    server = TsunaguServer(tmp_path, sip_port=15060, http_port=18080)
    args = server.command_line()
    assert args[0] == sys.executable and args[1:4] == ["-m", "tsunagu", "serve"]
    flags = dict(zip(args[4::2], args[5::2], strict=True))
    assert flags == {
        "--config": str(server.config_path),
        "--bind": "127.0.0.1",
        "--sip-port": "15060",
        "--http-port": "18080",
        "--data-dir": str(server.data_dir),
    }
    assert server.registrar == "127.0.0.1:15060"
