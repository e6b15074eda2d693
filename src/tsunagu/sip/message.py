"""SIP requests and responses as wire types: ``parse_message(bytes)`` and ``bytes(message)``.

RFC 3261 §7 (message structure), §18.3 (framing), §20 (header fields). Why our own parser
rather than a library such as ``sipmessage``: the RFC 4475 torture corpus needs a parser that
is strict exactly where the RFC says (request-line spacing, duplicate single-value headers,
Content-Length sanity, CSeq/method agreement) and that, when it refuses, still hands back
enough headers to answer with the right status; ``docs/ARCHITECTURE.md`` records the choice.

Eagerly validated on parse (they decide whether and how we can answer at all): the start
line, Via, From, To, Call-ID, CSeq, Max-Forwards, Contact and Content-Length. The rest stays a
string until someone asks, and a lazy parse that fails raises :class:`SipParseError`, which
the core turns into a 400 like any other.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from tsunagu.sip.errors import SipLocalError, SipParseError
from tsunagu.sip.headers import (
    SINGLE_HEADERS,
    CSeq,
    NameAddress,
    Via,
    canonical_name,
    is_token,
    parse_contacts,
    split_list,
)
from tsunagu.sip.uri import SipUri, Uri, parse_uri

SIP_VERSION = "SIP/2.0"
DEFAULT_MAX_MESSAGE = 65_535
_HEADER_NAME_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_MANDATORY = ("via", "from", "to", "call-id", "cseq")

REASON_PHRASES = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 200: "OK", 202: "Accepted", 301: "Moved Permanently",
    302: "Moved Temporarily", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    413: "Request Entity Too Large", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 420: "Bad Extension", 421: "Extension Required",
    423: "Interval Too Brief", 480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist", 482: "Loop Detected", 483: "Too Many Hops",
    484: "Address Incomplete", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 491: "Request Pending", 500: "Server Internal Error",
    501: "Not Implemented", 503: "Service Unavailable", 504: "Server Time-out",
    505: "Version Not Supported", 513: "Message Too Large", 600: "Busy Everywhere",
    603: "Decline", 604: "Does Not Exist Anywhere", 606: "Not Acceptable",
}  # fmt: skip


@lru_cache(maxsize=4096)
def _key(name: str) -> str:
    """Lookup key of a header name: its full form, lower-case (bounded cache: names repeat)."""
    return canonical_name(name).lower()


class Headers:
    """Ordered header fields with case-insensitive access by full name.

    Values are the raw strings from the wire (unfolded). An index by name and the parsed
    views are built on first use and dropped on every change, so a caller can never read a
    stale parse.
    """

    __slots__ = ("_cache", "_index", "_items")

    def __init__(self, items: list[tuple[str, str]] | None = None) -> None:
        self._items: list[tuple[str, str]] = [(canonical_name(n), v) for n, v in items or ()]
        self._cache: dict[str, Any] = {}
        self._index: dict[str, list[str]] | None = None

    def _changed(self) -> None:
        self._cache.clear()
        self._index = None

    def _lookup(self) -> dict[str, list[str]]:
        index = self._index
        if index is None:
            index = {}
            for n, v in self._items:
                index.setdefault(_key(n), []).append(v)
            self._index = index
        return index

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: str) -> bool:
        return _key(name) in self._lookup()

    def get(self, name: str) -> str | None:
        """The first value of ``name`` (not split), or ``None``."""
        found = self._lookup().get(_key(name))
        return found[0] if found else None

    def values(self, name: str) -> list[str]:
        """Every header line of ``name``, unsplit."""
        return list(self._lookup().get(_key(name), ()))

    def get_list(self, name: str) -> list[str]:
        """Elements of a list header across all its lines (§7.3.1 comma folding)."""
        return [
            item
            for value in self.values(name)
            for item in split_list(value, allow_empty=True, what=name)
        ]

    def add(self, name: str, value: str) -> None:
        self._items.append((canonical_name(name), value))
        self._changed()

    def prepend(self, name: str, value: str) -> None:
        self._items.insert(0, (canonical_name(name), value))
        self._changed()

    def set(self, name: str, value: str) -> None:
        """Replace every line of ``name`` by one line, kept at the first one's position."""
        full = canonical_name(name)
        key = _key(name)
        out: list[tuple[str, str]] = []
        placed = False
        for n, v in self._items:
            if _key(n) == key:
                if not placed:
                    out.append((full, value))
                    placed = True
            else:
                out.append((n, v))
        if not placed:
            out.append((full, value))
        self._items = out
        self._changed()

    def remove(self, name: str) -> None:
        key = _key(name)
        self._items = [(n, v) for n, v in self._items if _key(n) != key]
        self._changed()

    def copy(self) -> Headers:
        return Headers(list(self._items))

    def cached(self, key: str) -> Any:
        return self._cache.get(key)

    def remember(self, key: str, value: Any) -> Any:
        self._cache[key] = value
        return value


