"""Who is calling, from where, how often, and may they do this.

Every ``/api/v1`` request goes through :meth:`Authenticator.authenticate`, in this order:

1. **Too many failures from this address?** 429 before any secret is checked, so
   guessing passwords or keys is capped (``auth_failure_limit`` per client address).
2. **Credentials** (``Authorization: Bearer <api key>`` or HTTP Basic ``user:password``,
   RFC 6750 §2.1 and RFC 7617). Missing: 401 ``auth.required``. Wrong: 401
   ``auth.invalid_credentials`` — the same answer for an unknown key, an unknown user, a
   wrong password and a disabled user, and an unknown user costs a scrypt run like a known
   one, so none of them can be told apart.
3. **IP allow-list of the role** (``acls/<role>``): 403 ``auth.ip_not_allowed``.
4. **Rate limit** of the user: 429 ``rate_limited`` with ``Retry-After``.
5. **Role** of the route: 403 ``auth.forbidden``.

Users, keys and ACLs are read from the configuration and cached until its revision
changes; each request costs one single-row read of the revision, so a key revoked on
another node (same PostgreSQL) stops working on the next request. A password verified once
is remembered (as an HMAC under a per-process secret, never in clear) until that user's
hash changes: scrypt runs off the event loop, but it should not run on every request.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import ipaddress
import logging
import math
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import Request
from starlette.requests import HTTPConnection

from tsunagu.api.credentials import DUMMY_HASH, key_digest, verify_password
from tsunagu.api.errors import ApiError
from tsunagu.api.ratelimit import RateLimiter
from tsunagu.api.services import ApiServices
from tsunagu.api.users import (
    ACLS,
    USERS,
    Role,
    address_allowed,
    parse_allow_list,
    validate_auth_document,
)
from tsunagu.store import ConfigStore

log = logging.getLogger("tsunagu.api")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
VERIFIED_CACHE_MAX = 1_000
CHALLENGE = 'Bearer realm="tsunagu", Basic realm="tsunagu", charset="UTF-8"'


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller."""

    name: str
    role: Role
    agent: str | None
    via: Literal["password", "key"]
    key_id: str | None = None
    client: str | None = None

    @property
    def actor(self) -> str:
        """How the change log and the audit trail name this caller."""
        if self.via == "key":
            return f"key:{self.name}/{self.key_id}"
        return f"user:{self.name}"


@dataclass(frozen=True, slots=True)
class UserRecord:
    name: str
    role: Role
    agent: str | None
    password_hash: str | None
    disabled: bool


@dataclass(frozen=True, slots=True)
class Directory:
    """Users, key digests and allow-lists at one configuration revision."""

    revision: int
    users: Mapping[str, UserRecord]
    keys: Mapping[str, tuple[str, str]]  # sha256 → (user name, key id)
    acls: Mapping[Role, tuple[Network, ...]]

    @classmethod
    def empty(cls) -> Directory:
        return cls(-1, {}, {}, {})


async def load_directory(config: ConfigStore, revision: int) -> Directory:
    """Read users and ACLs; documents that do not validate are skipped (and logged), so one
    bad entry written behind the API's back cannot lock everybody out."""
    users: dict[str, UserRecord] = {}
    keys: dict[str, tuple[str, str]] = {}
    for entity in await config.list(USERS):
        doc = entity.document
        problems = validate_auth_document(USERS, entity.name, doc)
        if problems:
            log.warning(
                "ignoring an invalid API user", extra={"user": entity.name, "problems": problems}
            )
            continue
        users[entity.name] = UserRecord(
            name=entity.name,
            role=Role(doc["role"]),
            agent=doc.get("agent"),
            password_hash=doc.get("password_hash"),
            disabled=bool(doc.get("disabled", False)),
        )
        for key in doc.get("api_keys", ()):
            if key["sha256"] in keys:
                log.warning("ignoring a duplicated API key", extra={"user": entity.name})
                continue
            keys[key["sha256"]] = (entity.name, key["id"])
    acls: dict[Role, tuple[Network, ...]] = {}
    for entity in await config.list(ACLS):
        if entity.name in tuple(Role) and not validate_auth_document(
            ACLS, entity.name, entity.document
        ):
            acls[Role(entity.name)] = parse_allow_list(entity.document)
    return Directory(revision, users, keys, acls)


@dataclass(frozen=True, slots=True)
class BearerCredentials:
    token: str


@dataclass(frozen=True, slots=True)
class BasicCredentials:
    user: str
    password: str


Credentials = BearerCredentials | BasicCredentials


