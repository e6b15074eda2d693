"""The Replaces header (RFC 3891): which dialog a new call takes the place of.

Why it matters here: an attended (consult) transfer names the consultation dialog this
way. The transferor's phone sends REFER with ``Refer-To: <sip:B@…?Replaces=…>`` (RFC 5589
§7); the header travels URL-escaped inside the Refer-To URI (``;`` as ``%3B``, ``=`` as
``%3D``, RFC 3261 §19.1.1 ``hvalue``), which :class:`~tsunagu.sip.uri.SipUri` decodes into
its ``headers``. As a B2BUA we are the *recipient* of that Replaces — the consultation
dialog is one of our own legs — so the tags are read from our side: ``to-tag`` is our
local tag, ``from-tag`` the other party's (RFC 3891 §3: "the to-tag ... matches the local
tag"), whichever side sent the dialog's first INVITE.

Grammar (RFC 3891 §6.1)::

    Replaces        = "Replaces" HCOLON callid *(SEMI replaces-param)
    replaces-param  = to-tag / from-tag / early-flag / generic-param
    to-tag          = "to-tag" EQUAL token
    from-tag        = "from-tag" EQUAL token
    early-flag      = "early-only"

§3 requires exactly one ``to-tag`` and exactly one ``from-tag``; a header without them
names no dialog and is refused (400). Sans-IO: parse and render only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tsunagu.sip.dialog import DialogId
from tsunagu.sip.errors import SipParseError
from tsunagu.sip.uri import SipUri

# RFC 3261 §25.1: callid = word [ "@" word ]; token for the tags.
_WORD = r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+"
_CALLID_RE = re.compile(rf"{_WORD}(?:@{_WORD})?")
_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")


@dataclass(frozen=True, slots=True)
class Replaces:
    """One Replaces value: the dialog's Call-ID and tags, ``early_only`` (§6.1
    ``early-flag``: replace only a dialog that is not yet confirmed) and any other
    parameters, kept in order for rendering (lower-case names)."""

    call_id: str
    to_tag: str
    from_tag: str
    early_only: bool = False
    params: tuple[tuple[str, str | None], ...] = field(default=())

    @classmethod
    def parse(cls, text: str) -> Replaces:
        """Parse a header value (already unescaped if it came from a URI); raises
        :class:`SipParseError` (400) when it breaks the §6.1 grammar or lacks a tag."""
        parts = [p.strip() for p in text.strip().split(";")]
        call_id = parts[0]
        if not _CALLID_RE.fullmatch(call_id):
            raise SipParseError("Replaces: invalid Call-ID")
        tags: dict[str, str] = {}
        early_only = False
        params: list[tuple[str, str | None]] = []
        for part in parts[1:]:
            name, eq, value = (s.strip() for s in part.partition("="))
            name = name.lower()
            if not _TOKEN_RE.fullmatch(name):
                raise SipParseError("Replaces: invalid parameter")
            if name in ("to-tag", "from-tag"):
                if not eq or not _TOKEN_RE.fullmatch(value):
                    raise SipParseError(f"Replaces: invalid {name}")
                if name in tags:
                    raise SipParseError(f"Replaces: more than one {name} (RFC 3891 §3)")
                tags[name] = value
            elif name == "early-only":
                if eq:
                    raise SipParseError("Replaces: early-only takes no value")
                early_only = True
            else:
                if eq and not value:
                    raise SipParseError("Replaces: empty parameter value")
                params.append((name, value if eq else None))
        if "to-tag" not in tags or "from-tag" not in tags:
            raise SipParseError("Replaces: to-tag and from-tag are required (RFC 3891 §3)")
        return cls(call_id, tags["to-tag"], tags["from-tag"], early_only, tuple(params))

    @classmethod
    def from_uri(cls, uri: SipUri) -> Replaces | None:
        """The Replaces carried as a header of ``uri`` (a Refer-To target, RFC 3515 §2.1
        and RFC 5589 §7), or ``None`` when there is none (a blind transfer). The header
        name is matched case-insensitively (RFC 3261 §7.3.1)."""
        for name, value in uri.headers.items():
            if name.lower() == "replaces":
                return cls.parse(value)
        return None

    def __str__(self) -> str:
        out = [self.call_id, f"to-tag={self.to_tag}", f"from-tag={self.from_tag}"]
        if self.early_only:
            out.append("early-only")
        out += [name if value is None else f"{name}={value}" for name, value in self.params]
        return ";".join(out)

    def __bytes__(self) -> bytes:
        return str(self).encode()

    @property
    def dialog_id(self) -> DialogId:
        """The dialog named, as the recipient keys it (our tag local, RFC 3891 §3)."""
        return DialogId(self.call_id, self.to_tag, self.from_tag)
