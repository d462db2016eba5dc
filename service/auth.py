"""Credentials: where they are read from, what a virtual key looks like, and JWT checks.

A caller presents one credential, in the first of these call-metadata entries
(HTTP headers on REST, the same names as gRPC metadata):

    authorization: Bearer <token>    (the openai SDK with azure_ad_token, curl, gRPC callers)
    api-key: <token>                 (the AzureOpenAI SDK's default)
    x-bf-vk: <token>                 (Bifrost's virtual-key header)

The token is one of three kinds, told apart by its shape:

- ``sk-bf-…``: a virtual key. Only its SHA-256 is stored; the secret carries 256
  random bits, so a fast hash is enough (a slow KDF protects low-entropy
  passwords, which these are not) and the lookup stays off the hot path's budget.
- ``xxx.yyy.zzz``: a JWT, verified with pyjwt against the configured key and the
  configured algorithms only (never the token header's say-so): an admin JWT, or a
  virtual-key JWT whose claim names a virtual key.
- anything else: compared (in constant time) with the bootstrap admin token.

This module only reads and verifies; ``service/governance.py`` decides what a
verified identity may do.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import orjson

from switchyard.config import VIRTUAL_KEY_PREFIX, AuthConfig, JwtConfig

CREDENTIAL_HEADERS = ("authorization", "api-key", "x-bf-vk")
_HMAC_ALGORITHMS = frozenset({"HS256"})
_CACHE_LIMIT = 4096


class AuthError(Exception):
    """A credential is missing, malformed, forged or expired. ``str()`` is safe to show."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is calling, once the credential checked out."""

    kind: str  # "admin" | "virtual_key"
    subject: str  # admin: the token's `sub` (or "bootstrap"); virtual key: its id
    key_hash: str = ""  # for a virtual key presented directly
    key_id: str = ""  # for a virtual-key JWT
    expires_at: float | None = None  # a JWT's exp

    @property
    def is_admin(self) -> bool:
        return self.kind == "admin"


def read_credential(metadata: Iterable[tuple[str, str | bytes]]) -> str | None:
    """The first credential in ``metadata``, by ``CREDENTIAL_HEADERS`` order; None when there is none."""
    found: dict[str, str] = {}
    for name, value in metadata:
        lowered = name.lower()
        if lowered in CREDENTIAL_HEADERS and isinstance(value, str) and lowered not in found:
            found[lowered] = value
    for name in CREDENTIAL_HEADERS:
        value = found.get(name, "").strip()
        if name == "authorization":
            scheme, _, token = value.partition(" ")
            value = token.strip() if scheme.lower() == "bearer" else ""
        if value:
            return value
    return None


def new_virtual_key() -> str:
    """A fresh secret: ``sk-bf-`` and 32 random bytes, URL-safe base64 (43 characters)."""
    return VIRTUAL_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def key_prefix(secret: str) -> str:
    """What may be shown of a secret so people can tell their keys apart."""
    return secret[: len(VIRTUAL_KEY_PREFIX) + 4]