def parse_authorization(header: str | None) -> Credentials | None:
    """The credentials of an ``Authorization`` header, or ``None`` when there are none.
    Malformed Basic credentials come back with an impossible (empty) user, so they fail
    exactly like wrong ones."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return BearerCredentials(value)
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return BasicCredentials("", "")
        user, sep, password = decoded.partition(":")
        return BasicCredentials(user, password) if sep else BasicCredentials("", "")
    return None


def client_address(request: HTTPConnection) -> str | None:
    return request.client.host if request.client is not None else None


#: Users, keys and ACLs written by another process (the CLI, DR replication) are seen
#: within this many seconds; this process's own API writes at once.
DIRECTORY_MAX_AGE_S = 1.0


class Authenticator:
    def __init__(self, services: ApiServices) -> None:
        self._config = services.store.config
        self._clock = services.clock
        self._limiter = RateLimiter(services.rate_limit)
        self._failures = RateLimiter(services.auth_failure_limit)
        self._directory = Directory.empty()
        self._refresh_lock = asyncio.Lock()
        self._secret = secrets.token_bytes(32)
        self._verified: OrderedDict[tuple[str, str], bytes] = OrderedDict()

    def _now(self) -> float:
        return self._clock().timestamp()

    async def directory(self) -> Directory:
        revision = await self._config.current_revision(max_age_s=DIRECTORY_MAX_AGE_S)
        if revision == self._directory.revision:
            return self._directory
        async with self._refresh_lock:
            if revision != self._directory.revision:
                self._directory = await load_directory(self._config, revision)
        return self._directory

    async def authenticate(self, request: HTTPConnection) -> Principal:
        """The caller of an HTTP request or a WebSocket upgrade (``Authorization``)."""
        return await self.authenticate_header(
            request.headers.get("authorization"), client_address(request)
        )

    async def authenticate_header(self, authorization: str | None, client: str | None) -> Principal:
        """Steps 1-4 of the module docstring for an ``Authorization`` value (the WebSocket
        stream also passes ``Bearer <token>`` built from its first message)."""
        wait = self._failures.blocked_for(client or "?", self._now())
        if wait > 0:
            raise _rate_limited(wait, "too many failed authentications from this address")
        credentials = parse_authorization(authorization)
        if credentials is None:
            raise ApiError(
                401,
                "auth.required",
                "authentication required: Authorization: Bearer <api key>, or HTTP Basic",
                headers={"WWW-Authenticate": CHALLENGE},
            )
        directory = await self.directory()
        principal = await self._check(directory, credentials, client)
        if principal is None:
            self._failures.take(client or "?", self._now())
            log.info("API authentication failed", extra={"client": client})
            raise ApiError(
                401,
                "auth.invalid_credentials",
                "invalid credentials",
                headers={"WWW-Authenticate": CHALLENGE},
            )
        allow = directory.acls.get(principal.role)
        if allow is not None and not address_allowed(client, allow):
            raise ApiError(
                403,
                "auth.ip_not_allowed",
                f"the {principal.role} role may not connect from this address",
                {"client": client, "role": str(principal.role)},
            )
        wait = self._limiter.take(f"{principal.name}", self._now())
        if wait > 0:
            raise _rate_limited(wait, "request rate limit reached")
        return principal

    async def _check(
        self,
        directory: Directory,
        credentials: Credentials,
        client: str | None,
    ) -> Principal | None:
        if isinstance(credentials, BearerCredentials):
            found = directory.keys.get(key_digest(credentials.token))
            if found is None:
                return None
            user = directory.users.get(found[0])
            if user is None or user.disabled:
                return None
            return Principal(user.name, user.role, user.agent, "key", found[1], client)
        name, password = credentials.user, credentials.password
        user = directory.users.get(name)
        stored = user.password_hash if user is not None else None
        ok = await self._verify(name, password, stored)
        if user is None or stored is None or user.disabled or not ok:
            return None
        return Principal(user.name, user.role, user.agent, "password", None, client)

    async def _verify(self, name: str, password: str, stored: str | None) -> bool:
        if stored is None:
            await asyncio.to_thread(verify_password, password, DUMMY_HASH)
            return False
        tag = hmac.new(self._secret, password.encode("utf-8"), hashlib.sha256).digest()
        remembered = self._verified.get((name, stored))
        if remembered is not None and hmac.compare_digest(remembered, tag):
            self._verified.move_to_end((name, stored))
            return True
        if not await asyncio.to_thread(verify_password, password, stored):
            return False
        self._verified[(name, stored)] = tag
        while len(self._verified) > VERIFIED_CACHE_MAX:
            self._verified.popitem(last=False)
        return True


def _rate_limited(wait: float, message: str) -> ApiError:
    retry = max(1, math.ceil(wait))
    return ApiError(
        429, "rate_limited", message, {"retry_after_s": retry}, headers={"Retry-After": str(retry)}
    )


def require(minimum: Role) -> Callable[[Request], Awaitable[Principal]]:
    """A route dependency: the authenticated caller, whose role is ``minimum`` or above."""

    async def dependency(request: Request) -> Principal:
        context: Any = request.app.state.tsunagu
        principal: Principal = await context.auth.authenticate(request)
        if not principal.role.at_least(minimum):
            raise ApiError(
                403,
                "auth.forbidden",
                f"this needs the {minimum} role or above (you are {principal.role})",
                {"required_role": str(minimum), "role": str(principal.role)},
            )
        return principal

    return dependency
