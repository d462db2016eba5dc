"""A governed Switchyard for the governance suites: auth on, JWT keys of every kind, prices, teams.

Secrets reach the processes only through the environment (``GOVERNED_ENV``), as an
operator would pass them, so the "no secret in logs" checks are meaningful.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.support import base_config, free_port

ADMIN_TOKEN = "adm-bootstrap-secret-5f0c2a9e71d84b36"
JWT_SECRET = "jwt-hs256-shared-secret-0b7e4c1f9a2d6e58"
ISSUER = "https://idp.example.test"
AUDIENCE = "switchyard-tests"
SEEDED_KEY = "sk-bf-" + base64.urlsafe_b64encode(b"seeded-key-for-tests-0123456789ab").decode().rstrip("=")
SEEDED_KEY_ID = "vk-seeded"

# Prices in USD per million tokens: one token of `priced-model` costs 0.001 in and 0.002 out.
PRICED_MODEL = {"input": 1000.0, "output": 2000.0, "cached_input": 500.0, "reasoning": 3000.0}

_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_EC = ec.generate_private_key(ec.SECP256R1())
RSA_PRIVATE = _RSA
EC_PRIVATE = _EC
RSA_PUBLIC_PEM = _RSA.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)
EC_KID = "ec-test-key"


def _jwks() -> bytes:
    jwk = orjson.loads(jwt.algorithms.ECAlgorithm.to_jwk(_EC.public_key()))
    jwk.update({"kid": EC_KID, "use": "sig", "alg": "ES256"})
    return orjson.dumps({"keys": [jwk]})


GOVERNED_ENV = {
    "SY_TEST_ADMIN": ADMIN_TOKEN,
    "SY_TEST_JWT": JWT_SECRET,
    "SY_TEST_SEEDED_VK": SEEDED_KEY,
}


def governed_config(upstream_url: str, workdir: Path, **overrides: Any) -> dict[str, Any]:
    """The base test config with auth required, JWTs of all three algorithms, prices and a team."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "rsa.pem").write_bytes(RSA_PUBLIC_PEM)
    (workdir / "jwks.json").write_bytes(_jwks())
    config = base_config(upstream_url, free_port(), free_port())
    config["auth"] = {
        "required": True,
        "admin_token": "${SY_TEST_ADMIN}",
        "key_cache_ttl_s": 0.5,
        "jwt": {
            "algorithms": ["HS256", "RS256", "ES256"],
            "secret": "${SY_TEST_JWT}",
            "public_key_file": str(workdir / "rsa.pem"),
            "jwks_file": str(workdir / "jwks.json"),
            "issuer": ISSUER,
            "audience": AUDIENCE,
            "leeway_s": 2,
        },
    }
    config["pricing"] = {"models": {"priced-model": PRICED_MODEL}}
    config["deployments"]["priced"] = {
        "targets": [{"provider": "azure", "model": "priced-dep", "base_model": "priced-model"}]
    }
    config["teams"] = {"seed-team": {"name": "Seeded team", "budget": {"max_usd": 100, "reset": "1d"}}}
    config["virtual_keys"] = [
        {"id": SEEDED_KEY_ID, "value": "${SY_TEST_SEEDED_VK}", "team_id": "seed-team", "name": "seeded"}
    ]
    config["request_logs"] = {"flush_interval_s": 0.05}
    config["store"] = {"url": f"sqlite:///{workdir / 'switchyard.db'}"}
    for section, values in overrides.items():
        if isinstance(values, dict) and isinstance(config.get(section), dict):
            config[section] = {**config[section], **values}
        else:
            config[section] = values
    return config


def hs_token(claims: Mapping[str, Any], *, secret: str = JWT_SECRET, ttl_s: float = 300) -> str:
    return jwt.encode(_claims(claims, ttl_s), secret, algorithm="HS256")


def rs_token(claims: Mapping[str, Any], *, ttl_s: float = 300) -> str:
    return jwt.encode(_claims(claims, ttl_s), RSA_PRIVATE, algorithm="RS256")


def es_token(claims: Mapping[str, Any], *, ttl_s: float = 300) -> str:
    return jwt.encode(_claims(claims, ttl_s), EC_PRIVATE, algorithm="ES256", headers={"kid": EC_KID})


def _claims(claims: Mapping[str, Any], ttl_s: float) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + int(ttl_s), "sub": "tests", **claims}


def admin_headers() -> dict[str, str]:
    return {"authorization": f"Bearer {ADMIN_TOKEN}"}


def create_key(base_url: str, **fields: Any) -> tuple[str, dict[str, Any]]:
    """Create a virtual key through the REST admin API: (secret, key record)."""
    response = httpx.post(f"{base_url}/api/keys", json=fields, headers=admin_headers(), timeout=10)
    assert response.status_code == 200, response.text
    body = response.json()
    return body["secret"], body["key"]


def chat_body(text: str = "hello", **fields: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}], **fields}
