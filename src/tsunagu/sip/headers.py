"""Header names and the structured header values SIP logic reads (RFC 3261 §7.3, §20, §25.1).

Header *values* stay strings in :class:`~tsunagu.sip.message.Headers`; the types here parse
the ones the core needs (Via, From/To/Contact/Route as name-addr, CSeq) on demand, and render
back with ``str()``. Parsing is strict where RFC 4475 says a server must refuse (empty Via
parameters, a bare addr-spec holding ``?``, spaces inside ``<>``, non-token display names)
and liberal where it says to accept (LWS around every separator, unknown parameters).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from tsunagu.sip.errors import SipParseError
from tsunagu.sip.uri import SipUri, Uri, parse_uri, split_hostport

#: Compact forms (§7.3.3 and later RFCs) mapped to full names.
COMPACT_FORMS = {
    "i": "Call-ID",
    "m": "Contact",
    "e": "Content-Encoding",
    "l": "Content-Length",
    "c": "Content-Type",
    "f": "From",
    "s": "Subject",
    "k": "Supported",
    "t": "To",
    "v": "Via",
    "o": "Event",
    "r": "Refer-To",
    "b": "Referred-By",
    "u": "Allow-Events",
    "x": "Session-Expires",
    "a": "Accept-Contact",
    "j": "Reject-Contact",
    "d": "Request-Disposition",
    "y": "Identity",
}

_KNOWN = [
    "Accept", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow", "Allow-Events",
    "Authentication-Info", "Authorization", "Call-ID", "Call-Info", "Contact",
    "Content-Disposition", "Content-Encoding", "Content-Language", "Content-Length",
    "Content-Type", "CSeq", "Date", "Error-Info", "Event", "Expires", "From", "In-Reply-To",
    "Max-Forwards", "Min-Expires", "MIME-Version", "Organization", "P-Asserted-Identity",
    "P-Preferred-Identity", "Path", "Priority", "Privacy", "Proxy-Authenticate",
    "Proxy-Authorization", "Proxy-Require", "RAck", "Reason", "Record-Route", "Refer-To",
    "Referred-By", "Reply-To", "Require", "Retry-After", "Route", "RSeq", "Server",
    "Session-Expires", "Subject", "Subscription-State", "Supported", "Timestamp", "To",
    "Unsupported", "User-Agent", "Via", "Warning", "WWW-Authenticate", "Min-SE",
]  # fmt: skip
_CANONICAL = {name.lower(): name for name in _KNOWN}

#: Headers whose value is a comma-separated list that may also be split over several
#: header lines (§7.3.1). Authorization-style headers are not: their commas separate params.
LIST_HEADERS = frozenset(
    ("via", "contact", "route", "record-route", "path", "allow", "supported", "require",
     "proxy-require", "unsupported", "accept", "accept-encoding", "accept-language",
     "content-encoding", "content-language", "allow-events", "call-info", "alert-info",
     "error-info", "in-reply-to", "warning", "p-asserted-identity", "p-preferred-identity")
)  # fmt: skip

#: Headers that must appear at most once (§20, RFC 4475 §3.3.8 / §3.3.9).
SINGLE_HEADERS = frozenset(
    ("call-id", "cseq", "from", "to", "max-forwards", "content-length", "content-type",
     "expires", "min-expires")
)  # fmt: skip

_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")
_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_WS = " \t"


def canonical_name(name: str) -> str:
    """Full, conventionally capitalised header name; compact forms expanded (§7.3.3)."""
    lowered = name.lower()
    full = COMPACT_FORMS.get(lowered)
    if full is not None:
        return full
    return _CANONICAL.get(lowered, name)


def is_token(text: str) -> bool:
    return bool(text) and all(c in _TOKEN_CHARS for c in text)


def split_list(value: str, *, allow_empty: bool = False, what: str = "header") -> list[str]:
    """Split a list header value at commas outside quoted strings and ``<…>`` (§7.3.1)."""
    if '"' not in value and "<" not in value:  # fast path: commas can only be separators
        parts = [item.strip(_WS) for item in value.split(",")]
        if allow_empty:
            return [item for item in parts if item]
        if any(not item for item in parts):
            raise SipParseError(f"empty element in {what} list")
        return parts
    items: list[str] = []
    start = 0
    in_quotes = False
    in_angle = False
    i = 0
    n = len(value)
    while i < n:
        c = value[i]
        if in_quotes:
            if c == "\\":
                i += 1
            elif c == '"':
                in_quotes = False
        elif c == '"':
            in_quotes = True
        elif c == "<":
            in_angle = True
        elif c == ">":
            in_angle = False
        elif c == "," and not in_angle:
            items.append(value[start:i].strip(_WS))
            start = i + 1
        i += 1
    if in_quotes:
        raise SipParseError(f"unterminated quoted string in {what}")
    items.append(value[start:].strip(_WS))
    if allow_empty:
        return [item for item in items if item]
    if any(not item for item in items):
        raise SipParseError(f"empty element in {what} list")
    return items


def _read_quoted(text: str, start: int, what: str) -> tuple[str, int]:
    """Read a quoted-string at ``text[start] == '"'``; returns (unquoted value, next index)."""
    out: list[str] = []
    i = start + 1
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            if i + 1 >= n:
                break
            out.append(text[i + 1])
            i += 2
            continue
        if c == '"':
            return "".join(out), i + 1
        out.append(c)
        i += 1
    raise SipParseError(f"unterminated quoted string in {what}")


def _skip_ws(text: str, i: int) -> int:
    n = len(text)
    while i < n and text[i] in _WS:
        i += 1
    return i


def parse_params(text: str, what: str) -> dict[str, str | None]:
    """Parse ``*( SEMI generic-param )`` with LWS allowed around ``;`` and ``=`` (§25.1).

    Parameter names are lower-cased; values keep their case (quoted values unquoted).
    """
    params: dict[str, str | None] = {}
    i = _skip_ws(text, 0)
    n = len(text)
    while i < n:
        if text[i] != ";":
            raise SipParseError(f"unexpected {text[i]!r} in {what} parameters")
        i = _skip_ws(text, i + 1)
        m = _TOKEN_RE.match(text, i)
        if m is None:
            raise SipParseError(f"empty or invalid parameter name in {what}")
        name = m.group().lower()
        i = _skip_ws(text, m.end())
        value: str | None = None
        if i < n and text[i] == "=":
            i = _skip_ws(text, i + 1)
            if i < n and text[i] == '"':
                value, i = _read_quoted(text, i, what)
            elif i < n and text[i] == "[":
                end = text.find("]", i)
                if end < 0:
                    raise SipParseError(f"unterminated IPv6 reference in {what}")
                value, i = text[i : end + 1], end + 1
            else:
                vm = _TOKEN_RE.match(text, i)
                if vm is None:
                    raise SipParseError(f"parameter {name!r} in {what} has an empty value")
                value, i = vm.group(), vm.end()
            i = _skip_ws(text, i)
        params[name] = value
    return params


def format_params(params: dict[str, str | None]) -> str:
    out = []
    for name, value in params.items():
        if value is None:
            out.append(f";{name}")
        elif value == "" or not all(c in _TOKEN_CHARS or c in "[]:" for c in value):
            escaped = value.replace("\\", "\\\\").replace('"', '\\"')
            out.append(f';{name}="{escaped}"')
        else:
            out.append(f";{name}={value}")
    return "".join(out)


@dataclass(slots=True)
class Via:
    """One Via entry (§20.42, §18.2.1 received, RFC 3581 rport)."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    protocol: str = "SIP/2.0"

    @classmethod
    def parse(cls, text: str) -> Via:
        parts: list[str] = []
        i = _skip_ws(text, 0)
        for index in range(3):
            m = _TOKEN_RE.match(text, i)
            if m is None:
                raise SipParseError("malformed Via sent-protocol")
            parts.append(m.group())
            i = _skip_ws(text, m.end())
            if index < 2:
                if i >= len(text) or text[i] != "/":
                    raise SipParseError("malformed Via sent-protocol")
                i = _skip_ws(text, i + 1)
        name, version, transport = parts
        semi = text.find(";", i)
        sent_by = re.sub(r"[ \t]*:[ \t]*", ":", (text[i:] if semi < 0 else text[i:semi]).strip(_WS))
        if not sent_by or " " in sent_by or "\t" in sent_by:
            raise SipParseError("malformed Via sent-by")
        host, port = split_hostport(sent_by, "Via sent-by")
        params = parse_params(text[semi:], "Via") if semi >= 0 else {}
        return cls(transport.upper(), host, port, params, f"{name.upper()}/{version}")

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"{self.protocol}/{self.transport} {self.host}{port}{format_params(self.params)}"

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def is_rfc3261_branch(self) -> bool:
        """The magic cookie of §8.1.1.7 marks a branch usable as a transaction id.

        The bare cookie ``z9hG4bK`` (RFC 4475 §3.2.1) is not unique, so it is treated like
        an RFC 2543 transaction.
        """
        branch = self.branch
        return branch is not None and branch.startswith("z9hG4bK") and len(branch) > 7

    @property
    def sent_by(self) -> tuple[str, int]:
        default = 5061 if self.transport in ("TLS", "WSS") else 5060
        return self.host, self.port if self.port is not None else default


