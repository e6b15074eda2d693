"""SIP digest authentication: response computation, a stateless verifier, the client side.

SIP reuses HTTP digest (RFC 3261 §22.4) and RFC 8760 brings it up to RFC 7616 (SHA-256,
several challenges in preference order). This module is sans-IO and works on header
*values* (``str``): the message parser hands over the values of Authorization /
Proxy-Authorization / WWW-Authenticate; nothing here reads a clock or a socket, the
current time is passed in as ``now`` (seconds, any monotonic-enough time base).

The wire types (:class:`DigestCredentials`, :class:`DigestChallenge`, their grammar and
errors) live in :mod:`tsunagu.sip.digest_headers`: they are pure text in, text out and
change with the RFC grammar, while this module is the security policy built on them.
Every public name of that module is re-exported here, so callers import from one place.

Server side, :class:`DigestAuthenticator` issues challenges and verifies credentials:

- Nonces are stateless and unforgeable: ``base64url(issued_at ‖ random ‖ HMAC)``, the
  HMAC keyed by a server secret and bound to the realm and algorithm. The server checks
  a nonce it issued, and its age, without storing it (RFC 7616 §3.3 leaves the nonce
  format to the server and suggests a time stamp plus a private key).
- Nonce-count replay protection (RFC 7616 §3.4 and §5.2; RFC 2617 §3.2.2): with
  ``qop=auth`` the highest ``nc`` accepted for each nonce is remembered and an ``nc``
  that does not grow is refused. Only nonces that authenticated successfully are
  remembered, expired ones are purged, and the table has a hard cap (see
  :class:`DigestAuthenticator`). Without ``qop`` (RFC 2069-style clients) a response is
  accepted any number of times within the nonce lifetime: that is all the old scheme
  allows.
- No user enumeration: an unknown user goes through the same computation against a
  dummy password and gets the same outcome and reason as a known user with a wrong
  password; responses are compared with :func:`hmac.compare_digest`.

Client side, :func:`build_authorization` answers a challenge (used to register to a
carrier trunk, and by the tests).

Not supported (documented refusals): ``qop=auth-int`` on the server side (never offered;
credentials using it are MISSING so the client is re-challenged with ``qop="auth"``),
``userhash`` on the server side (never offered; MISSING), SHA-512-256 (RFC 7616 leaves
its definition ambiguous and :class:`~tsunagu.settings.AuthSettings` does not offer it).
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import heapq
import hmac
import math
import secrets
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from tsunagu.sip.digest_headers import (
    _CANONICAL,
    _HASHES,
    SUPPORTED_ALGORITHMS,
    DigestChallenge,
    DigestCredentials,
    DigestError,
    DigestSyntaxError,
    NotDigestError,
    UnsupportedChallengeError,
    _canonical_algorithm,
    parse_challenge,
    parse_credentials,
)

__all__ = [
    "REASON_BAD_CREDENTIALS",
    "SUPPORTED_ALGORITHMS",
    "AuthOutcome",
    "AuthResult",
    "DigestAuthenticator",
    "DigestChallenge",
    "DigestCredentials",
    "DigestError",
    "DigestSyntaxError",
    "NotDigestError",
    "UnsupportedChallengeError",
    "build_authorization",
    "compute_response",
    "parse_challenge",
    "parse_credentials",
]


# --------------------------------------------------------------------------- response


def _encode(text: str) -> bytes:
    """UTF-8 bytes of ``text`` (RFC 7616 §4 / RFC 3261: SIP text is UTF-8).

    A value the message parser decoded with ``surrogateescape`` gets its original bytes
    back; any other lone surrogate is encoded as is rather than raising.
    """
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def _hex(algorithm: str, data: str) -> str:
    base = algorithm.removesuffix("-sess")
    return _HASHES[base](_encode(data)).hexdigest()


def compute_response(
    *,
    algorithm: str,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
    body: bytes = b"",
) -> str:
    """The ``response`` value of RFC 7616 §3.4.1 (RFC 2617 §3.2.2, RFC 2069 without qop).

    - A1 = ``username:realm:password``; for ``-sess`` algorithms A1 =
      ``H(username:realm:password):nonce:cnonce`` (§3.4.2).
    - A2 = ``method:uri``, or ``method:uri:H(body)`` for ``qop=auth-int`` (§3.4.3).
    - With qop: ``KD(H(A1), nonce:nc:cnonce:qop:H(A2))`` where ``KD(s, d) = H(s:d)``;
      without qop (RFC 2069 compatibility): ``H(H(A1):nonce:H(A2))``.

    Raises :class:`ValueError` (our fault) for an algorithm we cannot compute or
    missing ``nc``/``cnonce`` where the formula needs them.
    """
    alg = _canonical_algorithm(algorithm)
    if alg not in _CANONICAL.values():
        raise ValueError(f"unsupported digest algorithm {algorithm!r}")
    ha1 = _hex(alg, f"{username}:{realm}:{password}")
    if alg.endswith("-sess"):
        if cnonce is None:
            raise ValueError(f"{alg} needs a cnonce")
        ha1 = _hex(alg, f"{ha1}:{nonce}:{cnonce}")
    if qop is not None and qop.lower() == "auth-int":
        base = alg.removesuffix("-sess")
        ha2 = _hex(alg, f"{method}:{uri}:{_HASHES[base](body).hexdigest()}")
    else:
        ha2 = _hex(alg, f"{method}:{uri}")
    if qop is None:
        return _hex(alg, f"{ha1}:{nonce}:{ha2}")
    if nc is None or cnonce is None:
        raise ValueError("qop needs nc and cnonce")
    return _hex(alg, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


# --------------------------------------------------------------------------- client side


def build_authorization(
    challenge_value: str,
    method: str,
    uri: str,
    username: str,
    password: str,
    *,
    cnonce: str,
    nc: int,
) -> str:
    """Answer one challenge (RFC 3261 §22.2 / §22.3, RFC 7616 §3.4).

    Uses ``qop=auth`` when offered; without qop it answers RFC 2069-style (no nc/cnonce
    unless a ``-sess`` algorithm needs the cnonce). With ``userhash=true`` the username
    is sent hashed (RFC 7616 §3.4.4). The caller picks which challenge to answer (the
    first one whose algorithm it supports, RFC 8760 §2.4) and keeps ``nc`` counting up
    for a nonce it reuses. Raises :class:`UnsupportedChallengeError` for an algorithm we
    cannot compute or a challenge offering only ``auth-int``.
    """
    challenge = DigestChallenge.parse(challenge_value)
    if challenge.algorithm not in SUPPORTED_ALGORITHMS:
        raise UnsupportedChallengeError(f"algorithm {challenge.algorithm!r} is not supported")
    if challenge.qop and "auth" not in challenge.qop:
        raise UnsupportedChallengeError("challenge offers only qop values other than auth")
    if not 1 <= nc <= 0xFFFFFFFF:
        raise ValueError("nc must be between 1 and 0xffffffff")
    qop = "auth" if challenge.qop else None
    nc_text = f"{nc:08x}" if qop else None
    send_cnonce = cnonce if qop or challenge.algorithm.endswith("-sess") else None
    response = compute_response(
        algorithm=challenge.algorithm,
        username=username,
        realm=challenge.realm,
        password=password,
        method=method,
        uri=uri,
        nonce=challenge.nonce,
        qop=qop,
        nc=nc_text,
        cnonce=send_cnonce,
    )
    sent_name = username
    if challenge.userhash:
        sent_name = _hex(challenge.algorithm, f"{username}:{challenge.realm}")
    credentials = DigestCredentials(
        username=sent_name,
        realm=challenge.realm,
        nonce=challenge.nonce,
        uri=uri,
        response=response,
        algorithm=challenge.algorithm,
        qop=qop,
        nc=nc_text,
        cnonce=send_cnonce,
        opaque=challenge.opaque,
        userhash=challenge.userhash,
    )
    return str(credentials)


# --------------------------------------------------------------------------- server side


class AuthOutcome(enum.Enum):
    """What the caller does next (RFC 3261 §22.1, RFC 7616 §3.3)."""

    OK = "ok"
    #: No usable digest credentials for our realm: answer 401/407 with challenges.
    MISSING = "missing"
    #: Right password, nonce too old: challenge again with ``stale=true``.
    STALE = "stale"
    #: Wrong password, unknown user, replay, forged nonce: 403 or a fresh challenge.
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class AuthResult:
    """Outcome of :meth:`DigestAuthenticator.verify`.

    ``username`` is the name the client claimed (None when no credentials were usable);
    ``reason`` is for logs and never contains a password, HA1 or response.
    """

    outcome: AuthOutcome
    username: str | None
    reason: str


#: ``FAILED`` reason shared by "unknown user" and "wrong password" (no enumeration).
REASON_BAD_CREDENTIALS: Final = "bad credentials"

_NONCE_LAYOUT: Final = struct.Struct(">d12s")  # issued-at seconds, 96 random bits
_MAC_BYTES: Final = 16
_NONCE_BYTES: Final = _NONCE_LAYOUT.size + _MAC_BYTES
_NONCE_CHARS: Final = (_NONCE_BYTES * 4 + 2) // 3


class DigestAuthenticator:
    """Issues digest challenges for one realm and verifies credentials, without I/O.

    ``lookup(username)`` returns the user's plaintext SIP password or None. ``secret``
    keys the nonce HMAC; pass a stable one to keep nonces valid across restarts (with a
    random secret, a restart makes outstanding nonces unknown: a client that then
    answers with the right password is STALE, anyone else FAILED; see :meth:`verify`).

    Memory: the nonce-count table holds one entry per nonce that authenticated with
    ``qop=auth`` and has not expired, at most ``max_tracked_nonces``. When full, the
    oldest entries are dropped and every nonce issued no later than the newest dropped
    one is answered STALE on its next use (the client re-authenticates with a fresh
    nonce), so dropping never reopens a replay window.
    """

    def __init__(
        self,
        realm: str,
        lookup: Callable[[str], str | None],
        *,
        algorithms: Sequence[str] = ("SHA-256", "MD5"),
        nonce_ttl: float = 300.0,
        secret: bytes | None = None,
        max_tracked_nonces: int = 100_000,
    ) -> None:
        if not algorithms:
            raise ValueError("configure at least one digest algorithm")
        canonical = [_canonical_algorithm(a) for a in algorithms]
        unknown = [a for a in canonical if a not in SUPPORTED_ALGORITHMS]
        if unknown:
            raise ValueError(f"unsupported digest algorithms: {', '.join(unknown)}")
        if len(set(canonical)) != len(canonical):
            raise ValueError("each digest algorithm at most once")
        if not (nonce_ttl > 0 and math.isfinite(nonce_ttl)):
            raise ValueError("nonce_ttl must be a positive number of seconds")
        if max_tracked_nonces < 1:
            raise ValueError("max_tracked_nonces must be at least 1")
        self.realm = realm
        self.algorithms: tuple[str, ...] = tuple(canonical)
        self.nonce_ttl = nonce_ttl
        self._lookup = lookup
        self._secret = secret if secret is not None else secrets.token_bytes(32)
        self._max_tracked = max_tracked_nonces
        # Opaque carries no state (the nonce does); derived from the realm alone so that
        # it survives a restart with another secret (RFC 7616 §3.3: returned unchanged).
        opaque_hash = hashlib.sha256(b"tsunagu-opaque\0" + _encode(realm)).digest()
        self._opaque = base64.urlsafe_b64encode(opaque_hash[:12]).decode("ascii")
        # Unknown users are hashed against this, so they cost what a known user costs.
        self._dummy_password = secrets.token_urlsafe(16)
        self._highest_nc: dict[str, int] = {}
        self._by_age: list[tuple[float, str]] = []  # heap of (issued_at, nonce)
        self._forgotten_until = -math.inf

    @property
    def tracked_nonces(self) -> int:
        """Nonces whose highest nc is remembered (for tests and health views)."""
        return len(self._highest_nc)

    # -- challenges ---------------------------------------------------------------

    def challenges(
        self, now: float, *, stale: bool = False, legacy_client: bool = False
    ) -> list[str]:
        """WWW-Authenticate values, one per algorithm in preference order (RFC 8760 §2.4).

        Each carries its own nonce, bound to its algorithm; ``stale=true`` tells the
        client its password was right and only the nonce was old (RFC 7616 §3.3).
        ``legacy_client`` offers MD5 alone: some clients (baresip 1.0's libre) fail on any
        challenge whose algorithm they do not implement instead of skipping it as RFC 8760
        §2.4 expects, so a SHA-256 challenge anywhere in the 401 breaks them.
        """
        algorithms = self.algorithms
        if legacy_client and "MD5" in algorithms:
            algorithms = ("MD5",)
        return [
            str(
                DigestChallenge(
                    realm=self.realm,
                    nonce=self._make_nonce(now, algorithm),
                    algorithm=algorithm,
                    qop=("auth",),
                    opaque=self._opaque,
                    stale=stale,
                )
            )
            for algorithm in algorithms
        ]

    def _nonce_mac(self, body: bytes, algorithm: str) -> bytes:
        message = b"nonce\0" + _encode(self.realm) + b"\0" + algorithm.encode("ascii") + b"\0"
        return hmac.digest(self._secret, message + body, "sha256")[:_MAC_BYTES]

    def _make_nonce(self, now: float, algorithm: str) -> str:
        body = _NONCE_LAYOUT.pack(now, secrets.token_bytes(12))
        raw = body + self._nonce_mac(body, algorithm)
        return base64.urlsafe_b64encode(raw).decode("ascii")

    def _nonce_issued_at(self, nonce: str, algorithm: str) -> float | None:
        """When we issued ``nonce`` for ``algorithm``, or None if we did not issue it."""
        if len(nonce) != _NONCE_CHARS or not nonce.isascii():
            return None
        try:
            raw = base64.b64decode(nonce.encode("ascii"), altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            return None
        if len(raw) != _NONCE_BYTES:
            return None
        body, mac = raw[: _NONCE_LAYOUT.size], raw[_NONCE_LAYOUT.size :]
        if not hmac.compare_digest(mac, self._nonce_mac(body, algorithm)):
            return None
        issued: float = _NONCE_LAYOUT.unpack(body)[0]
        return issued

    # -- verification -------------------------------------------------------------

    def _select(self, values: Iterable[str]) -> tuple[DigestCredentials | None, str]:
        """The first usable credentials for our realm (RFC 3261 §22.3), or why none."""
        why = "no digest credentials for realm"
        for value in values:
            try:
                credentials = DigestCredentials.parse(value)
            except DigestSyntaxError:
                continue  # other schemes and garbage are ignored; the client is challenged
            if credentials.realm != self.realm:
                continue  # meant for another proxy on the path (RFC 3261 §22.3)
            if credentials.algorithm not in self.algorithms:
                why = "algorithm not offered"
            elif credentials.qop not in (None, "auth"):
                why = "qop not supported"
            elif credentials.userhash:
                why = "userhash not supported"
            elif credentials.algorithm.endswith("-sess") and credentials.cnonce is None:
                why = "cnonce missing"
            else:
                return credentials, ""
        return None, why

    def verify(
        self,
        method: str,
        request_uri: str,
        authorization_values: Sequence[str],
        now: float,
    ) -> AuthResult:
        """Check a request's credentials (RFC 3261 §22.1/§22.4, RFC 7616 §3.3-§3.4).

        ``authorization_values`` are all Authorization (or Proxy-Authorization) values
        of the request, in order. The ``uri`` parameter must equal ``request_uri`` after
        stripping surrounding whitespace (RFC 7616 §3.4.6; a plain string comparison,
        no URI normalisation). Checks that do not depend on the user (uri, opaque) come
        first; the password check then runs identically for unknown users.

        A nonce we cannot vouch for (forged, tampered, or issued before a restart with
        another secret) gives FAILED "bad nonce" unless the response proves the
        password; then it is STALE "nonce unknown", so that a phone holding a nonce
        from before a restart is simply re-challenged instead of refused and counted as
        a failure. Only someone who knows the password can reach that answer, and it
        grants nothing but a fresh challenge.

        Reasons: MISSING — "no digest credentials for realm", "algorithm not offered",
        "qop not supported", "userhash not supported", "cnonce missing"; FAILED — "uri
        mismatch", "opaque mismatch", "bad nonce", ``REASON_BAD_CREDENTIALS``
        (unknown user and wrong password alike), "replay"; STALE — "nonce expired",
        "nonce unknown", "nonce forgotten"; OK — "ok".
        """
        self._purge(now)
        credentials, why = self._select(authorization_values)
        if credentials is None:
            return AuthResult(AuthOutcome.MISSING, None, why)
        user = credentials.username
        if credentials.uri.strip() != request_uri.strip():
            return AuthResult(AuthOutcome.FAILED, user, "uri mismatch")
        if credentials.opaque is not None and credentials.opaque != self._opaque:
            return AuthResult(AuthOutcome.FAILED, user, "opaque mismatch")
        issued = self._nonce_issued_at(credentials.nonce, credentials.algorithm)
        if issued is not None and issued - now > self.nonce_ttl:
            issued = None  # from the future of another time base: not vouched for

        password = self._lookup(user)
        known = password is not None
        expected = compute_response(
            algorithm=credentials.algorithm,
            username=user,
            realm=credentials.realm,
            password=password if password is not None else self._dummy_password,
            method=method,
            uri=credentials.uri,
            nonce=credentials.nonce,
            qop=credentials.qop,
            nc=credentials.nc,
            cnonce=credentials.cnonce,
        )
        matches = hmac.compare_digest(
            expected.encode("ascii"), _encode(credentials.response.lower())
        )
        if not (matches and known):
            reason = "bad nonce" if issued is None else REASON_BAD_CREDENTIALS
            return AuthResult(AuthOutcome.FAILED, user, reason)

        # RFC 7616 §3.3: stale only when the digest itself was valid.
        if issued is None:
            return AuthResult(AuthOutcome.STALE, user, "nonce unknown")
        if now - issued > self.nonce_ttl:
            return AuthResult(AuthOutcome.STALE, user, "nonce expired")
        if credentials.qop is not None:
            count = credentials.nonce_count or 0
            highest = self._highest_nc.get(credentials.nonce)
            if highest is None and issued <= self._forgotten_until:
                return AuthResult(AuthOutcome.STALE, user, "nonce forgotten")
            if count <= (highest or 0):
                return AuthResult(AuthOutcome.FAILED, user, "replay")
            self._remember(credentials.nonce, issued, count)
        return AuthResult(AuthOutcome.OK, user, "ok")

    def _remember(self, nonce: str, issued: float, count: int) -> None:
        if nonce not in self._highest_nc:
            while len(self._highest_nc) >= self._max_tracked and self._by_age:
                oldest_issued, oldest = heapq.heappop(self._by_age)
                del self._highest_nc[oldest]
                self._forgotten_until = max(self._forgotten_until, oldest_issued)
            heapq.heappush(self._by_age, (issued, nonce))
        self._highest_nc[nonce] = count

    def _purge(self, now: float) -> None:
        """Forget nonce counts of expired nonces: they are refused by age anyway."""
        while self._by_age and now - self._by_age[0][0] > self.nonce_ttl:
            _, nonce = heapq.heappop(self._by_age)
            del self._highest_nc[nonce]
