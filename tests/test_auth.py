"""Credentials (``service/auth.py``): where they are read from, virtual-key secrets, and JWT checks.

Pure unit tests: the verifier is built from ``JwtConfig`` objects with key files in a temp
directory, and tokens are signed here with pyjwt (or forged by hand for the attacks).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from service.auth import (
    CREDENTIAL_HEADERS,
    Authenticator,
    AuthError,
    Identity,
    JwtVerifier,
    hash_secret,
    key_prefix,
    looks_like_jwt,
    mint_jwt,
    new_virtual_key,
    read_credential,
)
from switchyard.config import AuthConfig, JwtConfig, Secret

HS_SECRET = "unit-test-hs256-secret-0123456789abcdef"
ADMIN_TOKEN = "adm-unit-test-bootstrap-token-42"
ISSUER = "https://idp.unit.test"
AUDIENCE = "switchyard-unit"

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
EC_KEY_2 = ec.generate_private_key(ec.SECP256R1())
RSA_PUBLIC_PEM = RSA_KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)
URLSAFE_43 = re.compile(r"^[A-Za-z0-9_-]{43}$")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def claims(ttl_s: float = 300, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": ISSUER, "aud": AUDIENCE, "sub": "unit", "iat": now, "exp": now + int(ttl_s), **extra}


def ec_jwk(key: ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    jwk = orjson.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": kid, "use": "sig", "alg": "ES256"})
    return jwk


@pytest.fixture
def key_files(tmp_path: Path) -> dict[str, str]:
    """A PEM file with the RSA public key and a JWKS with two EC keys (kids ec-1, ec-2)."""
    pem = tmp_path / "rsa.pem"
    pem.write_bytes(RSA_PUBLIC_PEM)
    jwks = tmp_path / "jwks.json"
    jwks.write_bytes(orjson.dumps({"keys": [ec_jwk(EC_KEY, "ec-1"), ec_jwk(EC_KEY_2, "ec-2")]}))
    return {"public_key_file": str(pem), "jwks_file": str(jwks)}


def jwt_config(**fields: Any) -> JwtConfig:
    values: dict[str, Any] = {
        "algorithms": ("HS256", "RS256", "ES256"),
        "secret": Secret(HS_SECRET),
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "leeway_s": 0.0,
    }
    values.update(fields)
    return JwtConfig(**values)


@pytest.fixture
def verifier(key_files: dict[str, str]) -> JwtVerifier:
    """Every key kind configured: the HS256 secret, the RSA PEM and the EC JWKS."""
    return JwtVerifier(jwt_config(**key_files))


def refused(verifier: JwtVerifier, token: str, message: str) -> None:
    with pytest.raises(AuthError, match=message):
        verifier.identify(token)


# ---------------------------------------------------------------- read_credential


def test_credential_headers_are_read_in_a_fixed_order_whatever_order_they_arrive_in() -> None:
    """``authorization: Bearer`` beats ``api-key`` beats ``x-bf-vk``, regardless of metadata order."""
    assert CREDENTIAL_HEADERS == ("authorization", "api-key", "x-bf-vk")
    everything = [("x-bf-vk", "from-vk"), ("api-key", "from-api-key"), ("authorization", "Bearer from-auth")]
    assert read_credential(everything) == "from-auth"
    assert read_credential(list(reversed(everything))) == "from-auth"
    assert read_credential([("x-bf-vk", "from-vk"), ("api-key", "from-api-key")]) == "from-api-key"
    assert read_credential([("x-bf-vk", "from-vk")]) == "from-vk"
    assert read_credential([("user-agent", "sdk"), ("x-other", "v")]) is None
    assert read_credential([]) is None


def test_header_names_are_case_insensitive_and_the_first_occurrence_wins() -> None:
    """Names match in any case (REST headers arrive capitalised); a repeated header keeps its first value."""
    assert read_credential([("API-Key", " tok ")]) == "tok"
    assert read_credential([("X-BF-VK", "vk")]) == "vk"
    assert read_credential([("api-key", "first"), ("api-key", "second")]) == "first"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Bearer tok-1", "tok-1"),
        ("bearer tok-1", "tok-1"),
        ("BEARER tok-1", "tok-1"),
        ("BeArEr    tok-1   ", "tok-1"),
        ("  Bearer tok-1", "tok-1"),
        ("Basic dXNlcjpwYXNz", None),
        ("Token tok-1", None),
        ("tok-1", None),  # no scheme: not a bearer credential
        ("Bearer", None),
        ("Bearer    ", None),
        ("", None),
    ],
)
def test_authorization_needs_the_bearer_scheme_in_any_case(value: str, expected: str | None) -> None:
    """Only ``Bearer`` (any case) counts in ``authorization``; other schemes and empty tokens do not."""
    assert read_credential([("authorization", value)]) == expected


def test_an_unusable_authorization_falls_through_to_the_next_header() -> None:
    """Basic auth (the SDKs may send it) or an empty bearer does not hide an ``api-key``."""
    assert read_credential([("authorization", "Basic abc"), ("api-key", "key-1")]) == "key-1"
    assert read_credential([("authorization", "Bearer "), ("x-bf-vk", "vk-1")]) == "vk-1"


def test_empty_values_are_no_credential() -> None:
    """Blank values are skipped: the next header is used, or there is no credential at all."""
    assert read_credential([("api-key", ""), ("x-bf-vk", "vk-1")]) == "vk-1"
    assert read_credential([("api-key", "   "), ("x-bf-vk", "vk-1")]) == "vk-1"
    assert read_credential([("api-key", ""), ("x-bf-vk", "  ")]) is None


def test_binary_metadata_values_are_ignored() -> None:
    """gRPC binary metadata arrives as bytes: it is never taken as a credential."""
    assert read_credential([("api-key", b"sk-bf-bytes"), ("x-bf-vk", "vk-1")]) == "vk-1"
    assert read_credential([("authorization", b"Bearer tok")]) is None
    # A bytes entry does not shadow a later str entry of the same name.
    assert read_credential([("api-key", b"bin"), ("api-key", "text-key")]) == "text-key"


# ---------------------------------------------------------------- virtual-key secrets


def test_new_virtual_keys_are_prefixed_32_random_bytes_and_unique() -> None:
    """``sk-bf-`` + 43 URL-safe base64 characters that decode to 32 bytes; no two alike."""
    made = {new_virtual_key() for _ in range(2000)}
    assert len(made) == 2000
    for secret in list(made)[:200]:
        assert secret.startswith("sk-bf-")
        body = secret.removeprefix("sk-bf-")
        assert URLSAFE_43.match(body), secret
        assert len(base64.urlsafe_b64decode(body + "=")) == 32
    # 256 random bits: every position takes many values (a constant or counter would not).
    bodies = [s.removeprefix("sk-bf-") for s in made]
    assert all(len({b[i] for b in bodies}) > 30 for i in range(42))


def test_hash_secret_is_hex_sha256_and_key_prefix_shows_only_the_start() -> None:
    """The stored form of a secret is its SHA-256 (hex); the shown prefix is ``sk-bf-`` + 4 characters."""
    secret = new_virtual_key()
    assert hash_secret(secret) == hashlib.sha256(secret.encode()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", hash_secret(secret))
    assert hash_secret(secret) == hash_secret(secret)
    assert hash_secret(secret) != hash_secret(secret + "x")
    assert hash_secret("") == hashlib.sha256(b"").hexdigest()
    assert key_prefix(secret) == secret[:10] and len(key_prefix(secret)) == 10


def test_looks_like_jwt() -> None:
    """Three dot-separated parts make a JWT, unless it is a virtual key."""
    assert looks_like_jwt("a.b.c")
    assert not looks_like_jwt("a.b")
    assert not looks_like_jwt("a.b.c.d")
    assert not looks_like_jwt("sk-bf-a.b.c")


# ---------------------------------------------------------------- Authenticator


@pytest.fixture
def authenticator(key_files: dict[str, str]) -> Authenticator:
    return Authenticator(AuthConfig(admin_token=Secret(ADMIN_TOKEN), jwt=jwt_config(**key_files)))


def test_identify_a_virtual_key_by_its_hash(authenticator: Authenticator) -> None:
    """A ``sk-bf-`` secret becomes a virtual-key identity carrying only the secret's hash."""
    secret = new_virtual_key()
    identity = authenticator.identify(secret, time.time())
    assert identity == Identity("virtual_key", "", key_hash=hash_secret(secret))
    assert not identity.is_admin
    assert secret not in repr(identity)


