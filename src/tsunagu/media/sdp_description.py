"""SDP session descriptions (RFC 4566, updated by RFC 8866): the wire types.

An SDP body and its lines as values: :class:`SessionDescription` (``parse()`` /
``__bytes__``), :class:`MediaDescription`, :class:`Origin`, :class:`Connection`,
:class:`Attribute`, :class:`RtpMap` and :class:`Direction`. Parsing is strict where a
mistake would send audio to the wrong place (ports, addresses, the line grammar of
RFC 4566 §5) and keeps every attribute, in order, so a description survives a
parse/serialise round trip. Errors: :class:`SdpParseError` (a malformed body; answer 400).

Why the split is here: this module knows what a description *says* and nothing of what
we *want*; :mod:`tsunagu.media.sdp` holds the offer/answer model (RFC 3264: which codec,
which direction, hold, answer building) that is built on these types. The grammar is
stable and large, the negotiation is where call behaviour changes; apart, each stays
small enough to review. Every public name here is re-exported by
:mod:`tsunagu.media.sdp`, which is what callers import.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum

from tsunagu.media.rtp import MediaParseError

__all__ = [
    "Attribute",
    "Connection",
    "Direction",
    "MediaDescription",
    "Origin",
    "RtpMap",
    "SdpParseError",
    "SessionDescription",
]


class SdpParseError(MediaParseError):
    """An SDP body is malformed (RFC 4566 §5); a SIP layer answers 400."""


class Direction(StrEnum):
    """Media direction attributes (RFC 4566 §6, RFC 3264 §5.1), from the describer's side."""

    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    @property
    def sends(self) -> bool:
        return self in (Direction.SENDRECV, Direction.SENDONLY)

    @property
    def receives(self) -> bool:
        return self in (Direction.SENDRECV, Direction.RECVONLY)

    @classmethod
    def from_flags(cls, *, send: bool, receive: bool) -> Direction:
        if send:
            return cls.SENDRECV if receive else cls.SENDONLY
        return cls.RECVONLY if receive else cls.INACTIVE


_DIRECTIONS = frozenset(d.value for d in Direction)


def _uint(text: str, what: str, maximum: int | None = None) -> int:
    # str.isdigit() admits non-ASCII digits and int() admits "+1", " 1" and "1_0": be exact.
    if not text or not text.isascii() or not text.isdigit():
        raise SdpParseError(f"{what} {text!r} is not a number")
    value = int(text)
    if maximum is not None and value > maximum:
        raise SdpParseError(f"{what} {value} exceeds {maximum}")
    return value


@dataclass(slots=True)
class Origin:
    """The ``o=`` line (RFC 4566 §5.2): who made the session, and which version this is.

    RFC 3264 §8: a modified offer keeps every field but increments ``version`` by one.
    """

    username: str
    session_id: str
    version: int
    address: str
    network_type: str = "IN"
    address_type: str = "IP4"

    @classmethod
    def parse(cls, value: str) -> Origin:
        fields = value.split(" ")
        if len(fields) != 6 or not all(fields):
            raise SdpParseError(f"o= line {value!r} needs six space-separated fields")
        username, session_id, version, network_type, address_type, address = fields
        _uint(session_id, "o= session id")
        return cls(
            username, session_id, _uint(version, "o= version"), address, network_type, address_type
        )

    def __str__(self) -> str:
        return (
            f"{self.username} {self.session_id} {self.version} "
            f"{self.network_type} {self.address_type} {self.address}"
        )

    def next_version(self) -> Origin:
        """The origin of the next modified description of the same session (RFC 3264 §8)."""
        return replace(self, version=self.version + 1)

    def is_same_session(self, other: Origin) -> bool:
        """Whether ``other`` describes the same session (every field but the version)."""
        return replace(other, version=self.version) == self


@dataclass(slots=True)
class Connection:
    """A ``c=`` line (RFC 4566 §5.7): where media goes."""

    address: str
    network_type: str = "IN"
    address_type: str = "IP4"

    @classmethod
    def parse(cls, value: str) -> Connection:
        fields = value.split(" ")
        if len(fields) != 3 or not all(fields):
            raise SdpParseError(f"c= line {value!r} needs three space-separated fields")
        network_type, address_type, address = fields
        return cls(address, network_type, address_type)

    @classmethod
    def for_address(cls, address: str) -> Connection:
        return cls(address, "IN", "IP6" if ":" in address else "IP4")

    def __str__(self) -> str:
        return f"{self.network_type} {self.address_type} {self.address}"

    @property
    def host(self) -> str:
        """The address without a multicast TTL or count suffix."""
        return self.address.split("/", 1)[0]

    @property
    def is_hold(self) -> bool:
        """``c=0.0.0.0``: the RFC 2543 way of saying "do not send to me" (RFC 3264 §8.4)."""
        return self.host == "0.0.0.0"  # noqa: S104 - a protocol value, not a bind address


