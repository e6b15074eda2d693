"""API users, their keys and the per-role IP allow-lists, as configuration documents.

They live in the revisioned configuration (kinds ``users`` and ``acls``) so they are
audited by the change log and replicate to the DR site like everything else; an operator
who fails over keeps their logins.

``users/<name>``::

    role: supervisor            # admin | supervisor | agent
    password_hash: scrypt$...   # the API writes it from "password"; never the plain text
    agent: "1001"               # the ACD agent this login is (required for role agent)
    display_name: 山田
    disabled: false
    api_keys:                   # integrations authenticate with one of these
      - {id: k3f9a0c1b2d4e, sha256: <64 hex>, label: CRM, created_at: ...}

``acls/<role>``::

    allow: [192.0.2.0/24, 2001:db8::/32]   # requests of this role from elsewhere: 403

A role without an ``acls`` entity may connect from anywhere; an empty ``allow`` list
shuts the role out entirely.

Secrets never leave through the API: reads show ``redacted:<fingerprint>`` instead of a
hash (the fingerprint changes when the secret does, so diffs still show the change), and a
write that carries such a placeholder — or no hash at all — keeps the stored one. Only the
change feed read by an admin (what the DR site replicates) carries the hashes.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from tsunagu.api.credentials import (
    KEY_ID_PATTERN,
    SHA256_PATTERN,
    ScryptParams,
    hash_password,
    key_digest,
    password_problem,
    verify_password,
)
from tsunagu.config_kinds import redact_document
from tsunagu.store import ConfigStore, ConfigValidationError, Store

USERS = "users"
ACLS = "acls"
REDACTED_PREFIX = "redacted:"
SEED_ACTOR = "system:seed"

USER_FIELDS = frozenset({"role", "password_hash", "agent", "display_name", "disabled", "api_keys"})
KEY_FIELDS = frozenset({"id", "sha256", "label", "created_at"})
ACL_FIELDS = frozenset({"allow", "description"})


class Role(StrEnum):
    """Roles, from most to least powerful. A route open to a role is open to the roles
    above it."""

    ADMIN = "admin"
    SUPERVISOR = "supervisor"
    AGENT = "agent"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def at_least(self, other: Role) -> bool:
        return self.rank >= other.rank


_RANK = {Role.ADMIN: 3, Role.SUPERVISOR: 2, Role.AGENT: 1}


# --- validation (the store's validator hook, and the API's own check) ----------------


def validate_auth_document(kind: str, name: str, document: Mapping[str, Any]) -> list[str]:
    """Problems with a ``users`` or ``acls`` document (other kinds: none). Chain it into the
    store's validator so the CLI and YAML seeding are held to the same rules."""
    if kind == USERS:
        return _user_problems(document)
    if kind == ACLS:
        return _acl_problems(name, document)
    return []