def test_identify_the_bootstrap_admin_token(authenticator: Authenticator) -> None:
    """The configured admin token is admin; anything else opaque is refused."""
    identity = authenticator.identify(ADMIN_TOKEN, time.time())
    assert identity.is_admin and identity.subject == "bootstrap"
    for wrong in (ADMIN_TOKEN + "x", ADMIN_TOKEN[:-1], ADMIN_TOKEN.upper(), "x"):
        with pytest.raises(AuthError, match="not a valid virtual key, JWT or admin token"):
            authenticator.identify(wrong, time.time())


def test_without_an_admin_token_no_opaque_token_is_admin() -> None:
    """No ``auth.admin_token``: no string (not even an empty one) is accepted as admin."""
    auth = Authenticator(AuthConfig(admin_token=None))
    for token in ("", "anything", ADMIN_TOKEN):
        with pytest.raises(AuthError):
            auth.identify(token, time.time())


def test_identify_admin_and_virtual_key_jwts(authenticator: Authenticator) -> None:
    """An admin JWT (claim ``role``: ``admin``, or a list holding it) is admin with its ``sub`` and
    ``exp``; a JWT naming a key in ``vk`` acts as that key; one with neither is refused."""
    body = claims(role="admin", sub="alice")
    admin = authenticator.identify(jwt.encode(body, HS_SECRET, algorithm="HS256"), time.time())
    assert (admin.kind, admin.subject, admin.expires_at) == ("admin", "alice", float(body["exp"]))
    listed = jwt.encode(claims(role=["reader", "admin"]), RSA_KEY, algorithm="RS256")
    assert authenticator.identify(listed, time.time()).is_admin
    vk = authenticator.identify(jwt.encode(claims(vk="key-7"), HS_SECRET, algorithm="HS256"), time.time())
    assert (vk.kind, vk.subject, vk.key_id, vk.key_hash) == ("virtual_key", "key-7", "key-7", "")
    for bad in (claims(), claims(role="reader"), claims(vk=""), claims(vk=7)):
        with pytest.raises(AuthError, match="neither an admin token nor names a virtual key"):
            authenticator.identify(jwt.encode(bad, HS_SECRET, algorithm="HS256"), time.time())


