"""Parser throughput: messages/s for typical requests, side by side with sippy's parser.

Both parsers get the same messages in the same process, alternating rounds, and the ratio
of the medians is reported. sippy (a Python B2BUA, ``pip install sippy``) parses lazily:
to compare like with like, its run reads the headers our parser validates eagerly (Via,
From, To, Call-ID, CSeq, Contact, Max-Forwards).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from bench.report import table, write_section
from tsunagu.sip.message import parse_message

INVITE = (
    b"INVITE sip:0312345678@127.0.0.1:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1-0;rport\r\n"
    b"From: sipp <sip:sipp@127.0.0.1:5070>;tag=1\r\n"
    b"To: <sip:0312345678@127.0.0.1:5060>\r\n"
    b"Call-ID: 1-4242@127.0.0.1\r\nCSeq: 1 INVITE\r\n"
    b"Contact: <sip:sipp@127.0.0.1:5070>\r\nMax-Forwards: 70\r\n"
    b"User-Agent: SIPp\r\nContent-Type: application/sdp\r\nContent-Length: 129\r\n\r\n"
    b"v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
    b"t=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)
REGISTER = (
    b"REGISTER sip:127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5080;rport;branch=z9hG4bKab12cd\r\n"
    b"Max-Forwards: 70\r\nTo: <sip:1001@127.0.0.1>\r\n"
    b"From: <sip:1001@127.0.0.1>;tag=f00\r\nCall-ID: reg-77\r\nCSeq: 3 REGISTER\r\n"
    b"Contact: <sip:1001@127.0.0.1:5080;transport=udp>;expires=3600\r\n"
    b'Authorization: Digest username="1001", realm="tsunagu", nonce="abc", '
    b'uri="sip:127.0.0.1", response="0123456789abcdef0123456789abcdef", algorithm=MD5\r\n'
    b"User-Agent: baresip v1.0.0\r\nContent-Length: 0\r\n\r\n"
)
MESSAGES = {"INVITE with SDP": INVITE, "REGISTER with auth": REGISTER}
ROUNDS = 5
PER_ROUND = 4000


def _rate(fn: Callable[[bytes], object], data: bytes) -> float:
    start = time.perf_counter()
    for _ in range(PER_ROUND):
        fn(data)
    return PER_ROUND / (time.perf_counter() - start)


def _sippy() -> Callable[[bytes], object] | None:
    try:
        from sippy.SipRequest import SipRequest
    except ImportError:
        return None

    def parse(data: bytes) -> object:
        msg = SipRequest(data.decode())
        for name in ("via", "from", "to", "call-id", "cseq", "contact", "max-forwards"):
            msg.getHFBody(name)
        return msg

    return parse


def main() -> None:
    sippy = _sippy()
    rows: list[dict[str, object]] = []
    for label, data in MESSAGES.items():
        ours: list[float] = []
        theirs: list[float] = []
        for _ in range(ROUNDS):
            ours.append(_rate(parse_message, data))
            if sippy is not None:
                theirs.append(_rate(sippy, data))
        row: dict[str, object] = {
            "message": label,
            "Tsunagu msgs/s (median)": f"{statistics.median(ours):,.0f}",
        }
        if theirs:
            row["sippy msgs/s (median)"] = f"{statistics.median(theirs):,.0f}"
            row["ratio Tsunagu/sippy"] = (
                f"{statistics.median(ours) / statistics.median(theirs):.2f}"
            )
        rows.append(row)
    note = (
        "One core, single process, "
        f"{ROUNDS} alternating rounds of {PER_ROUND} parses each. Tsunagu validates Via, "
        "From, To, CSeq, Call-ID, Max-Forwards, Contact and Content-Length eagerly (RFC 4475 "
        "strictness); sippy's figures include reading the same headers."
    )
    if sippy is None:
        note += " sippy is not installed (`pip install sippy`), so no ratio."
    write_section(
        "parser", "SIP parser throughput", table(rows) + "\n\n" + note, "python -m bench parser"
    )


if __name__ == "__main__":
    main()
