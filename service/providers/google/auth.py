"""Vertex AI's credentials: a service-account key, exchanged for an OAuth access token by google-auth.

google-auth signs the JWT grant and talks to the key's ``token_uri`` (tests point it at a fake);
nothing here touches the crypto. Its refresh is blocking I/O, so it runs in a worker thread, one at
a time per key (a lock), and every request meanwhile waits for that one refresh instead of starting
its own. The token is kept until ``margin_s`` before it expires, so no request leaves with a token
about to lapse on the way.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson
import requests
from google.auth import exceptions
from google.auth.transport.requests import Request
from google.oauth2 import service_account

from service.errors import FailureClass, UpstreamError
from switchyard.config import ConfigError

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
# The token endpoint answers in milliseconds; google-auth's own default waits two minutes.
TOKEN_READ_TIMEOUT_S = 30.0


def load_service_account(value: str, path: str) -> dict[str, Any]:
    """A key's ``value``: the service-account JSON itself (from ``${ENV}``) or the path of its file.

    Raises ConfigError naming ``path``; the message never repeats the key's contents."""
    text = value.strip()
    if not text.startswith("{"):
        try:
            text = Path(text).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                path, f"is neither service-account JSON nor a readable file ({exc.strerror or exc})"
            ) from None
    try:
        info = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ConfigError(path, "is not valid service-account JSON") from None
    if not isinstance(info, dict) or info.get("type") != "service_account":
        raise ConfigError(path, 'must be a service-account key: JSON with "type": "service_account"')
    missing = [name for name in ("client_email", "private_key", "token_uri") if not info.get(name)]
    if missing:
        raise ConfigError(path, f"the service-account key has no {missing[0]}")
    return info


class _Transport(Request):
    """google-auth's requests transport, with a timeout it would otherwise leave at 120 s."""

    def __init__(self, session: requests.Session, timeout: tuple[float, float]) -> None:
        super().__init__(session)
        self._timeout = timeout

    def __call__(
        self,
        url: Any,
        method: Any = "GET",
        body: Any = None,
        headers: Any = None,
        timeout: Any = None,
        **kwargs: Any,
    ) -> Any:
        return super().__call__(url, method, body, headers, timeout or self._timeout, **kwargs)


class ServiceAccountToken:
    """The access token of one service account, fetched when needed and shared by all requests."""

    def __init__(
        self,
        info: Mapping[str, Any],
        *,
        connect_timeout_s: float = 5.0,
        margin_s: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Raises ValueError if the key is unusable (e.g. its private key does not parse)."""
        self._credentials = service_account.Credentials.from_service_account_info(info, scopes=SCOPES)
        self.email = str(info.get("client_email"))
        self._session = requests.Session()
        self._transport = _Transport(self._session, (connect_timeout_s, TOKEN_READ_TIMEOUT_S))
        self._margin_s = margin_s
        self._clock = clock
        self._token = ""
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        self.refreshes = 0

    async def get(self, *, provider: str, model: str) -> str:
        """A token valid for ``margin_s`` more at least; raises UpstreamError when none can be had."""
        if self._fresh():
            return self._token
        async with self._lock:
            if not self._fresh():  # another request may have refreshed it while this one waited
                await asyncio.to_thread(self._refresh, provider, model)
        return self._token

    def invalidate(self, token: str) -> None:
        """Vertex refused ``token``: the next request fetches another."""
        if token == self._token:
            self._expires_at = 0.0

    def close(self) -> None:
        self._session.close()

    def _fresh(self) -> bool:
        return bool(self._token) and self._clock() < self._expires_at - self._margin_s

    def _refresh(self, provider: str, model: str) -> None:
        try:
            self._credentials.refresh(self._transport)
        except exceptions.TransportError as exc:
            err = UpstreamError(
                502,
                "upstream_unreachable",
                f"could not reach the token endpoint for {self.email} ({_cause(exc)})",
                failure=FailureClass.TRANSIENT,
                provider=provider,
                model=model,
            )
            err.from_upstream = False
            raise err from None
        except exceptions.RefreshError as exc:
            # The token endpoint's own words (e.g. "invalid_grant: Invalid JWT Signature."): they
            # name the fault, never the key.
            reason = str(exc.args[0]) if exc.args else type(exc).__name__
            raise UpstreamError(
                502 if exc.retryable else 401,
                "upstream_error" if exc.retryable else "authentication_error",
                f"could not get a Vertex AI access token for {self.email}: {reason[:300]}",
                failure=FailureClass.TRANSIENT if exc.retryable else FailureClass.CREDENTIAL,
                provider=provider,
                model=model,
            ) from None
        expiry = self._credentials.expiry  # naive UTC, as google-auth keeps it
        self._token = str(self._credentials.token)
        self._expires_at = expiry.replace(tzinfo=datetime.UTC).timestamp() if expiry else self._clock() + 3600
        self.refreshes += 1


def _cause(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    return type(cause or exc).__name__