class _Refusing:
    """Stands in for the verifier once a token is cached: any call means the cache was bypassed."""

    def __init__(self) -> None:
        self.calls = 0

    def identify(self, token: str) -> Identity:
        self.calls += 1
        raise AuthError("the JWT has expired")


def test_the_verified_jwt_cache_never_serves_a_token_past_its_exp(authenticator: Authenticator) -> None:
    """A verified JWT is cached (reused without verifying again) only until its ``exp``; from then on
    it goes back to the verifier, which refuses it."""
    body = claims(ttl_s=120, role="admin")
    token = jwt.encode(body, HS_SECRET, algorithm="HS256")
    first = authenticator.identify(token, time.time())
    refusing = _Refusing()
    authenticator._jwt = refusing  # type: ignore[assignment]
    # Before exp: the cached identity, no verification.
    assert authenticator.identify(token, body["exp"] - 1) == first
    assert refusing.calls == 0
    # At and past exp: the cache does not answer.
    for now in (body["exp"], body["exp"] + 3600):
        with pytest.raises(AuthError, match="expired"):
            authenticator.identify(token, now)
    assert refusing.calls == 2


def test_a_token_refused_once_is_not_cached(authenticator: Authenticator) -> None:
    """Failures are not remembered as successes: a forged token is refused every time."""
    forged = jwt.encode(claims(role="admin"), "not-the-secret-0123456789abcdef-x", algorithm="HS256")
    for _ in range(3):
        with pytest.raises(AuthError, match="signature"):
            authenticator.identify(forged, time.time())


# ---------------------------------------------------------------- JwtVerifier: algorithms


