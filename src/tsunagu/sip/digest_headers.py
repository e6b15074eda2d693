"""SIP digest header values: the Authorization and WWW-Authenticate wire types.

SIP reuses HTTP digest (RFC 3261 §22.4) and RFC 8760 brings it up to RFC 7616 (SHA-256,
several challenges in preference order). This module is the wire half: the grammar of
one header *value* (``str``; RFC 3261 §25.1 LWS, token, quoted-string, RFC 8187
``username*``) and the two types built on it, :class:`DigestCredentials`
(Authorization / Proxy-Authorization) and :class:`DigestChallenge` (WWW-Authenticate /
Proxy-Authenticate), each with ``parse()`` and ``__bytes__``, plus the errors a peer's
bad value raises and the algorithm names (RFC 7616 §3.2) both sides spell.

Why the split is here: parsing and serialising are pure functions of the text and change
when the RFC grammar does; :mod:`tsunagu.sip.digest` holds the policy (the response
hash, nonce minting and checking, replay and stale handling, no user enumeration) that
changes for security reasons. Keeping them apart lets each be read and reviewed alone.
Everything public here is re-exported by :mod:`tsunagu.sip.digest`, which callers use.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, unquote_to_bytes

__all__ = [
    "SUPPORTED_ALGORITHMS",
    "DigestChallenge",
    "DigestCredentials",
    "DigestError",
    "DigestSyntaxError",
    "NotDigestError",
    "UnsupportedChallengeError",
    "parse_challenge",
    "parse_credentials",
]


# --------------------------------------------------------------------------- errors


class DigestError(Exception):
    """The peer sent something we cannot use (peer's fault; never a bug of ours)."""


class DigestSyntaxError(DigestError, ValueError):
    """A header value is not a well-formed credentials/challenge value.

    A server answers such a request with a fresh challenge (or 400); it must never crash.
    """


class NotDigestError(DigestSyntaxError):
    """The value is well enough formed to name its scheme, and the scheme is not Digest.

    RFC 4475 §3.3.7 (regaut01) sends ``NoOneKnowsThisScheme opaque-data=here``: the
    server ignores such credentials and challenges with Digest.
    """

    def __init__(self, scheme: str) -> None:
        super().__init__(f"authentication scheme {scheme!r} is not Digest")
        self.scheme = scheme


class UnsupportedChallengeError(DigestError):
    """A well-formed challenge that we cannot answer (unknown algorithm, only auth-int)."""


# --------------------------------------------------------------------------- algorithms

_HASHES: Final = {
    "MD5": hashlib.md5,  # RFC 2617; still what most SIP phones speak (RFC 8760 §2.4)
    "SHA-256": hashlib.sha256,  # RFC 7616 §3.2 / RFC 8760 §2.2
}
_CANONICAL: Final[dict[str, str]] = {
    name.lower(): name for base in _HASHES for name in (base, f"{base}-sess")
}
#: Algorithm names this module can compute, in the spelling of RFC 7616 §3.2.
SUPPORTED_ALGORITHMS: Final[tuple[str, ...]] = tuple(_CANONICAL.values())


def _canonical_algorithm(name: str) -> str:
    """The RFC spelling of a known algorithm (names compare case-insensitively), else as is."""
    return _CANONICAL.get(name.lower(), name)


# --------------------------------------------------------------------------- header syntax

# RFC 3261 §25.1 token characters, plus the few more that RFC 7230 tchar allows, so an
# HTTP-minded client is not refused for a '#' or '|' in an unquoted value.
_TOKEN_CHARS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~#$&^|"
)
_HEX_DIGITS: Final = frozenset("0123456789abcdefABCDEF")


def _is_ctl(ch: str) -> bool:
    """Control characters have no place in a header value once folding is undone."""
    code = ord(ch)
    return (code < 0x20 and ch != "\t") or code == 0x7F


