"""Early media with real phones: what a callee plays before answering reaches the caller.

The callee is a pjsua2 phone that answers every INVITE with 183 Session Progress carrying
SDP and plays its tone (440 Hz) from then on, as a carrier's ringback or announcement
would; it answers with 200 only when the test says so. The caller is a baresip phone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.integration.conftest import Tones
from tests.integration.peers.baresip import BaresipUA
from tests.integration.peers.pjsua import PjsuaAgent
from tests.integration.peers.tsunagu import TsunaguServer
from tests.integration.test_calls import (
    agent_phone,
    caller_phone,
    demo_center,
    demo_server,
    is_available,
    login,
    tone_at_end,
    wait_records,
)

__all__ = ["agent_phone", "caller_phone", "demo_server", "login"]  # fixtures used by name

TRANSFER_FLOW = """
name: out
version: 1
start: out
blocks:
  out:
    type: TransferToNumber
    number: "0398765432"
    caller_id: "0312345678"
    timeout_s: 20
"""


def test_internal_call_relays_the_callees_early_media(
    demo_server: TsunaguServer,
    agent_phone: Callable[..., BaresipUA],
    pjsua_factory: Callable[..., PjsuaAgent],
    tones: Tones,
    peer_dir: Path,
) -> None:
    callee = pjsua_factory("pj-1002").add_account(
        "1002",
        password="demo-1002",
        registrar=demo_server.registrar,
        auto_answer=183,
        play=tones.caller,
    )
    callee.wait_registered()
    demo_server.wait_log(is_available("1002"))
    caller = agent_phone("1001", answermode="manual")
    since = caller.mark()
    caller.dial(f"sip:1002@127.0.0.1:{demo_server.sip_port}")
    caller.wait_event("CALL_PROGRESS", timeout=15, fail_on=("CALL_CLOSED",), since=since)
    time.sleep(3.0)
    caller.hangup()
    # The caller heard the callee's 440 Hz although the callee never answered.
    (heard,) = caller.heard()
    assert abs(tone_at_end(heard, 2.0) - 440) < 15
    (record,) = wait_records(demo_server, 1)
    assert "early_media" in [e.type for e in record.events]
    assert record.interaction.disposition == "abandoned"


def test_transfer_to_number_relays_the_carriers_early_media(
    tsunagu_factory: Callable[..., TsunaguServer],
    pjsua_factory: Callable[..., PjsuaAgent],
    caller_phone: BaresipUA,
    tones: Tones,
    tmp_path: Path,
) -> None:
    far = pjsua_factory("pj-far")
    far_end = far.add_account("far", register=False, auto_answer=183, play=tones.caller)
    config: dict[str, Any] = demo_center()
    (tmp_path / "out.yaml").write_text(TRANSFER_FLOW)
    config["flows"].append({"file": str(tmp_path / "out.yaml")})
    config["numbers"].append({"number": "0312349999", "flow": "out"})
    for trunk in config["trunks"]:
        trunk["port"] = far.sip_port
    server = tsunagu_factory(config=config)
    since = far.mark()
    caller_phone.call_and_wait(f"sip:0312349999@127.0.0.1:{server.sip_port}")
    far_end.wait_incoming(timeout=15, since=since)
    offered = next(e for e in far.events() if e.get("event") == "incoming_call")
    # Our number as caller ID (From), not the customer's.
    assert "0312345678" in str(offered["remote_uri"]) or "+81312345678" in str(
        offered["remote_uri"]
    )
    time.sleep(4.0)
    caller_phone.hangup()
    # The far end never answered, yet the caller heard its 440 Hz: the early media.
    (heard,) = caller_phone.heard()
    assert abs(tone_at_end(heard, 2.5) - 440) < 15
    (record,) = wait_records(server, 1)
    dialled = next(e for e in record.events if e.type == "transfer.dialled")
    assert dialled.data["caller_id"] in ("0312345678", "+81312345678")
    assert sorted(leg.role for leg in record.legs) == ["caller", "external"]
