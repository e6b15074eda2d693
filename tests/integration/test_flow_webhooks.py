"""InvokeWebhook against a real local HTTP server, from a real call: the success, timeout
and error branches, the returned JSON as attributes, and the record of each."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from tests.integration.peers.baresip import BaresipAccount, BaresipUA
from tests.integration.peers.tsunagu import TsunaguServer
from tests.integration.test_calls import wait_records

FLOW = """
name: hook
version: 1
start: lookup
blocks:
  lookup:
    type: InvokeWebhook
    url: "http://127.0.0.1:{port}/hook/{{{{dialled}}}}"
    method: POST
    timeout_s: 1
    body: {{caller: "{{{{caller}}}}"}}
    next: known
    error: unknown
  known:
    type: Disconnect
    reason: customer_known
  unknown:
    type: Disconnect
    reason: lookup_failed
"""


class Crm(BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, dict[str, object]]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Crm.seen.append((self.path, body))
        if self.path.endswith("0311110001"):
            payload = json.dumps({"customer": {"tier": "gold", "rep": "1002"}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        elif self.path.endswith("0311110002"):
            time.sleep(3)  # longer than the block's 1 s timeout
            self.send_response(200)
            self.end_headers()
        else:
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def crm() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Crm)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def test_webhook_branches_from_a_real_call(
    tmp_path: Path,
    crm: int,
    tsunagu_factory: Callable[..., TsunaguServer],
    baresip_factory: Callable[..., BaresipUA],
    caller_tone: Path,
) -> None:
    flow = tmp_path / "hook.yaml"
    flow.write_text(FLOW.format(port=crm))
    numbers = ["0311110001", "0311110002", "0311110003"]
    server = tsunagu_factory(
        config={
            "trunks": [{"name": "carrier", "allow": ["127.0.0.1/32"]}],
            "flows": [{"file": str(flow)}],
            "numbers": [{"number": n, "flow": "hook"} for n in numbers],
        }
    )
    caller = baresip_factory(BaresipAccount("0907770000"), caller_tone, name="carrier")
    for number in numbers:
        caller.call_and_wait(f"sip:{number}@127.0.0.1:{server.sip_port}", timeout=15)
        caller.wait_event("CALL_CLOSED", timeout=15)
    found = {r.interaction.dialled: r for r in wait_records(server, 3)}

    ok = found["0311110001"]
    assert [s["block"] for s in ok.interaction.flow_path] == ["lookup", "known"]
    assert ok.interaction.disposition == "completed"  # the flow ended the call itself
    assert ok.interaction.attributes["customer.tier"] == "gold"
    slow, broken = found["0311110002"], found["0311110003"]
    for record, reason in ((slow, "timeout"), (broken, "HTTP 500")):
        assert [s["block"] for s in record.interaction.flow_path] == ["lookup", "unknown"]
        errors = [e for e in record.events if e.type == "flow.WebhookError"]
        assert len(errors) == 1 and reason in str(errors[0].data["reason"])
    # The CRM saw the caller's number in the JSON body, on the dialled number's path.
    assert ("/hook/0311110001", {"caller": "0907770000"}) in Crm.seen
