"""Registrar (RFC 3261 §10.3): bindings of an address of record to the contacts of its phones.

Sans-IO: :meth:`Registrar.register` takes an authenticated REGISTER, the source it came
from and ``now`` (wall-clock seconds, because bindings outlive the process and must expire
at the same absolute time after a restart) and returns the response to send. Persistence is
a write-behind journal (:mod:`tsunagu.sip.bindings_store`) so a restart does not log every
agent out, while a registration storm does not wait on the disk for every REGISTER.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate

from tsunagu.settings import RegistrarSettings
from tsunagu.sip.errors import SipParseError
from tsunagu.sip.headers import NameAddress
from tsunagu.sip.message import SipRequest, SipResponse, make_response
from tsunagu.sip.uri import SipUri


@dataclass(slots=True)
class Binding:
    """One contact of an AOR (§10.3 step 7) plus where the REGISTER really came from.

    ``source`` is the transport address the REGISTER arrived from: a phone behind NAT
    advertises a private Contact, and requests to it must go to the address we saw
    (RFC 3581 symmetric response routing applied to registrations).
    """

    aor: str
    contact: str
    expires_at: float
    call_id: str
    cseq: int
    source_transport: str
    source_host: str
    source_port: int
    q: float = 1.0
    user_agent: str = ""
    registered_at: float = 0.0

    def remaining(self, now: float) -> int:
        return max(0, round(self.expires_at - now))


@dataclass(slots=True, frozen=True)
class BindingChange:
    """What a REGISTER changed, for logs, presence (agent offline) and persistence."""

    aor: str
    added: tuple[Binding, ...] = ()
    refreshed: tuple[Binding, ...] = ()
    removed: tuple[Binding, ...] = ()


@dataclass(slots=True)
class RegisterOutcome:
    response: SipResponse
    change: BindingChange | None = None


@dataclass
class Registrar:
    """Location service for agents' phones.

    ``on_change`` is called with every :class:`BindingChange` (registration, refresh,
    removal, expiry) so other parts (presence, the journal, health views) learn of it
    without the registrar knowing them.
    """

    settings: RegistrarSettings
    on_change: Callable[[BindingChange], None] = lambda change: None
    _bindings: dict[str, dict[str, Binding]] = field(default_factory=dict)

    # -- queries ---------------------------------------------------------------------
    def lookup(self, aor: str, now: float) -> list[Binding]:
        """Live bindings of ``aor``, highest q first, newest first among equals."""
        live = [b for b in self._bindings.get(aor, {}).values() if b.expires_at > now]
        return sorted(live, key=lambda b: (-b.q, -b.registered_at))

    def all_bindings(self, now: float) -> list[Binding]:
        return [b for per in self._bindings.values() for b in per.values() if b.expires_at > now]

    def registered_from(self, transport: str, host: str, port: int, now: float) -> str | None:
        """The AOR whose phone registered from exactly this transport address, if any.

        A request from there comes from that phone, even when its address also belongs
        to a trusted trunk (on a test bench, or a PBX sharing a host with a gateway).
        """
        for per in self._bindings.values():
            for b in per.values():
                if (
                    b.source_port == port
                    and b.source_host == host
                    and b.source_transport == transport
                    and b.expires_at > now
                ):
                    return b.aor
        return None

    def count(self, now: float) -> int:
        return len(self.all_bindings(now))

    def restore(self, bindings: list[Binding], now: float) -> int:
        """Load persisted bindings after a restart; expired ones are skipped."""
        loaded = 0
        for binding in bindings:
            if binding.expires_at > now:
                self._bindings.setdefault(binding.aor, {})[binding.contact] = binding
                loaded += 1
        return loaded

    def expire(self, now: float) -> list[BindingChange]:
        """Drop bindings whose time is up (§10.3: a binding lives until its expiry)."""
        changes = []
        for aor in list(self._bindings):
            per = self._bindings[aor]
            gone = tuple(b for b in per.values() if b.expires_at <= now)
            for binding in gone:
                del per[binding.contact]
            if not per:
                del self._bindings[aor]
            if gone:
                change = BindingChange(aor, removed=gone)
                changes.append(change)
                self.on_change(change)
        return changes

    # -- REGISTER --------------------------------------------------------------------
    def register(
        self,
        request: SipRequest,
        aor: str,
        source: tuple[str, str, int],
        now: float,
        *,
        to_tag: str,
    ) -> RegisterOutcome:
        """Apply a REGISTER for ``aor`` (already authenticated and authorised), §10.3 6-8."""
        contacts = request.contacts
        header_expires = request.expires()
        call_id = request.call_id
        cseq = request.cseq.number
        current = self._bindings.get(aor, {})

        if contacts is None:  # "*": remove all, only with Expires: 0 (§10.3 step 6)
            if header_expires != 0:
                raise SipParseError("Contact '*' requires Expires: 0")
            stale = [b for b in current.values() if b.call_id == call_id and b.cseq >= cseq]
            if stale:
                return RegisterOutcome(
                    make_response(request, 500, "Out-of-order REGISTER", to_tag=to_tag)
                )
            self._bindings.pop(aor, None)
            change = BindingChange(aor, removed=tuple(current.values()))
            self.on_change(change)
            return RegisterOutcome(self._ok(request, aor, now, to_tag), change)

        wanted: list[tuple[NameAddress, int]] = []
        for contact in contacts:
            expires = self._expires_for(contact, header_expires)
            if 0 < expires < self.settings.min_expires:
                too_brief = make_response(
                    request,
                    423,
                    to_tag=to_tag,
                    extra=[("Min-Expires", str(self.settings.min_expires))],
                )
                return RegisterOutcome(too_brief)
            wanted.append((contact, min(expires, self.settings.max_expires)))

        added: list[Binding] = []
        refreshed: list[Binding] = []
        removed: list[Binding] = []
        per = dict(current)
        for contact, expires in wanted:
            key = str(contact.uri)
            existing = per.get(key)
            if existing is not None and existing.call_id == call_id and existing.cseq >= cseq:
                # §10.3 step 7: an older or repeated request must not undo a newer one.
                return RegisterOutcome(
                    make_response(request, 500, "Out-of-order REGISTER", to_tag=to_tag)
                )
            if expires == 0:
                if existing is not None:
                    removed.append(per.pop(key))
                continue
            binding = Binding(
                aor=aor,
                contact=key,
                expires_at=now + expires,
                call_id=call_id,
                cseq=cseq,
                source_transport=source[0],
                source_host=source[1],
                source_port=source[2],
                q=_q_value(contact),
                user_agent=request.headers.get("User-Agent") or "",
                registered_at=existing.registered_at if existing else now,
            )
            per[key] = binding
            (refreshed if existing is not None else added).append(binding)

        limit = self.settings.max_contacts_per_aor
        live = sorted(
            (b for b in per.values() if b.expires_at > now), key=lambda b: b.registered_at
        )
        while len(live) > limit:  # the oldest binding gives way to the newest phone
            oldest = live.pop(0)
            removed.append(per.pop(oldest.contact))
        if per:
            self._bindings[aor] = per
        else:
            self._bindings.pop(aor, None)
        change = BindingChange(aor, tuple(added), tuple(refreshed), tuple(removed))
        if added or refreshed or removed:
            self.on_change(change)
        return RegisterOutcome(self._ok(request, aor, now, to_tag), change)

    def _expires_for(self, contact: NameAddress, header_expires: int | None) -> int:
        raw = contact.params.get("expires")
        if raw is not None:
            if not raw.isdigit() or not raw.isascii():
                raise SipParseError("Contact expires parameter must be delta-seconds")
            return min(int(raw), 2**32 - 1)
        if header_expires is not None:
            return header_expires
        return self.settings.default_expires

    def _ok(self, request: SipRequest, aor: str, now: float, to_tag: str) -> SipResponse:
        extra = [
            ("Contact", f"<{b.contact}>;expires={b.remaining(now)}") for b in self.lookup(aor, now)
        ]
        extra.append(("Date", formatdate(now, usegmt=True)))
        return make_response(request, 200, to_tag=to_tag, extra=extra)


def _q_value(contact: NameAddress) -> float:
    raw = contact.params.get("q")
    if raw is None:
        return 1.0
    try:
        value = float(raw)
    except ValueError:
        raise SipParseError("Contact q parameter must be a number 0-1") from None
    if not 0.0 <= value <= 1.0:
        raise SipParseError("Contact q parameter must be a number 0-1")
    return value


def aor_for(uri: SipUri) -> str:
    """The registrar's AOR key: the user part alone (agents are ``1001`` whatever the host).

    Softphones are as often configured with the server's IP address as with its domain,
    so the host part does not distinguish accounts on a single-tenant server.
    """
    return uri.user or ""