@dataclass(slots=True)
class NameAddress:
    """A name-addr or addr-spec with header parameters: From, To, Contact, Route, … (§20.10)."""

    uri: Uri
    display_name: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str, *, what: str = "header") -> NameAddress:
        i = _skip_ws(text, 0)
        n = len(text)
        display: str | None = None
        if i < n and text[i] == '"':
            display, i = _read_quoted(text, i, what)
            i = _skip_ws(text, i)
            if i >= n or text[i] != "<":
                raise SipParseError(f"quoted display name in {what} not followed by <URI>")
        lt = text.find("<", i)
        if (i < n and text[i] == "<") or (lt >= 0 and display is None and _only_tokens(text[i:lt])):
            if display is None and lt > i:
                display = " ".join(text[i:lt].split())
            start = lt if text[i] != "<" else i
            end = text.find(">", start)
            if end < 0:
                raise SipParseError(f"missing '>' in {what}")
            inner = text[start + 1 : end]
            if not inner or inner != inner.strip(" \t"):
                raise SipParseError(f"whitespace inside <> in {what}")
            uri = parse_uri(inner)
            rest = text[end + 1 :]
        elif lt >= 0:
            raise SipParseError(f"display name in {what} must be a quoted string or tokens")
        else:
            # addr-spec form: §20 says a URI holding ',', '?' or ';' must be in <>, so the
            # URI ends at the first ';' and may not contain '?' (RFC 4475 §3.1.2.13).
            semi = text.find(";", i)
            spec = (text[i:] if semi < 0 else text[i:semi]).strip(_WS)
            if not spec or "?" in spec or "," in spec:
                raise SipParseError(f"URI in {what} with '?' or ',' must be enclosed in <>")
            uri = parse_uri(spec)
            rest = text[semi:] if semi >= 0 else ""
        params = parse_params(rest, what)
        return cls(uri, display, params)

    def __str__(self) -> str:
        if self.display_name is not None and self.display_name != "":
            if is_token(self.display_name.replace(" ", "")) and " " not in self.display_name:
                name = self.display_name + " "
            else:
                escaped = self.display_name.replace("\\", "\\\\").replace('"', '\\"')
                name = f'"{escaped}" '
        else:
            name = ""
        return f"{name}<{self.uri}>{format_params(self.params)}"

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    @property
    def sip_uri(self) -> SipUri:
        if not isinstance(self.uri, SipUri):
            raise SipParseError("a sip: or sips: URI is required here", 416)
        return self.uri