def test_each_configured_algorithm_verifies_with_its_own_key(verifier: JwtVerifier) -> None:
    """HS256 with the secret, RS256 with the PEM, ES256 with the JWKS key its ``kid`` names."""
    tokens = {
        "HS256": jwt.encode(claims(role="admin"), HS_SECRET, algorithm="HS256"),
        "RS256": jwt.encode(claims(role="admin"), RSA_KEY, algorithm="RS256"),
        "ES256 ec-1": jwt.encode(claims(role="admin"), EC_KEY, algorithm="ES256", headers={"kid": "ec-1"}),
        "ES256 ec-2": jwt.encode(claims(role="admin"), EC_KEY_2, algorithm="ES256", headers={"kid": "ec-2"}),
    }
    for name, token in tokens.items():
        assert verifier.identify(token).is_admin, name


def test_alg_none_is_refused(verifier: JwtVerifier) -> None:
    """An unsigned token (``alg: none``) is refused whatever it claims."""
    header = b64(orjson.dumps({"alg": "none", "typ": "JWT"}))
    payload = b64(orjson.dumps(claims(role="admin")))
    for token in (f"{header}.{payload}.", f"{header}.{payload}.c2ln"):
        refused(verifier, token, "algorithm 'none' is not accepted")
    none_upper = b64(orjson.dumps({"alg": "None"}))
    refused(verifier, f"{none_upper}.{payload}.", "is not accepted")


def test_an_algorithm_outside_the_configured_list_is_refused(key_files: dict[str, str]) -> None:
    """The token's header never widens ``algorithms``: HS384/RS512 are refused, and so is RS256 or
    ES256 when only HS256 is enabled, even though a matching key is configured."""
    only_hs = JwtVerifier(jwt_config(algorithms=("HS256",), **key_files))
    refused(
        only_hs, jwt.encode(claims(role="admin"), HS_SECRET * 2, algorithm="HS384"), "'HS384' is not accepted"
    )
    refused(only_hs, jwt.encode(claims(role="admin"), RSA_KEY, algorithm="RS256"), "'RS256' is not accepted")
    refused(only_hs, jwt.encode(claims(role="admin"), RSA_KEY, algorithm="RS512"), "'RS512' is not accepted")
    es = jwt.encode(claims(role="admin"), EC_KEY, algorithm="ES256", headers={"kid": "ec-1"})
    refused(only_hs, es, "'ES256' is not accepted")
    assert only_hs.identify(jwt.encode(claims(role="admin"), HS_SECRET, algorithm="HS256")).is_admin


def _hs256_signed_with(secret: bytes, body: dict[str, Any]) -> str:
    signing_input = f"{b64(orjson.dumps({'alg': 'HS256', 'typ': 'JWT'}))}.{b64(orjson.dumps(body))}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def test_hs_rs_confusion_with_the_public_key_as_hmac_secret_is_refused(key_files: dict[str, str]) -> None:
    """The classic attack: HS256 signed with the server's RSA public key PEM as the HMAC secret.
    Refused with the real HS secret configured, with no HS secret at all (the PEM is never used
    as an HMAC key), and when HS256 is not enabled."""
    forged = _hs256_signed_with(RSA_PUBLIC_PEM, claims(role="admin"))
    refused(JwtVerifier(jwt_config(**key_files)), forged, "signature does not verify")
    no_secret = JwtVerifier(jwt_config(secret=None, **key_files))
    refused(no_secret, forged, "'HS256' is not accepted")
    rs_only = JwtVerifier(jwt_config(algorithms=("RS256",), secret=None, **key_files))
    refused(rs_only, forged, "'HS256' is not accepted")
    # The PEM itself verifies RS256 tokens there: the key is fine, the algorithm family is what is refused.
    assert rs_only.identify(jwt.encode(claims(role="admin"), RSA_KEY, algorithm="RS256")).is_admin


