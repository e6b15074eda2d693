"""SIP, SIPS and tel URIs (RFC 3261 §19.1, §25.1; RFC 3966), plus any other absolute URI.

Why our own: the URI grammar decides the outcome of several RFC 4475 torture tests (user
parts holding ``;``, ``?`` and ``,``; escaped nulls; headers in a Request-URI; spaces), and
a lax parser turns those into wrong routing instead of a clean 400.

Escapes (``%41``) are decoded in :attr:`SipUri.user` and re-escaped on output, which keeps
the URI equivalent under the comparison rules of §19.1.4 while letting call logic compare
plain strings such as ``"1001"``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import quote, unquote_to_bytes

from tsunagu.sip.errors import SipParseError

# RFC 3261 §25.1 character classes.
_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_MARK = "-_.!~*'()"
_UNRESERVED = _ALNUM + _MARK
_USER_SAFE = _UNRESERVED + "&=+$,;?/"  # unreserved / user-unreserved
_PASSWORD_SAFE = _UNRESERVED + "&=+$,"
_PARAM_SAFE = _UNRESERVED + "[]/:&+$"  # paramchar
_HEADER_SAFE = _UNRESERVED + "[]/?:+$"  # hnv-unreserved

_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
_HOSTNAME_RE = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.?"
)
_IPV4_RE = re.compile(
    r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}"
)
_IPV6_RE = re.compile(r"\[[0-9A-Fa-f:.]+\]")
_ESCAPED_OK_RE = re.compile(r"(?:%[0-9A-Fa-f]{2}|[^%])*")
_FORBIDDEN_RE = re.compile(r'[ \t\r\n<>"]')
_TEL_NUMBER_RE = re.compile(r"\+?[0-9A-Fa-f*#\-.()]+")


def _unescape(text: str, what: str) -> str:
    """Decode ``%HH`` escapes; a ``%`` not followed by two hex digits is a 400 (§25.1)."""
    if "%" not in text:
        return text
    if not _ESCAPED_OK_RE.fullmatch(text):
        raise SipParseError(f"invalid %-escape in URI {what}")
    return unquote_to_bytes(text).decode("utf-8", errors="surrogateescape")


def _escape(text: str, safe: str) -> str:
    return quote(text, safe=safe, encoding="utf-8", errors="surrogateescape")


def valid_host(host: str) -> bool:
    """True for a hostname, an IPv4 address or a bracketed IPv6 reference (§25.1 ``host``)."""
    return bool(
        _IPV4_RE.fullmatch(host) or _IPV6_RE.fullmatch(host) or _HOSTNAME_RE.fullmatch(host)
    )


def split_hostport(text: str, what: str) -> tuple[str, int | None]:
    """Split ``host[:port]`` (§25.1 ``hostport``); raises :class:`SipParseError` if invalid."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SipParseError(f"unterminated IPv6 reference in {what}")
        host, rest = text[: end + 1], text[end + 1 :]
    else:
        host, sep, port_text = text.partition(":")
        rest = sep + port_text
    if not valid_host(host):
        raise SipParseError(f"invalid host {host!r} in {what}")
    if not rest:
        return host, None
    if not rest.startswith(":") or not rest[1:].isdigit() or not rest[1:].isascii():
        raise SipParseError(f"invalid port in {what}")
    port = int(rest[1:])
    if not 0 < port < 65536:
        raise SipParseError(f"port out of range in {what}")
    return host, port