class SipMessage:
    """Fields and typed views shared by requests and responses."""

    __slots__ = ("body", "headers")

    def __init__(self, headers: Headers, body: bytes) -> None:
        self.headers = headers
        self.body = body

    # -- typed views (parsed once, cached until the headers change) -------------------
    @property
    def vias(self) -> list[Via]:
        cached = self.headers.cached("via")
        if cached is None:
            items = [i for v in self.headers.values("Via") for i in split_list(v, what="Via")]
            cached = self.headers.remember("via", [Via.parse(item) for item in items])
        result: list[Via] = cached
        return result

    @property
    def top_via(self) -> Via:
        vias = self.vias
        if not vias:
            raise SipParseError("missing Via")
        return vias[0]

    def _name_address(self, name: str) -> NameAddress:
        key = name.lower()
        cached = self.headers.cached(key)
        if cached is None:
            value = self.headers.get(name)
            if value is None:
                raise SipParseError(f"missing {name}")
            cached = self.headers.remember(key, NameAddress.parse(value, what=name))
        result: NameAddress = cached
        return result

    @property
    def from_(self) -> NameAddress:
        return self._name_address("From")

    @property
    def to(self) -> NameAddress:
        return self._name_address("To")

    @property
    def call_id(self) -> str:
        value = self.headers.get("Call-ID")
        if value is None:
            raise SipParseError("missing Call-ID")
        return value.strip()

    @property
    def cseq(self) -> CSeq:
        cached = self.headers.cached("cseq")
        if cached is None:
            value = self.headers.get("CSeq")
            if value is None:
                raise SipParseError("missing CSeq")
            cached = self.headers.remember("cseq", CSeq.parse(value))
        result: CSeq = cached
        return result

    @property
    def contacts(self) -> list[NameAddress] | None:
        """Contact entries; ``None`` for the wildcard ``*``; ``[]`` when absent."""
        cached = self.headers.cached("contact")
        if cached is None:
            cached = self.headers.remember(
                "contact", (parse_contacts(self.headers.values("Contact")),)
            )
        result: list[NameAddress] | None = cached[0]
        return result

    @property
    def max_forwards(self) -> int:
        """Max-Forwards, 70 when absent (RFC 2543 senders omit it; §8.1.1.6, §16.6)."""
        value = self.headers.get("Max-Forwards")
        if value is None:
            return 70
        text = value.strip()
        if not text.isdigit() or not text.isascii() or int(text) > 255:
            raise SipParseError("Max-Forwards must be an integer 0-255")
        return int(text)

    @property
    def content_type(self) -> str | None:
        value = self.headers.get("Content-Type")
        return value.split(";", 1)[0].strip().lower() if value else None

    def expires(self) -> int | None:
        """The Expires header as delta-seconds, capped at 2**32-1 (§20.19)."""
        value = self.headers.get("Expires")
        if value is None:
            return None
        text = value.strip()
        if not text.isdigit() or not text.isascii():
            raise SipParseError("Expires must be delta-seconds")
        return min(int(text), 2**32 - 1)

    def _serialize(self, start_line: str) -> bytes:
        lines = [start_line]
        lines += [f"{n}: {v}" for n, v in self.headers if n != "Content-Length"]
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + self.body


class SipRequest(SipMessage):
    """A request (§7.1). ``uri`` is the Request-URI."""

    __slots__ = ("method", "uri")

    def __init__(
        self, method: str, uri: Uri, headers: Headers | None = None, body: bytes = b""
    ) -> None:
        super().__init__(headers if headers is not None else Headers(), body)
        self.method = method
        self.uri = uri

    def __bytes__(self) -> bytes:
        return self._serialize(f"{self.method} {self.uri} {SIP_VERSION}")

    def __repr__(self) -> str:
        return f"<SipRequest {self.method} {self.uri}>"

    @property
    def sip_uri(self) -> SipUri:
        if not isinstance(self.uri, SipUri):
            raise SipParseError("Request-URI scheme not supported", 416)
        return self.uri


class SipResponse(SipMessage):
    """A response (§7.2)."""

    __slots__ = ("reason", "status")

    def __init__(
        self, status: int, reason: str | None = None, headers: Headers | None = None,
        body: bytes = b"",
    ) -> None:  # fmt: skip
        super().__init__(headers if headers is not None else Headers(), body)
        if not 100 <= status <= 699:
            raise SipLocalError(f"status {status} out of range")
        self.status = status
        self.reason = reason if reason is not None else REASON_PHRASES.get(status, "")

    def __bytes__(self) -> bytes:
        return self._serialize(f"{SIP_VERSION} {self.status} {self.reason}")

    def __repr__(self) -> str:
        return f"<SipResponse {self.status} {self.reason}>"