def test_a_token_whose_kid_names_a_key_of_another_family_is_refused_not_crashed(
    verifier: JwtVerifier,
) -> None:
    """An RS256 token whose ``kid`` names one of the JWKS's EC keys (or ES256 with no kid, which
    falls back to the RSA PEM) is a plain 401: the attacker-chosen header must not raise anything
    but ``AuthError`` (a TypeError from the JWT library would become a 500)."""
    rs_with_ec_kid = jwt.encode(claims(role="admin"), RSA_KEY, algorithm="RS256", headers={"kid": "ec-1"})
    refused(verifier, rs_with_ec_kid, "signature does not verify")
    es_without_kid = jwt.encode(claims(role="admin"), EC_KEY, algorithm="ES256")
    refused(verifier, es_without_kid, "signature does not verify")
    hs_with_ec_kid = jwt.encode(claims(role="admin"), HS_SECRET, algorithm="HS256", headers={"kid": "ec-1"})
    assert verifier.identify(hs_with_ec_kid).is_admin  # HS256 always uses the secret, whatever the kid


def test_es256_through_a_jwks_picks_the_key_by_kid(key_files: dict[str, str]) -> None:
    """With several JWKS keys the ``kid`` decides: the wrong kid fails the signature; an unknown
    kid with no PEM to fall back on names the problem."""
    verifier = JwtVerifier(jwt_config(algorithms=("ES256",), secret=None, jwks_file=key_files["jwks_file"]))
    good = jwt.encode(claims(role="admin"), EC_KEY_2, algorithm="ES256", headers={"kid": "ec-2"})
    assert verifier.identify(good).is_admin
    swapped = jwt.encode(claims(role="admin"), EC_KEY_2, algorithm="ES256", headers={"kid": "ec-1"})
    refused(verifier, swapped, "signature does not verify")
    unknown = jwt.encode(claims(role="admin"), EC_KEY, algorithm="ES256", headers={"kid": "nope"})
    refused(verifier, unknown, "no public key matches")
    no_kid = jwt.encode(claims(role="admin"), EC_KEY, algorithm="ES256")
    refused(verifier, no_kid, "no public key matches")
    forged = jwt.encode(
        claims(role="admin"),
        ec.generate_private_key(ec.SECP256R1()),
        algorithm="ES256",
        headers={"kid": "ec-1"},
    )
    refused(verifier, forged, "signature does not verify")


def test_a_single_key_jwks_is_used_without_a_kid(tmp_path: Path) -> None:
    """One JWKS key and no PEM: a token without ``kid`` is checked against that key."""
    jwks = tmp_path / "one.json"
    jwks.write_bytes(orjson.dumps({"keys": [ec_jwk(EC_KEY, "only")]}))
    verifier = JwtVerifier(jwt_config(algorithms=("ES256",), secret=None, jwks_file=str(jwks)))
    assert verifier.identify(jwt.encode(claims(vk="k1"), EC_KEY, algorithm="ES256")).key_id == "k1"
    refused(verifier, jwt.encode(claims(vk="k1"), EC_KEY_2, algorithm="ES256"), "signature does not verify")


def test_rs256_signed_by_another_key_is_refused(verifier: JwtVerifier) -> None:
    """A well-formed RS256 token signed by a key the gateway does not know fails its signature."""
    refused(verifier, jwt.encode(claims(role="admin"), OTHER_RSA_KEY, algorithm="RS256"), "signature")


def test_without_any_jwt_key_jwts_are_not_accepted() -> None:
    """No secret, PEM or JWKS configured: every JWT is refused with a message saying so."""
    verifier = JwtVerifier(JwtConfig())
    assert not verifier.configured
    refused(verifier, jwt.encode(claims(role="admin"), HS_SECRET, algorithm="HS256"), "not accepted here")


@pytest.mark.parametrize("token", ["a.b.c", "..", "eyJhbGciOiJIUzI1NiJ9.e30", "!!.??.**", "e30.e30.e30"])
def test_malformed_tokens_are_refused(verifier: JwtVerifier, token: str) -> None:
    """Garbage with two dots is an ``AuthError``, never another exception."""
    with pytest.raises(AuthError):
        verifier.identify(token)


# ---------------------------------------------------------------- JwtVerifier: claims


def test_exp_is_required(verifier: JwtVerifier) -> None:
    """A token without ``exp`` would never expire: refused, naming the claim."""
    body = claims(role="admin")
    del body["exp"]
    refused(verifier, jwt.encode(body, HS_SECRET, algorithm="HS256"), "required claim 'exp'")