def _only_tokens(text: str) -> bool:
    """Display name as ``*(token LWS)`` (§25.1); RFC 4475 §3.1.2.15 refuses commas in it."""
    words = text.split()
    return all(is_token(w) for w in words)


@dataclass(slots=True, frozen=True)
class CSeq:
    """CSeq (§20.16): the sequence number must be below 2**31 (§8.1.1.5)."""

    number: int
    method: str

    @classmethod
    def parse(cls, text: str) -> CSeq:
        parts = text.split()
        if len(parts) != 2 or not parts[0].isdigit() or not parts[0].isascii():
            raise SipParseError("malformed CSeq")
        if len(parts[0]) > 10 or int(parts[0]) >= 2**31:
            raise SipParseError("CSeq number too large")
        if not is_token(parts[1]):
            raise SipParseError("malformed CSeq method")
        return cls(int(parts[0]), parts[1])

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


def parse_contacts(values: list[str]) -> list[NameAddress] | None:
    """Parse Contact values; ``None`` means the single wildcard ``*`` (§10.2.2)."""
    items = [item for value in values for item in split_list(value, what="Contact")]
    if any(item == "*" for item in items):
        if len(items) != 1:
            raise SipParseError("Contact '*' must be the only contact")
        return None
    return [NameAddress.parse(item, what="Contact") for item in items]


def iter_tokens(values: list[str]) -> Iterator[str]:
    """Tokens of list headers such as Require or Supported, lower-case."""
    for value in values:
        for item in split_list(value, allow_empty=True):
            yield item.lower()
