"""Password hashes and API keys: what is stored, and how a presented secret is checked.

* **Passwords** are hashed with scrypt (RFC 7914) from the standard library: memory-hard,
  so a stolen configuration (it replicates to the DR site) does not give the passwords away
  to a GPU farm. The stored form carries its parameters and salt,
  ``scrypt$<N>$<r>$<p>$<salt>$<hash>`` (base64), so the cost can be raised later without
  invalidating existing hashes. Parameters read from a stored hash are bounded: a forged
  document must not make every login allocate gigabytes.
* **API keys** are 256-bit random tokens (``tsk_`` + 43 url-safe characters), shown once
  at creation. Only their SHA-256 is stored: the token already has full entropy, so a
  slow KDF would add nothing but latency to every request, and a plain hash lets the key
  be found by lookup instead of by trying every stored hash.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

#: scrypt cost: N=2^15, r=8 (32 MiB, ~0.1 s here) — above the 16 MiB floor RFC 7914 §2
#: discusses for interactive logins, without letting a burst of logins exhaust memory.
SCRYPT_N = 1 << 15
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
#: What a stored hash may ask for (the low end keeps test fixtures fast).
N_RANGE = (1 << 10, 1 << 20)
R_RANGE = (1, 32)
P_RANGE = (1, 16)
PASSWORD_MIN = 8
PASSWORD_MAX = 1024

KEY_PREFIX = "tsk_"
KEY_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class ScryptParams:
    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes

    @classmethod
    def parse(cls, encoded: str) -> ScryptParams:
        """Parse ``scrypt$N$r$p$salt$hash``; :class:`ValueError` says what is wrong."""
        parts = encoded.split("$")
        if len(parts) != 6 or parts[0] != "scrypt":
            raise ValueError("not a scrypt$N$r$p$salt$hash string")
        try:
            n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
            salt = base64.b64decode(parts[4], validate=True)
            digest = base64.b64decode(parts[5], validate=True)
        except (ValueError, binascii.Error):
            raise ValueError("malformed scrypt parameters") from None
        if n & (n - 1) or not N_RANGE[0] <= n <= N_RANGE[1]:
            raise ValueError(f"scrypt N must be a power of two in {N_RANGE}")
        if not R_RANGE[0] <= r <= R_RANGE[1] or not P_RANGE[0] <= p <= P_RANGE[1]:
            raise ValueError(f"scrypt r must be in {R_RANGE} and p in {P_RANGE}")
        if len(salt) < 8 or not 16 <= len(digest) <= 64:
            raise ValueError("scrypt salt must be >= 8 bytes and the hash 16 to 64 bytes")
        return cls(n, r, p, salt, digest)

    def derive(self, password: str) -> bytes:
        return _scrypt(password, self.salt, n=self.n, r=self.r, p=self.p, length=len(self.digest))

    def __str__(self) -> str:
        salt = base64.b64encode(self.salt).decode()
        digest = base64.b64encode(self.digest).decode()
        return f"scrypt${self.n}${self.r}${self.p}${salt}${digest}"


def _scrypt(password: str, salt: bytes, *, n: int, r: int, p: int, length: int) -> bytes:
    # scrypt needs 128·r·N bytes for its main array (RFC 7914 §5) plus a little.
    maxmem = 128 * r * (n + p + 2) + (1 << 20)
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=maxmem, dklen=length
    )


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """The stored form of ``password`` (slow on purpose: call it off the event loop)."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, n=n, r=r, p=p, length=HASH_BYTES)
    return str(ScryptParams(n, r, p, salt, digest))


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches the stored ``encoded`` hash (constant-time compare).
    A malformed stored hash never matches."""
    try:
        params = ScryptParams.parse(encoded)
    except ValueError:
        return False
    return hmac.compare_digest(params.derive(password), params.digest)


#: Verified against when the user does not exist, so an unknown user costs what a wrong
#: password costs (the two must be indistinguishable, timing included).
DUMMY_HASH = str(ScryptParams(SCRYPT_N, SCRYPT_R, SCRYPT_P, b"\0" * SALT_BYTES, b"\0" * HASH_BYTES))


def password_problem(password: object) -> str | None:
    """Why ``password`` cannot be set, or ``None``."""
    if not isinstance(password, str):
        return "password must be a string"
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        return f"password must be {PASSWORD_MIN} to {PASSWORD_MAX} characters"
    return None


def new_api_key() -> tuple[str, str]:
    """A fresh ``(key_id, token)``. The id names the key in lists and for revocation; the
    token is the secret, shown once."""
    return "k" + secrets.token_hex(6), KEY_PREFIX + secrets.token_urlsafe(32)


def key_digest(token: str) -> str:
    """What is stored for an API key: the hex SHA-256 of the token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
