"""The Voicemail block with a real caller: the message is recorded (what the caller said,
checked by frequency), the record says voicemail and carries a callback request."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.integration.peers.audio import dominant_frequency, read_wav
from tests.integration.peers.baresip import BaresipAccount, BaresipUA
from tests.integration.peers.tsunagu import TsunaguServer
from tests.integration.test_calls import wait_records

FLOW = """
name: voicemail
version: 1
start: message
blocks:
  message:
    type: Voicemail
    text: Please leave a message after the tone.
    language: en
    max_seconds: 4
"""


def test_voicemail_records_the_callers_message(
    tmp_path: Path,
    tsunagu_factory: Callable[..., TsunaguServer],
    baresip_factory: Callable[..., BaresipUA],
    caller_tone: Path,
) -> None:
    flow = tmp_path / "voicemail.yaml"
    flow.write_text(FLOW)
    server = tsunagu_factory(
        config={
            "trunks": [{"name": "carrier", "allow": ["127.0.0.1/32"]}],
            "flows": [{"file": str(flow)}],
            "numbers": [{"number": "0312349999", "flow": "voicemail"}],
        }
    )
    caller = baresip_factory(BaresipAccount("0908880000"), caller_tone, name="carrier")
    caller.call_and_wait(f"sip:0312349999@127.0.0.1:{server.sip_port}")
    caller.wait_event("CALL_CLOSED", timeout=30)  # 4 s of message, then we hang up
    (record,) = wait_records(server, 1)
    assert record.interaction.disposition == "voicemail"
    (message,) = [r for r in record.interaction.recordings if r["kind"] == "voicemail"]
    rate, channels = read_wav(message["path"])
    assert channels.shape[1] >= 3 * rate
    assert abs(dominant_frequency(channels[0], rate) - 440) < 15  # the caller, on the left
    assert any(e.type == "flow.CallbackRequested" for e in record.events)