@dataclass(slots=True)
class Attribute:
    """An ``a=`` line (RFC 4566 §5.13): a property ``name`` or ``name:value``."""

    name: str
    value: str | None = None

    @classmethod
    def parse(cls, text: str) -> Attribute:
        name, colon, value = text.partition(":")
        if not name or " " in name:
            raise SdpParseError(f"a= line {text!r} has no attribute name")
        return cls(name, value if colon else None)

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"


def _direction(attributes: list[Attribute]) -> Direction | None:
    for attribute in attributes:
        if attribute.value is None and attribute.name in _DIRECTIONS:
            return Direction(attribute.name)
    return None


@dataclass(frozen=True, slots=True)
class RtpMap:
    """``a=rtpmap:<pt> <encoding>/<clock>[/<channels>]`` (RFC 4566 §6)."""

    payload_type: int
    encoding: str
    clock_rate: int
    channels: int | None = None

    @classmethod
    def parse(cls, value: str) -> RtpMap:
        payload_type, _, spec = value.partition(" ")
        parts = spec.strip().split("/")
        if len(parts) not in (2, 3) or not parts[0]:
            raise SdpParseError(f"a=rtpmap:{value} is not '<pt> <encoding>/<clock>'")
        channels = _uint(parts[2], "rtpmap channels") if len(parts) == 3 else None
        return cls(
            _uint(payload_type, "rtpmap payload type", 127),
            parts[0],
            _uint(parts[1], "rtpmap clock rate"),
            channels,
        )

    def __str__(self) -> str:
        tail = "" if self.channels is None else f"/{self.channels}"
        return f"{self.payload_type} {self.encoding}/{self.clock_rate}{tail}"

    @property
    def mono(self) -> bool:
        return self.channels in (None, 1)


# RFC 3551 §6 Table 4: static audio payload types, valid without an rtpmap.
_STATIC_AUDIO = {
    pt: RtpMap(pt, name, rate, channels)
    for pt, name, rate, channels in (
        (0, "PCMU", 8000, None), (3, "GSM", 8000, None), (4, "G723", 8000, None),
        (5, "DVI4", 8000, None), (6, "DVI4", 16000, None), (7, "LPC", 8000, None),
        (8, "PCMA", 8000, None), (9, "G722", 8000, None), (10, "L16", 44100, 2),
        (11, "L16", 44100, None), (12, "QCELP", 8000, None), (13, "CN", 8000, None),
        (14, "MPA", 90000, None), (15, "G728", 8000, None), (16, "DVI4", 11025, None),
        (17, "DVI4", 22050, None), (18, "G729", 8000, None),
    )
}  # fmt: skip