def _user_problems(doc: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    if "password" in doc:
        problems.append(
            "a plain-text password is never stored: send it to the API (which hashes it) "
            "or give password_hash"
        )
    unknown = sorted(set(doc) - USER_FIELDS - {"password"})
    if unknown:
        problems.append(f"unknown fields: {', '.join(unknown)}")
    role = doc.get("role")
    if role not in tuple(Role):
        problems.append(f"role must be one of {', '.join(Role)}, not {role!r}")
    agent = doc.get("agent")
    if role == Role.AGENT and agent is None:
        problems.append("a user with role agent must name their ACD agent (agent: ...)")
    if agent is not None and (not isinstance(agent, str) or not 1 <= len(agent) <= 64):
        problems.append("agent must be an agent id (1 to 64 characters)")
    if "password_hash" in doc:
        try:
            ScryptParams.parse(str(doc["password_hash"]))
        except ValueError as exc:
            problems.append(f"password_hash: {exc}")
    if not isinstance(doc.get("disabled", False), bool):
        problems.append("disabled must be true or false")
    name = doc.get("display_name")
    if name is not None and (not isinstance(name, str) or len(name) > 200):
        problems.append("display_name must be a string of at most 200 characters")
    keys = doc.get("api_keys", [])
    if not isinstance(keys, list):
        return [*problems, "api_keys must be a list"]
    ids: set[str] = set()
    for i, key in enumerate(keys):
        where = f"api_keys[{i}]"
        if not isinstance(key, Mapping):
            problems.append(f"{where} must be a mapping")
            continue
        unknown = sorted(set(key) - KEY_FIELDS)
        if unknown:
            problems.append(f"{where}: unknown fields: {', '.join(unknown)}")
        key_id = key.get("id")
        if not isinstance(key_id, str) or not KEY_ID_PATTERN.match(key_id):
            problems.append(f"{where}.id must be 1 to 64 letters, digits, '_' or '-'")
        elif key_id in ids:
            problems.append(f"{where}.id {key_id!r} is used twice")
        else:
            ids.add(key_id)
        if not isinstance(key.get("sha256"), str) or not SHA256_PATTERN.match(key["sha256"]):
            problems.append(f"{where}.sha256 must be 64 lowercase hex digits")
        for text in ("label", "created_at"):
            value = key.get(text)
            if value is not None and (not isinstance(value, str) or len(value) > 200):
                problems.append(f"{where}.{text} must be a string of at most 200 characters")
    return problems


def _acl_problems(name: str, doc: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    if name not in tuple(Role):
        problems.append(f"an ACL is named after the role it restricts ({', '.join(Role)})")
    unknown = sorted(set(doc) - ACL_FIELDS)
    if unknown:
        problems.append(f"unknown fields: {', '.join(unknown)}")
    allow = doc.get("allow")
    if not isinstance(allow, list):
        return [*problems, "allow must be a list of networks (CIDR), e.g. [192.0.2.0/24]"]
    for i, item in enumerate(allow):
        try:
            ipaddress.ip_network(str(item), strict=False)
        except ValueError:
            problems.append(f"allow[{i}]: {item!r} is not an IP network (CIDR)")
    return problems


def parse_allow_list(
    doc: Mapping[str, Any],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """The networks of an ``acls`` document (assumed valid; bad items are skipped)."""
    out: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for item in doc.get("allow") or ():
        try:
            out.append(ipaddress.ip_network(str(item), strict=False))
        except ValueError:
            continue
    return tuple(out)


def address_allowed(
    host: str | None, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
) -> bool:
    """Whether the client address ``host`` is inside one of ``networks``. An address that
    cannot be parsed (a Unix socket, a test client's name) is outside every network."""
    if host is None:
        return False
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


# --- secrets in and out ----------------------------------------------------------------


def _fingerprint(secret: str) -> str:
    return REDACTED_PREFIX + hashlib.sha256(secret.encode()).hexdigest()[:12]


def _is_redacted(value: object) -> bool:
    return isinstance(value, str) and value.startswith(REDACTED_PREFIX)


def redact(kind: str, document: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``document`` as the API shows it: hashes replaced by fingerprints, agents' and
    trunks' passwords by ``<redacted>`` (written back, it keeps the stored one)."""
    if document is None:
        return None
    if kind != USERS:
        return redact_document(kind, document)
    out = dict(document)
    if isinstance(out.get("password_hash"), str):
        out["password_hash"] = _fingerprint(out["password_hash"])
    keys = out.get("api_keys")
    if isinstance(keys, list):
        out["api_keys"] = [
            {**k, "sha256": _fingerprint(str(k.get("sha256")))} if isinstance(k, Mapping) else k
            for k in keys
        ]
    return out


def prepare_user_document(
    name: str, incoming: Mapping[str, Any], stored: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Turn what a client sent for ``users/<name>`` into what is stored.

    * ``password`` (plain text) becomes ``password_hash`` — unless it matches the stored
      hash, which is then kept (so re-applying the same file is no change);
    * no ``password_hash``, or a redacted one, keeps the stored hash;
    * no ``api_keys`` keeps the stored keys; a key whose ``sha256`` is redacted gets the
      stored digest of the key with the same id back.

    Slow when a password is given (scrypt): call it off the event loop.
    """
    doc = dict(incoming)
    stored = stored or {}
    problems: list[str] = []
    if "password" in doc:
        password = doc.pop("password")
        problem = password_problem(password)
        if problem is not None:
            problems.append(problem)
        else:
            held = stored.get("password_hash")
            if isinstance(held, str) and verify_password(password, held):
                doc["password_hash"] = held
            else:
                doc["password_hash"] = hash_password(password)
    elif _is_redacted(doc.get("password_hash")) or "password_hash" not in doc:
        if _is_redacted(doc.get("password_hash")) and doc["password_hash"] != _fingerprint(
            str(stored.get("password_hash"))
        ):
            problems.append("password_hash is a redacted placeholder of another hash")
        doc.pop("password_hash", None)
        if isinstance(stored.get("password_hash"), str):
            doc["password_hash"] = stored["password_hash"]
    if "api_keys" not in doc:
        if "api_keys" in stored:
            doc["api_keys"] = stored["api_keys"]
    elif isinstance(doc["api_keys"], list):
        held_keys = {k.get("id"): k for k in stored.get("api_keys") or () if isinstance(k, Mapping)}
        keys: list[Any] = []
        for given in doc["api_keys"]:
            key = given
            if isinstance(given, Mapping) and _is_redacted(given.get("sha256")):
                match = held_keys.get(given.get("id"))
                if match is None or given["sha256"] != _fingerprint(str(match.get("sha256"))):
                    problems.append(
                        f"api key {given.get('id')!r}: a redacted digest can only keep the "
                        "stored key of the same id"
                    )
                    continue
                key = {**given, "sha256": match["sha256"]}
            keys.append(key)
        doc["api_keys"] = keys
    if problems:
        raise ConfigValidationError([f"{USERS}/{name}: {p}" for p in problems])
    return doc


def hash_user_secrets(desired: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    """``prepare_user_document`` over a whole ``{kind: {name: document}}`` (for ``apply``
    and for seeding from YAML): the users documents are prepared against ``current``'s."""
    out = dict(desired)
    users = desired.get(USERS)
    if isinstance(users, Mapping):
        held = current.get(USERS) or {}
        out[USERS] = {
            name: prepare_user_document(name, doc, held.get(name))
            if isinstance(doc, Mapping)
            else doc
            for name, doc in users.items()
        }
    return out


async def seed_api_key(store: Store, name: str, token: str, role: str = Role.ADMIN) -> bool:
    """Make sure ``users/<name>`` exists and accepts ``token`` as an API key.

    Called by the server at start-up (the demo configuration's ``demo-admin-key``). A
    missing user is created with ``role``; an existing one keeps its role and its
    ``disabled`` flag (an operator who demoted or disabled it is obeyed) and gets the key
    added if it is not there. Idempotent: a second call writes nothing. Returns whether
    anything was written. Do not call it on a DR standby: its configuration must come only
    from the primary's change log.
    """
    if role not in tuple(Role):
        raise ValueError(f"role must be one of {', '.join(Role)}")
    digest = key_digest(token)
    config: ConfigStore = store.config
    entity = await config.get(USERS, name)
    doc: dict[str, Any] = (
        dict(entity.document) if entity is not None else {"role": str(role), "disabled": False}
    )
    keys = [k for k in doc.get("api_keys") or () if isinstance(k, Mapping)]
    if any(k.get("sha256") == digest for k in keys):
        return False
    ids = {k.get("id") for k in keys}
    key_id = "seed" if "seed" not in ids else f"seed-{digest[:8]}"
    doc["api_keys"] = [*keys, {"id": key_id, "sha256": digest, "label": "seeded at start-up"}]
    problems = validate_auth_document(USERS, name, doc)
    if problems:
        raise ConfigValidationError([f"{USERS}/{name}: {p}" for p in problems])
    await config.put(
        USERS, name, doc, SEED_ACTOR, expected_revision=entity.revision if entity else 0
    )
    return True