SipMessageType = SipRequest | SipResponse


# -- parsing ------------------------------------------------------------------------------
def _split_head(data: bytes) -> tuple[bytes, bytes]:
    end = data.find(b"\r\n\r\n")
    if end < 0:
        raise SipParseError("no empty line after the header fields")
    return data[:end], data[end + 4 :]


def _header_lines(head: str) -> tuple[str, list[tuple[str, str]]]:
    """Split the head into the start line and unfolded ``(name, value)`` pairs (§7.3.1)."""
    lines = head.split("\r\n")
    start = lines[0]
    fields: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):
            if not fields:
                raise SipParseError("continuation line before any header field")
            name, value = fields[-1]
            extra = line.strip(" \t")
            fields[-1] = (name, f"{value} {extra}" if value else extra)
            continue
        colon = line.find(":")
        if colon <= 0:
            raise SipParseError("header line without a name and ':'", partial_headers=fields)
        name = line[:colon].rstrip(" \t")
        if not _HEADER_NAME_RE.fullmatch(name):
            raise SipParseError(f"invalid header name {name!r}", partial_headers=fields)
        fields.append((canonical_name(name), line[colon + 1 :].strip(" \t")))
    return start, fields


def _content_length(headers: Headers) -> int | None:
    value = headers.get("Content-Length")
    if value is None:
        return None
    text = value.strip()
    if not text.isdigit() or not text.isascii() or len(text) > 9:
        raise SipParseError("Content-Length must be a non-negative integer of sane size")
    return int(text)


def parse_message(
    data: bytes, *, stream: bool = False, max_size: int = DEFAULT_MAX_MESSAGE
) -> SipRequest | SipResponse:
    """Parse one complete message.

    ``stream=False`` (UDP, §18.3): octets past Content-Length are ignored (RFC 4475
    §3.1.1.8) and a missing Content-Length means "the rest of the datagram".
    ``stream=True`` (TCP): ``data`` must hold exactly one framed message (see
    :class:`StreamFramer`). Raises :class:`SipParseError` carrying the status to answer.
    """
    if len(data) > max_size:
        raise SipParseError("Message Too Large", 513)
    while data.startswith(b"\r\n"):  # §7.5: ignore CRLFs before the start line
        data = data[2:]
    head_bytes, rest = _split_head(data)
    head = head_bytes.decode("utf-8", errors="surrogateescape")
    start, fields = _header_lines(head)
    is_request = not start.startswith("SIP/")
    headers = Headers(fields)
    try:
        return _build(start, headers, rest, stream, is_request)
    except SipParseError as exc:
        exc.partial_headers = list(headers)
        exc.is_request = is_request
        raise


def _build(
    start: str, headers: Headers, rest: bytes, stream: bool, is_request: bool
) -> SipRequest | SipResponse:
    message = _request_line(start, headers) if is_request else _status_line(start, headers)
    for key in SINGLE_HEADERS:
        if len(headers.values(key)) > 1:
            raise SipParseError(f"more than one {canonical_name(key)} header")
    for key in _MANDATORY:
        if key not in headers:
            raise SipParseError(f"missing {canonical_name(key)} header")
    length = _content_length(headers)
    if length is None:
        if stream:
            raise SipParseError("Content-Length is required on stream transports (§18.3)")
        length = len(rest)
    if length > len(rest):
        raise SipParseError("Content-Length larger than the message body")
    message.body = rest[:length]
    # Eager validation of what every answer depends on.
    message.vias  # noqa: B018
    cseq = message.cseq
    message.from_  # noqa: B018
    message.to  # noqa: B018
    if not message.call_id:
        raise SipParseError("empty Call-ID")
    message.max_forwards  # noqa: B018
    message.contacts  # noqa: B018  (a bad Contact makes REGISTER/INVITE unanswerable)
    if isinstance(message, SipRequest) and cseq.method != message.method:
        raise SipParseError("CSeq method does not match the request method")
    return message


def _request_line(start: str, headers: Headers) -> SipRequest:
    parts = start.split(" ")
    if len(parts) != 3 or not all(parts):
        raise SipParseError("malformed Request-Line (exactly one SP between its three parts)")
    method, uri_text, version = parts
    if not is_token(method):
        raise SipParseError("invalid method token")
    if version.upper() != SIP_VERSION:
        if version.upper().startswith("SIP/"):
            raise SipParseError("SIP version not supported", 505)
        raise SipParseError("malformed SIP version")
    uri = parse_uri(uri_text)
    if isinstance(uri, SipUri) and uri.headers:
        raise SipParseError("Request-URI must not contain headers (§19.1.5)")
    return SipRequest(method, uri, headers)