@dataclass(slots=True)
class MediaDescription:
    """One ``m=`` section (RFC 4566 §5.14) and its own lines."""

    media: str
    port: int
    proto: str
    formats: list[str]
    port_count: int | None = None
    title: str | None = None
    connection: Connection | None = None
    bandwidths: list[str] = field(default_factory=list)
    key: str | None = None
    attributes: list[Attribute] = field(default_factory=list)

    @classmethod
    def parse_line(cls, value: str) -> MediaDescription:
        fields = value.split(" ")
        if len(fields) < 3 or not all(fields):
            raise SdpParseError(f"m= line {value!r} needs '<media> <port> <proto> <fmt>...'")
        media, port_text, proto, *formats = fields
        port_text, slash, count_text = port_text.partition("/")
        port = _uint(port_text, "m= port", 65535)
        count = _uint(count_text, "m= port count") if slash else None
        return cls(media, port, proto, formats, count)

    def media_line(self) -> str:
        port = str(self.port) if self.port_count is None else f"{self.port}/{self.port_count}"
        return " ".join([self.media, port, self.proto, *self.formats])

    def attribute(self, name: str) -> str | None:
        """The value of the first ``a=name:value`` (``""`` for a flag); None if absent."""
        for attribute in self.attributes:
            if attribute.name == name:
                return "" if attribute.value is None else attribute.value
        return None

    @property
    def direction(self) -> Direction | None:
        """This section's own direction attribute, if it has one."""
        return _direction(self.attributes)

    def payload_types(self) -> list[int]:
        """The formats as RTP payload types (RFC 4566 §5.14); SdpParseError if not numbers."""
        return [_uint(fmt, "RTP payload type", 127) for fmt in self.formats]

    def rtpmap(self, payload_type: int) -> RtpMap | None:
        """The encoding of ``payload_type``: its ``a=rtpmap``, else the static table."""
        prefix = f"{payload_type} "
        for attribute in self.attributes:
            if attribute.name == "rtpmap" and (attribute.value or "").startswith(prefix):
                return RtpMap.parse(attribute.value or "")
        return _STATIC_AUDIO.get(payload_type) if self.media == "audio" else None

    def fmtp(self, payload_type: int) -> str | None:
        """The format parameters of ``payload_type`` (``a=fmtp:<pt> <params>``)."""
        prefix = f"{payload_type} "
        for attribute in self.attributes:
            if attribute.name == "fmtp" and (attribute.value or "").startswith(prefix):
                return (attribute.value or "")[len(prefix) :].strip()
        return None

    def _milliseconds(self, name: str) -> int | None:
        value = self.attribute(name)
        if value is None:
            return None
        # RFC 4566 §6 allows a decimal ptime ("20.0"); we packetise in whole milliseconds.
        whole, _, fraction = value.strip().partition(".")
        if fraction and not (fraction.isascii() and fraction.isdigit()):
            raise SdpParseError(f"a={name}:{value} is not a number")
        return _uint(whole, f"a={name}")

    @property
    def ptime(self) -> int | None:
        """``a=ptime`` in milliseconds (RFC 4566 §6)."""
        return self._milliseconds("ptime")

    @property
    def maxptime(self) -> int | None:
        """``a=maxptime`` in milliseconds (RFC 4566 §6)."""
        return self._milliseconds("maxptime")

    @property
    def rtcp_port(self) -> int | None:
        """``a=rtcp:<port>`` (RFC 3605), when RTCP is not on the RTP port plus one."""
        value = self.attribute("rtcp")
        if value is None:
            return None
        return _uint(value.split(" ", 1)[0], "a=rtcp port", 65535)

    def lines(self) -> Iterable[str]:
        yield f"m={self.media_line()}"
        if self.title is not None:
            yield f"i={self.title}"
        if self.connection is not None:
            yield f"c={self.connection}"
        for bandwidth in self.bandwidths:
            yield f"b={bandwidth}"
        if self.key is not None:
            yield f"k={self.key}"
        for attribute in self.attributes:
            yield f"a={attribute}"


_SESSION_LETTERS = set("vosiuepcbtrzkam")
_MEDIA_LETTERS = set("icbka")


@dataclass(slots=True)
class SessionDescription:
    """A whole SDP body (RFC 4566 §5): session-level lines, then media sections.

    Lines this module does not interpret (``u=``, ``e=``, ``t=``/``r=``, ``z=``, ``k=``)
    are kept verbatim; ``timing`` holds the ``t=`` and ``r=`` lines in order as
    (letter, value) pairs.
    """

    origin: Origin
    session_name: str = "-"
    version: int = 0
    information: str | None = None
    uri: str | None = None
    emails: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    connection: Connection | None = None
    bandwidths: list[str] = field(default_factory=list)
    timing: list[tuple[str, str]] = field(default_factory=lambda: [("t", "0 0")])
    zone: str | None = None
    key: str | None = None
    attributes: list[Attribute] = field(default_factory=list)
    media: list[MediaDescription] = field(default_factory=list)

    @classmethod
    def parse(cls, data: str | bytes) -> SessionDescription:
        """Parse an SDP body; raise :class:`SdpParseError` for anything malformed."""
        if isinstance(data, bytes | bytearray | memoryview):
            try:
                text = bytes(data).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise SdpParseError(f"SDP is not UTF-8 (RFC 4566 §5): {exc}") from exc
        else:
            text = data
        return _parse(text)

    def lines(self) -> Iterable[str]:
        # RFC 4566 §5 fixes this order.
        yield f"v={self.version}"
        yield f"o={self.origin}"
        yield f"s={self.session_name}"
        if self.information is not None:
            yield f"i={self.information}"
        if self.uri is not None:
            yield f"u={self.uri}"
        yield from (f"e={email}" for email in self.emails)
        yield from (f"p={phone}" for phone in self.phones)
        if self.connection is not None:
            yield f"c={self.connection}"
        yield from (f"b={bandwidth}" for bandwidth in self.bandwidths)
        yield from (f"{letter}={value}" for letter, value in self.timing)
        if self.zone is not None:
            yield f"z={self.zone}"
        if self.key is not None:
            yield f"k={self.key}"
        yield from (f"a={attribute}" for attribute in self.attributes)
        for media in self.media:
            yield from media.lines()

    def __str__(self) -> str:
        return "".join(f"{line}\r\n" for line in self.lines())

    def __bytes__(self) -> bytes:
        return str(self).encode("utf-8", "surrogateescape")

    @property
    def direction(self) -> Direction | None:
        """The session-level direction attribute, if any."""
        return _direction(self.attributes)

    def effective_direction(self, media: MediaDescription) -> Direction:
        """Media-level direction, else session-level, else sendrecv (RFC 3264 §5.1)."""
        return media.direction or self.direction or Direction.SENDRECV

    def effective_connection(self, media: MediaDescription) -> Connection | None:
        """Media-level ``c=``, else the session-level one (RFC 4566 §5.7)."""
        return media.connection or self.connection