class _Scanner:
    """A cursor over one header value (RFC 3261 §25.1 LWS, token, quoted-string)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_lws(self) -> bool:
        """Skip LWS (SP/HT, and a CRLF or LF fold followed by SP/HT); True if any."""
        start = self.pos
        text = self.text
        while self.pos < len(text):
            ch = text[self.pos]
            if ch in " \t":
                self.pos += 1
                continue
            fold = 2 if text.startswith("\r\n", self.pos) else 1 if ch == "\n" else 0
            if fold and self.pos + fold < len(text) and text[self.pos + fold] in " \t":
                self.pos += fold
                continue
            break
        return self.pos > start

    def token(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _TOKEN_CHARS:
            self.pos += 1
        if self.pos == start:
            raise DigestSyntaxError(f"expected a token at offset {start}")
        return self.text[start : self.pos]

    def quoted_string(self) -> str:
        """RFC 3261 §25.1 quoted-string with quoted-pair; returns the unescaped content.

        The common case (no backslash, no control character) is one regex match; the
        character loop only runs for values that need the careful path.
        """
        assert self.peek() == '"'
        plain = _PLAIN_QUOTED.match(self.text, self.pos)
        if plain is not None:
            self.pos = plain.end()
            return plain.group(1)
        self.pos += 1
        out: list[str] = []
        text = self.text
        while self.pos < len(text):
            ch = text[self.pos]
            self.pos += 1
            if ch == '"':
                return "".join(out)
            if ch == "\\":
                if self.pos >= len(text):
                    break
                escaped = text[self.pos]
                if escaped in "\r\n":  # quoted-pair excludes CR and LF
                    raise DigestSyntaxError("CR or LF escaped in a quoted string")
                out.append(escaped)
                self.pos += 1
                continue
            if _is_ctl(ch):
                raise DigestSyntaxError("control character in a quoted string")
            out.append(ch)
        raise DigestSyntaxError("unterminated quoted string")


#: A quoted-string holding neither a backslash nor a control character (HT is allowed).
_PLAIN_QUOTED: Final = re.compile(r'"([^"\\\x00-\x08\x0a-\x1f\x7f]*)"')


def _parse_auth_value(value: str) -> tuple[str, list[tuple[str, str, bool]]]:
    """Split ``scheme param=value, ...`` (RFC 3261 §25.1 credentials / challenge).

    Returns the scheme and ``(lowercase name, value, was_quoted)`` in order. A non-Digest
    scheme raises :class:`NotDigestError` without looking at the rest, because other
    schemes have their own syntax (``token68`` in HTTP).
    """
    scan = _Scanner(value)
    scan.skip_lws()
    scheme = scan.token()
    if scheme.lower() != "digest":
        raise NotDigestError(scheme)
    if not scan.skip_lws():
        raise DigestSyntaxError("Digest must be followed by whitespace and parameters")
    params: list[tuple[str, str, bool]] = []
    seen: set[str] = set()
    while True:
        scan.skip_lws()
        if scan.at_end():
            break
        if scan.peek() == ",":  # empty list elements are tolerated (RFC 7230 §7)
            scan.pos += 1
            continue
        name = scan.token().lower()
        scan.skip_lws()
        if scan.peek() != "=":
            raise DigestSyntaxError(f"parameter {name!r} has no '='")
        scan.pos += 1
        scan.skip_lws()
        quoted = scan.peek() == '"'
        item = scan.quoted_string() if quoted else scan.token()
        if name in seen:
            # Two values for one parameter would let client and server disagree on
            # which counts; RFC 7616 §3.4 lists each parameter once.
            raise DigestSyntaxError(f"parameter {name!r} appears twice")
        seen.add(name)
        params.append((name, item, quoted))
        scan.skip_lws()
        if scan.at_end():
            break
        if scan.peek() != ",":
            raise DigestSyntaxError(f"expected ',' after parameter {name!r}")
        scan.pos += 1
    if not params:
        raise DigestSyntaxError("Digest without parameters")
    return scheme, params


def _quote(text: str) -> str:
    """Serialise as a quoted-string; CR, LF and other controls cannot be sent (our fault)."""
    if any(_is_ctl(ch) for ch in text):
        raise ValueError("control characters cannot appear in a quoted string")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _token(text: str) -> str:
    if not text or any(ch not in _TOKEN_CHARS for ch in text):
        raise ValueError(f"{text!r} is not a token")
    return text


def _token_or_quoted(text: str) -> str:
    """Tokens as the RFCs write them (``algorithm=MD5``); anything else quoted, so a
    parsed value with an odd (quoted) algorithm still serialises and parses back."""
    if text and all(ch in _TOKEN_CHARS for ch in text):
        return text
    return _quote(text)


def _decode_ext_value(value: str) -> str:
    """RFC 8187/5987 ``charset'lang'pct-encoded`` (RFC 7616 §3.4.4 ``username*``)."""
    parts = value.split("'", 2)
    if len(parts) != 3:
        raise DigestSyntaxError("username* is not charset'language'value")
    charset = parts[0].lower()
    if charset not in ("utf-8", "iso-8859-1"):
        raise DigestSyntaxError("username* charset must be UTF-8 or ISO-8859-1")
    raw = parts[2]
    if not raw.isascii():
        raise DigestSyntaxError("username* value must be percent-encoded ASCII")
    try:
        return unquote_to_bytes(raw).decode(charset)
    except UnicodeDecodeError as exc:
        raise DigestSyntaxError("username* does not decode in its charset") from exc


# --------------------------------------------------------------------------- wire types

_CREDENTIAL_FIELDS: Final = frozenset(
    {"username", "username*", "realm", "nonce", "uri", "response", "algorithm"}
    | {"cnonce", "opaque", "qop", "nc", "userhash"}
)


@dataclass(frozen=True, slots=True)
class DigestCredentials:
    """An Authorization / Proxy-Authorization value (RFC 3261 §22.4, RFC 7616 §3.4).

    ``nc`` is kept as sent (8 hex digits) because the response hashes that exact text;
    :attr:`nonce_count` is its value. ``extra`` keeps unknown parameters in order
    (RFC 3261 §25.1 ``auth-param``), names lower-cased, values unquoted.
    """

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str = "MD5"
    qop: str | None = None
    nc: str | None = None
    cnonce: str | None = None
    opaque: str | None = None
    userhash: bool = False
    extra: tuple[tuple[str, str], ...] = ()

    @property
    def nonce_count(self) -> int | None:
        return int(self.nc, 16) if self.nc is not None else None

    @classmethod
    def parse(cls, value: str) -> DigestCredentials:
        """Parse one header value; :class:`DigestSyntaxError` / :class:`NotDigestError`."""
        _, params = _parse_auth_value(value)
        known = {name: item for name, item, _ in params if name in _CREDENTIAL_FIELDS}
        extra = tuple((name, item) for name, item, _ in params if name not in _CREDENTIAL_FIELDS)
        if "username*" in known:
            if "username" in known:
                raise DigestSyntaxError("both username and username* given")
            known["username"] = _decode_ext_value(known["username*"])
        missing = [f for f in ("username", "realm", "nonce", "uri", "response") if f not in known]
        if missing:
            raise DigestSyntaxError(f"credentials lack {', '.join(missing)}")
        qop = known.get("qop")
        nc = known.get("nc")
        cnonce = known.get("cnonce")
        if qop is not None:
            qop = qop.lower()
            # RFC 7616 §3.4: cnonce and nc MUST be sent with qop.
            if nc is None or cnonce is None:
                raise DigestSyntaxError("qop given without nc and cnonce")
        if nc is not None and (len(nc) != 8 or not set(nc) <= _HEX_DIGITS):
            raise DigestSyntaxError("nc must be 8 hexadecimal digits (RFC 7616 §3.4)")
        return cls(
            username=known["username"],
            realm=known["realm"],
            nonce=known["nonce"],
            uri=known["uri"],
            response=known["response"],
            algorithm=_canonical_algorithm(known.get("algorithm", "MD5")),
            qop=qop,
            nc=nc,
            cnonce=cnonce,
            opaque=known.get("opaque"),
            userhash=known.get("userhash", "false").lower() == "true",
            extra=extra,
        )

    def __str__(self) -> str:
        if self.username.isascii() or self.userhash:
            parts = [f"username={_quote(self.username)}"]
        else:  # RFC 7616 §3.4.4: non-ASCII names travel as username*
            parts = [f"username*=UTF-8''{quote(self.username, safe='')}"]
        parts += [
            f"realm={_quote(self.realm)}",
            f"nonce={_quote(self.nonce)}",
            f"uri={_quote(self.uri)}",
            f"response={_quote(self.response)}",
            f"algorithm={_token_or_quoted(self.algorithm)}",
        ]
        if self.cnonce is not None:
            parts.append(f"cnonce={_quote(self.cnonce)}")
        if self.opaque is not None:
            parts.append(f"opaque={_quote(self.opaque)}")
        if self.qop is not None:
            parts.append(f"qop={_token_or_quoted(self.qop)}")
        if self.nc is not None:
            parts.append(f"nc={_token(self.nc)}")
        if self.userhash:
            parts.append("userhash=true")
        parts += [f"{_token(name)}={_quote(item)}" for name, item in self.extra]
        return "Digest " + ", ".join(parts)

    def __bytes__(self) -> bytes:
        return str(self).encode("utf-8")


@dataclass(frozen=True, slots=True)
class DigestChallenge:
    """A WWW-Authenticate / Proxy-Authenticate value (RFC 3261 §22.4, RFC 7616 §3.3)."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False
    domain: str | None = None
    userhash: bool = False
    extra: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, value: str) -> DigestChallenge:
        _, params = _parse_auth_value(value)
        fields = {"realm", "nonce", "algorithm", "qop", "opaque", "stale", "domain", "userhash"}
        known = {name: item for name, item, _ in params if name in fields}
        extra = tuple((name, item) for name, item, _ in params if name not in fields)
        for required in ("realm", "nonce"):
            if required not in known:
                raise DigestSyntaxError(f"challenge lacks {required}")
        qop_text = known.get("qop")
        qop = tuple(part.strip().lower() for part in (qop_text or "").split(",") if part.strip())
        return cls(
            realm=known["realm"],
            nonce=known["nonce"],
            algorithm=_canonical_algorithm(known.get("algorithm", "MD5")),
            qop=qop,
            opaque=known.get("opaque"),
            stale=known.get("stale", "false").lower() == "true",
            domain=known.get("domain"),
            userhash=known.get("userhash", "false").lower() == "true",
            extra=extra,
        )

    def __str__(self) -> str:
        parts = [f"realm={_quote(self.realm)}"]
        if self.domain is not None:
            parts.append(f"domain={_quote(self.domain)}")
        parts.append(f"nonce={_quote(self.nonce)}")
        if self.opaque is not None:
            parts.append(f"opaque={_quote(self.opaque)}")
        if self.stale:
            parts.append("stale=true")
        parts.append(f"algorithm={_token_or_quoted(self.algorithm)}")
        if self.qop:
            parts.append(f"qop={_quote(','.join(self.qop))}")
        if self.userhash:
            parts.append("userhash=true")
        parts += [f"{_token(name)}={_quote(item)}" for name, item in self.extra]
        return "Digest " + ", ".join(parts)

    def __bytes__(self) -> bytes:
        return str(self).encode("utf-8")


def parse_credentials(value: str) -> DigestCredentials:
    """Parse an Authorization / Proxy-Authorization value; see :meth:`DigestCredentials.parse`."""
    return DigestCredentials.parse(value)


def parse_challenge(value: str) -> DigestChallenge:
    """Parse a WWW-Authenticate / Proxy-Authenticate value."""
    return DigestChallenge.parse(value)
