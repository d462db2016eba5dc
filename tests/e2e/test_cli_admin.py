"""``switchyard keys create|list|revoke|generate`` and ``switchyard token mint``, run as real
subprocesses against a running governed stack (``tests/e2e/governed.py``).

The CLI reads the stack's own config file (``--config``) for the service address and the JWT
secret, with the secrets in its environment exactly as the stack has them.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from switchyard.config import ConfigError, parse_config
from tests.e2e.governed import (
    ADMIN_TOKEN,
    GOVERNED_ENV,
    JWT_SECRET,
    SEEDED_KEY,
    admin_headers,
    chat_body,
    governed_config,
)
from tests.fakes.upstream import FakeUpstream
from tests.support import Stack, free_port, secret_env, start_stack

CHAT = "/openai/deployments/{}/chat/completions?api-version=2024-10-21"
SECRET = re.compile(r"^sk-bf-[A-Za-z0-9_-]{43}$")


@pytest.fixture(scope="module")
def gov(upstream_server: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("cli-governed")
    running = start_stack("inprocess", governed_config(upstream_server.url, workdir), workdir, GOVERNED_ENV)
    yield running
    running.stop()


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``switchyard ARGS`` (``python -m cli``) with the governed secrets in the environment (and no
    ``SWITCHYARD_ADMIN_TOKEN`` unless ``env`` sets it)."""
    base = {**secret_env(), **GOVERNED_ENV}
    base.pop("SWITCHYARD_ADMIN_TOKEN", None)
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        timeout=60,
    )


def keys(
    gov: Stack, action: str, *args: str, token: str | None = ADMIN_TOKEN
) -> subprocess.CompletedProcess[str]:
    extra = ["--token", token] if token is not None else []
    return cli("keys", action, "--config", str(gov.config_path), *extra, *args)