def _parse(text: str) -> SessionDescription:
    lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
    entries: list[tuple[str, str]] = []
    for number, line in enumerate(lines, 1):
        if not line:
            continue  # tolerate blank lines, e.g. a trailing empty line
        if len(line) < 2 or line[1] != "=" or not ("a" <= line[0] <= "z"):
            raise SdpParseError(f"SDP line {number} {line[:40]!r} is not '<type>=<value>'")
        if "\r" in line or "\x00" in line:
            raise SdpParseError(f"SDP line {number} contains a CR or NUL character")
        entries.append((line[0], line[2:]))
    if not entries or entries[0][0] != "v":
        raise SdpParseError("SDP must start with a v= line (RFC 4566 §5)")
    if entries[0][1] != "0":
        raise SdpParseError(f"SDP version {entries[0][1]!r}, expected 0")
    session: dict[str, str] = {}
    origin: Origin | None = None
    emails: list[str] = []
    phones: list[str] = []
    bandwidths: list[str] = []
    timing: list[tuple[str, str]] = []
    attributes: list[Attribute] = []
    media: list[MediaDescription] = []
    current: MediaDescription | None = None
    for letter, value in entries[1:]:
        if letter == "m":
            current = MediaDescription.parse_line(value)
            media.append(current)
        elif current is not None:
            _media_line(current, letter, value)
        elif letter not in _SESSION_LETTERS or letter == "v":
            # RFC 4566 §5: a description with a type letter we do not understand is ignored
            # as a whole; for a SIP body that means refusing it.
            raise SdpParseError(f"unexpected SDP line type {letter}= at session level")
        elif letter == "o":
            if origin is not None:
                raise SdpParseError("SDP has more than one o= line")
            origin = Origin.parse(value)
        elif letter == "a":
            attributes.append(Attribute.parse(value))
        elif letter == "e":
            emails.append(value)
        elif letter == "p":
            phones.append(value)
        elif letter == "b":
            bandwidths.append(value)
        elif letter in "tr":
            if letter == "r" and not timing:
                raise SdpParseError("SDP r= line without a preceding t= line")
            timing.append((letter, value))
        else:
            if letter in session:
                raise SdpParseError(f"SDP has more than one session-level {letter}= line")
            session[letter] = value
    if origin is None:
        raise SdpParseError("SDP has no o= line (RFC 4566 §5.2)")
    if "s" not in session:
        raise SdpParseError("SDP has no s= line (RFC 4566 §5.3)")
    connection = Connection.parse(session["c"]) if "c" in session else None
    return SessionDescription(
        origin=origin,
        session_name=session["s"],
        information=session.get("i"),
        uri=session.get("u"),
        emails=emails,
        phones=phones,
        connection=connection,
        bandwidths=bandwidths,
        timing=timing,
        zone=session.get("z"),
        key=session.get("k"),
        attributes=attributes,
        media=media,
    )


def _media_line(media: MediaDescription, letter: str, value: str) -> None:
    if letter not in _MEDIA_LETTERS:
        raise SdpParseError(f"unexpected SDP line type {letter}= inside m={media.media}")
    if letter == "a":
        media.attributes.append(Attribute.parse(value))
    elif letter == "b":
        media.bandwidths.append(value)
    elif letter == "c":
        if media.connection is not None:
            raise SdpParseError(f"m={media.media} has more than one c= line")
        media.connection = Connection.parse(value)
    elif letter == "i":
        if media.title is not None:
            raise SdpParseError(f"m={media.media} has more than one i= line")
        media.title = value
    else:  # "k"
        if media.key is not None:
            raise SdpParseError(f"m={media.media} has more than one k= line")
        media.key = value