def test_issuer_and_audience_are_checked_when_configured(key_files: dict[str, str]) -> None:
    """A wrong or missing ``iss``/``aud`` is refused when configured; when not configured, they are
    not required (and any audience is accepted)."""
    verifier = JwtVerifier(jwt_config(**key_files))
    sign = lambda body: jwt.encode(body, HS_SECRET, algorithm="HS256")  # noqa: E731
    refused(verifier, sign(claims(role="admin", iss="https://evil.test")), "issuer")
    refused(verifier, sign(claims(role="admin", aud="someone-else")), "audience")
    refused(verifier, sign(claims(role="admin", aud=["a", "b"])), "audience")
    no_iss = claims(role="admin")
    del no_iss["iss"]
    refused(verifier, sign(no_iss), "required claim 'iss'")
    no_aud = claims(role="admin")
    del no_aud["aud"]
    refused(verifier, sign(no_aud), "required claim 'aud'")
    assert verifier.identify(sign(claims(role="admin", aud=["other", AUDIENCE]))).is_admin
    lax = JwtVerifier(jwt_config(issuer="", audience=""))
    assert lax.identify(sign(no_iss)).is_admin
    assert lax.identify(sign(claims(role="admin", aud="anyone"))).is_admin


def test_leeway_tolerates_clock_skew_and_no_more(key_files: dict[str, str]) -> None:
    """A token that expired 10 s ago passes with a 30 s leeway and fails with 2 s (or none)."""
    token = jwt.encode(claims(ttl_s=-10, role="admin"), HS_SECRET, algorithm="HS256")
    assert JwtVerifier(jwt_config(leeway_s=30.0, **key_files)).identify(token).is_admin
    refused(JwtVerifier(jwt_config(leeway_s=2.0, **key_files)), token, "expired")
    refused(JwtVerifier(jwt_config(leeway_s=0.0, **key_files)), token, "expired")


def test_custom_admin_and_virtual_key_claims(key_files: dict[str, str]) -> None:
    """``admin_claim``/``admin_value`` and ``virtual_key_claim`` are read from the config."""
    verifier = JwtVerifier(
        jwt_config(admin_claim="groups", admin_value="gw-admins", virtual_key_claim="key", **key_files)
    )
    sign = lambda body: jwt.encode(body, HS_SECRET, algorithm="HS256")  # noqa: E731
    assert verifier.identify(sign(claims(groups=["x", "gw-admins"]))).is_admin
    assert verifier.identify(sign(claims(key="k9"))).key_id == "k9"
    refused(verifier, sign(claims(role="admin")), "neither")
    refused(verifier, sign(claims(vk="k9")), "neither")


# ---------------------------------------------------------------- mint_jwt


@pytest.fixture
def minted_config(key_files: dict[str, str]) -> JwtConfig:
    return jwt_config(**key_files)


def test_mint_jwt_round_trips_through_the_verifier(minted_config: JwtConfig) -> None:
    """Minted admin and virtual-key tokens carry iss/aud/exp and verify as what they were minted for."""
    verifier = JwtVerifier(minted_config)
    now = time.time()
    admin = mint_jwt(minted_config, subject="ops", ttl_s=600, now=now, admin=True)
    identity = verifier.identify(admin)
    assert identity.is_admin and identity.subject == "ops"
    assert identity.expires_at == int(now + 600)
    decoded = jwt.decode(admin, HS_SECRET, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER)
    assert decoded["iat"] == int(now) and decoded["role"] == "admin"
    assert jwt.get_unverified_header(admin)["alg"] == "HS256"
    vk = verifier.identify(mint_jwt(minted_config, subject="svc", ttl_s=60, now=now, virtual_key_id="vk-1"))
    assert (vk.kind, vk.key_id) == ("virtual_key", "vk-1")


def test_a_minted_token_expires_and_needs_a_secret(minted_config: JwtConfig) -> None:
    """A token minted in the past is expired; minting without ``auth.jwt.secret`` is an ``AuthError``."""
    old = mint_jwt(minted_config, subject="s", ttl_s=60, now=time.time() - 3600, admin=True)
    refused(JwtVerifier(minted_config), old, "expired")
    with pytest.raises(AuthError, match=r"auth\.jwt\.secret is not set"):
        mint_jwt(JwtConfig(), subject="s", ttl_s=60, now=time.time(), admin=True)
