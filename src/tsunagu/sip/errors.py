"""The two error families of the SIP layer (after h11's ``RemoteProtocolError`` /
``LocalProtocolError`` split).

* :class:`SipParseError` — the *peer* sent something we cannot accept. It carries the SIP
  status to answer with (400 by default, 505 for an unknown version, 513 for an oversized
  message) and a reason phrase that says what is wrong, so the peer's engineer can fix it.
* :class:`SipLocalError` — *we* tried to build or send something invalid. That is a bug in
  Tsunagu; it is never answered on the wire as the peer's fault.
"""

from __future__ import annotations


class SipError(Exception):
    """Base of every error raised by :mod:`tsunagu.sip`."""


class SipParseError(SipError):
    """A message from the network is malformed (RFC 3261 §21.4.1 400, §21.5.6 505, §21.5.7 513).

    ``partial_headers`` holds whatever header lines were recovered before the problem was
    found, so that a request can still be answered with the error (§8.2.6 needs Via, From,
    To, Call-ID and CSeq copied into the response).
    """

    def __init__(
        self,
        reason: str,
        status: int = 400,
        *,
        partial_headers: list[tuple[str, str]] | None = None,
        is_request: bool | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.partial_headers = partial_headers or []
        self.is_request = is_request


class SipLocalError(SipError):
    """Tsunagu itself tried to do something the protocol forbids (a bug, not the peer's fault)."""