def _status_line(start: str, headers: Headers) -> SipResponse:
    version, _, rest = start.partition(" ")
    code, _, reason = rest.partition(" ")
    if version.upper() != SIP_VERSION:
        raise SipParseError("SIP version not supported", 505)
    if len(code) != 3 or not code.isdigit() or not code.isascii() or not 100 <= int(code) <= 699:
        raise SipParseError("invalid status code")
    return SipResponse(int(code), reason, headers)


class StreamFramer:
    """Frames messages on a stream transport by Content-Length (§18.3).

    Feed bytes as they arrive; :meth:`messages` yields the complete raw messages. A head
    without a usable Content-Length, or bigger than ``max_size``, is a framing error the
    connection cannot recover from (we no longer know where the next message starts):
    :class:`SipParseError` is raised and the caller answers if it can and closes.
    CRLF keep-alives (RFC 5626 §3.5.1) between messages are skipped.
    """

    def __init__(self, max_size: int = DEFAULT_MAX_MESSAGE) -> None:
        self._buffer = bytearray()
        self._max_size = max_size
        self.keepalive_pings = 0

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def messages(self) -> Iterator[bytes]:
        buf = self._buffer
        while True:
            while buf.startswith(b"\r\n"):
                if buf.startswith(b"\r\n\r\n"):
                    self.keepalive_pings += 1
                    del buf[:4]
                    continue
                if len(buf) < 4 and b"\r\n\r\n".startswith(bytes(buf)):
                    return
                del buf[:2]
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > self._max_size:
                    raise SipParseError("Message Too Large", 513)
                return
            head = bytes(buf[:end]).decode("utf-8", "surrogateescape")
            length = self._length(head)
            total = end + 4 + length
            if total > self._max_size:
                raise SipParseError("Message Too Large", 513)
            if len(buf) < total:
                return
            raw = bytes(buf[:total])
            del buf[:total]
            yield raw

    @staticmethod
    def _length(head: str) -> int:
        found: str | None = None
        for line in head.split("\r\n")[1:]:
            name, colon, value = line.partition(":")
            if colon and name.strip().lower() in ("content-length", "l"):
                if found is not None:
                    raise SipParseError("more than one Content-Length header")
                found = value.strip()
        if found is None:
            raise SipParseError("Content-Length is required on stream transports (§18.3)")
        if not found.isdigit() or not found.isascii() or len(found) > 9:
            raise SipParseError("Content-Length must be a non-negative integer of sane size")
        return int(found)


def make_response(
    request: SipRequest,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    extra: list[tuple[str, str]] | None = None,
    body: bytes = b"",
) -> SipResponse:
    """Build a response per §8.2.6.2: Via, From, Call-ID, CSeq copied; To tag added."""
    headers = Headers()
    for value in request.headers.values("Via"):
        headers.add("Via", value)
    from_value = request.headers.get("From")
    to_value = request.headers.get("To")
    if from_value is not None:
        headers.add("From", from_value)
    if to_value is not None:
        if to_tag is not None and status > 100:
            try:
                to = NameAddress.parse(to_value, what="To")
                if to.tag is None:
                    to.params["tag"] = to_tag
                    to_value = str(to)
            except SipParseError:
                to_value = f"{to_value};tag={to_tag}"
        headers.add("To", to_value)
    for name in ("Call-ID", "CSeq"):
        copied = request.headers.get(name)
        if copied is not None:
            headers.add(name, copied)
    if status == 100 and (ts := request.headers.get("Timestamp")) is not None:
        headers.add("Timestamp", ts)  # §8.2.6.1
    for name, value in extra or ():
        headers.add(name, value)
    return SipResponse(status, reason, headers, body)


def response_for_parse_error(error: SipParseError) -> SipResponse | None:
    """An answer to a request the parser refused, or ``None`` if none can be formed.

    Needs at least a Via among the recovered header lines (the answer goes back to the
    source address, §18.2.2); From, To, Call-ID and CSeq are copied when present. The
    reason phrase says what was wrong (CR/LF stripped so it cannot inject headers).
    """
    if error.is_request is False:
        return None
    raw = Headers(error.partial_headers)
    if "Via" not in raw:
        return None
    reason = " ".join(error.reason.split())[:120]
    headers = Headers()
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        for value in raw.values(name):
            headers.add(name, value)
    return SipResponse(error.status, reason, headers)