def chat(gov: Stack, deployment: str, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(gov.base_url + CHAT.format(deployment), json=chat_body(), headers=headers, timeout=30)


def create(gov: Stack, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    key_id = f"cli-{uuid.uuid4().hex[:10]}"
    done = keys(gov, "create", "--id", key_id, *args)
    assert done.returncode == 0, done.stderr
    return done, orjson.loads(done.stdout)


def clean_failure(done: subprocess.CompletedProcess[str], code: int, message: str) -> None:
    """Failed with ``code``, said ``message`` on stderr, and showed no traceback."""
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert done.stderr.startswith("switchyard: "), done.stderr


# ---------------------------------------------------------------- keys create / list / revoke


def test_keys_create_prints_the_record_and_the_secret_once(gov: Stack) -> None:
    """``keys create`` prints JSON with the key record (name, models, rpm, budget as asked) and the
    secret, which appears exactly once in all the output; the secret works for a chat call."""
    done, printed = create(gov, "--name", "x", "--models", "a*", "--rpm", "5", "--budget-usd", "2")
    secret, record = printed["secret"], printed["key"]
    assert SECRET.match(secret), secret
    assert (done.stdout + done.stderr).count(secret) == 1
    assert "shown this once" in done.stderr
    assert record["name"] == "x"
    assert record["allowed_models"] == ["a*"]
    assert record["rate_limit"] == {"requests_per_minute": 5}
    assert record["budget"]["max_usd"] == 2.0 and record["budget"]["reset"] == "1mo"
    assert record["active"] is True and record["key_prefix"] == secret[:10]
    assert "key_hash" not in record and secret not in orjson.dumps(record).decode()
    response = chat(gov, "a-cli-dep", {"api-key": secret})
    assert response.status_code == 200, response.text
    # The models glob is enforced: it is the key the CLI described.
    refused = chat(gov, "openai/b-model", {"api-key": secret})
    assert refused.status_code == 403 and refused.json()["type"] == "model_not_allowed"


def test_a_deployment_glob_does_not_open_every_deployment_of_a_provider_whose_name_matches(
    gov: Stack,
) -> None:
    """A key limited to deployments ``a*`` must not reach deployment ``b-cli-dep`` just because the
    default provider is called ``azure``."""
    _, printed = create(gov, "--name", "glob", "--models", "a*")
    response = chat(gov, "b-cli-dep", {"api-key": printed["secret"]})
    assert response.status_code == 403, response.text


def test_keys_list_shows_the_key_without_its_secret(gov: Stack) -> None:
    """``keys list`` has one tab-separated line per key (id, name, prefix, state), secrets never."""
    _, printed = create(gov, "--name", "listed")
    key_id, secret = printed["key"]["id"], printed["secret"]
    done = keys(gov, "list")
    assert done.returncode == 0, done.stderr
    lines = {line.split("\t")[0]: line.split("\t") for line in done.stdout.splitlines()}
    assert lines[key_id] == [key_id, "listed", secret[:10] + "…", "active"]
    assert "vk-seeded" in lines
    assert secret not in done.stdout and SEEDED_KEY not in done.stdout


def test_keys_revoke_makes_the_next_call_403(gov: Stack) -> None:
    """``keys revoke ID`` answers ``revoked ID``; the key's next call is 403 virtual_key_inactive and
    ``keys list`` shows it revoked."""
    _, printed = create(gov, "--name", "to-revoke")
    key_id, secret = printed["key"]["id"], printed["secret"]
    assert chat(gov, "revoke-dep", {"api-key": secret}).status_code == 200
    done = keys(gov, "revoke", key_id)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"revoked {key_id}"
    response = chat(gov, "revoke-dep", {"api-key": secret})
    assert response.status_code == 403, response.text
    assert response.json()["type"] == "virtual_key_inactive"
    listing = keys(gov, "list").stdout
    assert f"{key_id}\tto-revoke\t{secret[:10]}…\trevoked" in listing.splitlines()


def test_revoking_an_unknown_key_fails_cleanly(gov: Stack) -> None:
    """A key id that does not exist: exit 1 with the service's 404 message, no traceback."""
    clean_failure(keys(gov, "revoke", "no-such-key"), 1, "404 not_found")


def test_the_admin_token_can_come_from_the_environment(gov: Stack) -> None:
    """Without ``--token``, ``$SWITCHYARD_ADMIN_TOKEN`` is used."""
    done = cli("keys", "list", "--config", str(gov.config_path), env={"SWITCHYARD_ADMIN_TOKEN": ADMIN_TOKEN})
    assert done.returncode == 0, done.stderr
    assert "vk-seeded" in done.stdout


@pytest.mark.parametrize(
    ("token", "code", "message"),
    [
        pytest.param(None, 2, "an admin credential is needed", id="no-token"),
        pytest.param("wrong-admin-token", 1, "401 invalid_credentials", id="wrong-token"),
        pytest.param(ADMIN_TOKEN + "x", 1, "401 invalid_credentials", id="almost-the-token"),
        pytest.param(SEEDED_KEY, 1, "403 admin_required", id="a-virtual-key"),
    ],
)
def test_without_a_valid_admin_credential_the_cli_fails_cleanly(
    gov: Stack, token: str | None, code: int, message: str
) -> None:
    """No, a wrong, or a non-admin credential: non-zero exit, a one-line reason, no traceback, and
    nothing created."""
    for action, args in (("list", ()), ("create", ("--name", "should-not-exist"))):
        clean_failure(keys(gov, action, *args, token=token), code, message)
    listing = keys(gov, "list").stdout
    assert "should-not-exist" not in listing


def test_an_unreachable_service_fails_cleanly(gov: Stack) -> None:
    """Nothing listening at ``--service``: exit 1 with UNAVAILABLE, no traceback; the one line names
    the address tried and says Switchyard may not be running there (the README's first minutes:
    ``keys create`` run before the server listened)."""
    address = f"127.0.0.1:{free_port()}"
    done = keys(gov, "list", "--service", address)
    clean_failure(done, 1, "UNAVAILABLE")
    assert done.stderr.count("\n") == 1, done.stderr
    assert address in done.stderr and "may not be running there" in done.stderr, done.stderr


def test_an_unreachable_service_from_the_config_is_named(tmp_path: Path) -> None:
    """Without ``--service`` the address comes from the config, and that is the one named."""
    grpc_port = free_port()
    config_path = tmp_path / "c.yaml"
    config_path.write_text(yaml.safe_dump({"server": {"grpc_port": grpc_port}}))
    done = cli("keys", "list", "--config", str(config_path), "--token", "t")
    clean_failure(done, 1, f"127.0.0.1:{grpc_port}")
    assert "--service" in done.stderr


def test_a_401_says_the_server_needs_the_same_admin_token(gov: Stack) -> None:
    """A server started without (or with another) SWITCHYARD_ADMIN_TOKEN answers a bare 401: the
    CLI says what to check."""
    done = keys(gov, "list", token="wrong-admin-token")
    clean_failure(done, 1, "401 invalid_credentials")
    assert "SWITCHYARD_ADMIN_TOKEN" in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr


# ---------------------------------------------------------------- keys generate


def test_keys_generate_prints_a_fresh_valid_secret() -> None:
    """``keys generate`` prints ``sk-bf-`` + 43 URL-safe characters, different each time, which the
    config loader accepts as a virtual key value."""
    made = []
    for _ in range(2):
        done = cli("keys", "generate")
        assert done.returncode == 0, done.stderr
        made.append(done.stdout.strip())
        assert done.stdout.count("\n") == 1
    assert all(SECRET.match(secret) for secret in made), made
    assert made[0] != made[1]
    raw = {"virtual_keys": [{"id": "generated", "value": made[0]}]}
    config = parse_config(raw, env={})
    assert config.virtual_keys[0].secret.value == made[0]
    with pytest.raises(ConfigError):  # the loader does check: a short value is refused
        parse_config({"virtual_keys": [{"id": "short", "value": made[0][:-2]}]}, env={})


# ---------------------------------------------------------------- token mint


def mint(gov: Stack, *args: str, env: dict[str, str] | None = None) -> str:
    done = cli("token", "mint", "--config", str(gov.config_path), *args, env=env)
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert token.count(".") == 2, token
    return token


def test_token_mint_admin_is_accepted_as_admin(gov: Stack) -> None:
    """``token mint --admin`` signs with ``auth.jwt.secret`` (from the env, as the stack has it): the
    stack accepts it on the admin API (``GET /api/keys`` 200) and for the CLI's own admin calls."""
    token = mint(gov, "--admin", "--subject", "ops-cli")
    assert JWT_SECRET not in token
    response = httpx.get(gov.base_url + "/api/keys", headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    assert "vk-seeded" in {k["id"] for k in response.json()["keys"]}
    assert keys(gov, "list", token=token).returncode == 0


def test_token_mint_virtual_key_acts_as_that_key(gov: Stack) -> None:
    """``token mint --virtual-key ID`` is accepted as that key: its model globs apply, it is logged
    under the key's id, and it is not an admin."""
    _, printed = create(gov, "--name", "jwt-key", "--models", "a*")
    key_id = printed["key"]["id"]
    token = mint(gov, "--virtual-key", key_id)
    bearer = {"authorization": f"Bearer {token}"}
    assert chat(gov, "a-jwt-dep", bearer).status_code == 200
    refused = chat(gov, "openai/b-jwt-model", bearer)
    assert refused.status_code == 403 and refused.json()["type"] == "model_not_allowed"
    admin = httpx.get(gov.base_url + "/api/keys", headers=bearer)
    assert admin.status_code == 403 and admin.json()["type"] == "admin_required"
    deadline = time.monotonic() + 5
    while True:
        page = httpx.get(gov.base_url + "/api/logs", params={"key_id": key_id}, headers=admin_headers())
        logged = sorted((e["model_requested"], e["status"]) for e in page.json()["entries"])
        if len(logged) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert logged == [("a-jwt-dep", 200), ("openai/b-jwt-model", 403)]


def test_token_mint_for_an_unknown_key_is_refused_by_the_stack(gov: Stack) -> None:
    """The CLI signs whatever id it is given; the stack refuses a key id it does not know (401)."""
    token = mint(gov, "--virtual-key", "never-created")
    response = chat(gov, "x", {"authorization": f"Bearer {token}"})
    assert response.status_code == 401 and response.json()["type"] == "invalid_credentials"


def test_token_mint_expired_ttl_is_refused(gov: Stack) -> None:
    """``--ttl`` sets ``exp``: a token minted with a negative TTL beyond the leeway is refused."""
    token = mint(gov, "--admin", "--ttl", "-60")
    response = httpx.get(gov.base_url + "/api/keys", headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 401 and "expired" in response.json()["error"]["message"]


def test_token_mint_without_a_jwt_secret_fails_cleanly(tmp_path: Path) -> None:
    """A config without ``auth.jwt.secret``: exit 2 and a message naming the setting, no traceback."""
    config_path = tmp_path / "no-secret.yaml"
    config_path.write_text(yaml.safe_dump({"auth": {"required": True}}))
    done = cli("token", "mint", "--config", str(config_path), "--admin")
    clean_failure(done, 2, "auth.jwt.secret is not set")
    assert done.stdout == ""