def same_secret(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and not token.startswith(VIRTUAL_KEY_PREFIX)


class Authenticator:
    """Turns a credential into an :class:`Identity`, or raises :class:`AuthError`.

    It does not look virtual keys up: a virtual key yields an identity carrying its
    hash, which the governance layer resolves against its key cache.
    """

    def __init__(self, config: AuthConfig) -> None:
        self._admin_token = config.admin_token.value if config.admin_token else None
        self._jwt = JwtVerifier(config.jwt)
        # Verified JWTs, so a client reusing a token pays for the signature check once.
        self._verified: dict[str, Identity] = {}

    @property
    def accepts_jwts(self) -> bool:
        return self._jwt.configured

    def identify(self, token: str, now: float) -> Identity:
        if token.startswith(VIRTUAL_KEY_PREFIX):
            return Identity("virtual_key", "", key_hash=hash_secret(token))
        if looks_like_jwt(token):
            cached = self._verified.get(token)
            if cached is not None and (cached.expires_at is None or cached.expires_at > now):
                return cached
            identity = self._jwt.identify(token)
            if len(self._verified) >= _CACHE_LIMIT:
                self._verified.clear()
            self._verified[token] = identity
            return identity
        if self._admin_token is not None and same_secret(token, self._admin_token):
            return Identity("admin", "bootstrap")
        raise AuthError("the credential is not a valid virtual key, JWT or admin token")


class JwtVerifier:
    """pyjwt with the algorithms, keys, issuer and audience from the config, and nothing else."""

    def __init__(self, config: JwtConfig) -> None:
        self._config = config
        self._secret = config.secret.value if config.secret else None
        self._public_keys: list[Any] = []
        self._jwks: dict[str, Any] = {}
        if config.public_key_file:
            self._public_keys.append(Path(config.public_key_file).read_bytes())
        if config.jwks_file:
            jwk_set = jwt.PyJWKSet.from_dict(orjson.loads(Path(config.jwks_file).read_bytes()))
            for index, jwk in enumerate(jwk_set.keys):
                self._jwks[jwk.key_id or f"#{index}"] = jwk.key

    @property
    def configured(self) -> bool:
        return bool(self._secret or self._public_keys or self._jwks)

    def identify(self, token: str) -> Identity:
        claims = self.verify(token)
        config = self._config
        role = claims.get(config.admin_claim)
        is_admin = role == config.admin_value or (isinstance(role, list) and config.admin_value in role)
        exp = float(claims["exp"])
        if is_admin:
            return Identity("admin", str(claims.get("sub") or "admin-jwt"), expires_at=exp)
        key_id = claims.get(config.virtual_key_claim)
        if not isinstance(key_id, str) or not key_id:
            claim = config.virtual_key_claim
            raise AuthError(f"the JWT is neither an admin token nor names a virtual key (claim {claim!r})")
        return Identity("virtual_key", key_id, key_id=key_id, expires_at=exp)

    def verify(self, token: str) -> dict[str, Any]:
        """The verified claims. The algorithm must be one configured, and its key must match its family."""
        if not self.configured:
            raise AuthError("JWTs are not accepted here (auth.jwt has no secret or public key)")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError("malformed JWT") from None
        algorithm = header.get("alg")
        if algorithm not in self._config.algorithms:
            # Covers `none` and any algorithm the operator did not enable.
            raise AuthError(f"JWT algorithm {algorithm!r} is not accepted")
        key = self._key_for(algorithm, header.get("kid"))
        options = {"require": ["exp"], "verify_aud": bool(self._config.audience)}
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self._config.audience or None,
                issuer=self._config.issuer or None,
                leeway=self._config.leeway_s,
                options=options,  # type: ignore[arg-type]
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("the JWT has expired") from None
        except jwt.InvalidAudienceError:
            raise AuthError("the JWT is not meant for this audience") from None
        except jwt.InvalidIssuerError:
            raise AuthError("the JWT comes from an issuer this gateway does not trust") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(f"the JWT lacks the required claim {exc.claim!r}") from None
        except (jwt.PyJWTError, TypeError):
            # TypeError: pyjwt's answer to a key of another family than the algorithm (an RS256
            # token whose `kid` names an EC key of the JWKS). The header is the caller's to
            # choose, so that is a bad token (401), not a server error.
            raise AuthError("the JWT signature does not verify") from None

    def _key_for(self, algorithm: str, kid: object) -> Any:
        # The key family follows the algorithm we accepted, so a public key is never
        # used as an HMAC secret (the HS/RS confusion attack).
        if algorithm in _HMAC_ALGORITHMS:
            if self._secret is None:
                raise AuthError(f"JWT algorithm {algorithm!r} is not accepted")
            return self._secret
        if isinstance(kid, str) and kid in self._jwks:
            return self._jwks[kid]
        if self._public_keys:
            return self._public_keys[0]
        if len(self._jwks) == 1:
            return next(iter(self._jwks.values()))
        raise AuthError("no public key matches the JWT's key id")


def mint_jwt(
    config: JwtConfig,
    *,
    subject: str,
    ttl_s: float,
    now: float,
    admin: bool = False,
    virtual_key_id: str | None = None,
) -> str:
    """Sign a development token with the configured HS256 secret (``switchyard token mint``)."""
    if config.secret is None:
        raise AuthError("auth.jwt.secret is not set: cannot sign tokens")
    claims: dict[str, Any] = {"sub": subject, "iat": int(now), "exp": int(now + ttl_s)}
    if config.issuer:
        claims["iss"] = config.issuer
    if config.audience:
        claims["aud"] = config.audience
    if admin:
        claims[config.admin_claim] = config.admin_value
    if virtual_key_id:
        claims[config.virtual_key_claim] = virtual_key_id
    return jwt.encode(claims, config.secret.value, algorithm="HS256")