def _parse_params(text: str, what: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for item in text.split(";"):
        if not item:
            raise SipParseError(f"empty parameter in {what}")
        name, eq, value = item.partition("=")
        if not name:
            raise SipParseError(f"parameter without a name in {what}")
        params[_unescape(name, what).lower()] = _unescape(value, what) if eq else None
    return params


@dataclass(slots=True)
class SipUri:
    """A ``sip:`` or ``sips:`` URI.

    ``user`` and ``password`` are unescaped; ``params`` keys are lower-case.
    """

    host: str
    user: str | None = None
    port: int | None = None
    scheme: str = "sip"
    password: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> SipUri:
        scheme, colon, rest = text.partition(":")
        scheme = scheme.lower()
        if not colon or scheme not in ("sip", "sips"):
            raise SipParseError("not a sip or sips URI")
        if not rest or any(c in rest for c in ' \t\r\n<>"'):
            raise SipParseError('whitespace or <>" inside a SIP URI')
        user: str | None = None
        password: str | None = None
        at = rest.rfind("@")
        if at >= 0:
            userinfo, rest = rest[:at], rest[at + 1 :]
            user_text, colon, password_text = userinfo.partition(":")
            if not user_text:
                raise SipParseError("empty user part before '@' in SIP URI")
            user = _unescape(user_text, "user part")
            password = _unescape(password_text, "password") if colon else None
        rest, qmark, header_text = rest.partition("?")
        hostport, semi, param_text = rest.partition(";")
        host, port = split_hostport(hostport, "SIP URI")
        params = _parse_params(param_text, "SIP URI") if semi else {}
        headers: dict[str, str] = {}
        if qmark:
            for item in header_text.split("&"):
                name, eq, value = item.partition("=")
                if not name or not eq:
                    raise SipParseError("malformed header in SIP URI")
                headers[_unescape(name, "URI header")] = _unescape(value, "URI header")
        return cls(host, user, port, scheme, password, params, headers)

    def __str__(self) -> str:
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(_escape(self.user, _USER_SAFE))
            if self.password is not None:
                out += [":", _escape(self.password, _PASSWORD_SAFE)]
            out.append("@")
        out.append(self.host)
        if self.port is not None:
            out += [":", str(self.port)]
        for name, value in self.params.items():
            out += [";", _escape(name, _PARAM_SAFE)]
            if value is not None:
                out += ["=", _escape(value, _PARAM_SAFE)]
        if self.headers:
            out.append("?")
            out.append(
                "&".join(
                    f"{_escape(k, _HEADER_SAFE)}={_escape(v, _HEADER_SAFE)}"
                    for k, v in self.headers.items()
                )
            )
        return "".join(out)

    @property
    def transport(self) -> str:
        """The ``transport`` parameter, upper-case; UDP when absent (§19.1.1)."""
        value = self.params.get("transport")
        return value.upper() if value else "UDP"

    def address_of_record(self) -> str:
        """The canonical AOR key ``sip:user@host`` used by the registrar (§10.3 step 5)."""
        user = f"{_escape(self.user, _USER_SAFE)}@" if self.user is not None else ""
        return f"{self.scheme}:{user}{self.host.lower()}"

    def copy(self) -> SipUri:
        return SipUri(
            self.host,
            self.user,
            self.port,
            self.scheme,
            self.password,
            dict(self.params),
            dict(self.headers),
        )


@dataclass(slots=True)
class TelUri:
    """A ``tel:`` URI (RFC 3966): a global (``+81…``) or local number with parameters."""

    number: str
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> TelUri:
        scheme, colon, rest = text.partition(":")
        if not colon or scheme.lower() != "tel":
            raise SipParseError("not a tel URI")
        number, semi, param_text = rest.partition(";")
        if not _TEL_NUMBER_RE.fullmatch(number):
            raise SipParseError("invalid number in tel URI")
        return cls(number, _parse_params(param_text, "tel URI") if semi else {})

    def __str__(self) -> str:
        params = "".join(f";{k}" + ("" if v is None else f"={v}") for k, v in self.params.items())
        return f"tel:{self.number}{params}"


@dataclass(slots=True)
class AbsoluteUri:
    """Any other scheme (``http:``, ``isbn:``, ``soap.beep:`` …), kept opaque.

    RFC 3261 §19 and RFC 4475 §3.3.4: unknown schemes in header fields are processed normally.
    """

    scheme: str
    rest: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.rest}"


Uri = SipUri | TelUri | AbsoluteUri


def parse_uri(text: str) -> Uri:
    """Parse any absolute URI; SIP, SIPS and tel are understood, others kept opaque."""
    scheme, colon, rest = text.partition(":")
    if not colon or not _SCHEME_RE.fullmatch(scheme):
        raise SipParseError("URI without a valid scheme")
    lowered = scheme.lower()
    if lowered in ("sip", "sips"):
        return SipUri.parse(text)
    if lowered == "tel":
        return TelUri.parse(text)
    if not rest or any(c in rest for c in ' \t\r\n<>"'):
        raise SipParseError(f"invalid {scheme}: URI")
    return AbsoluteUri(scheme, rest)
