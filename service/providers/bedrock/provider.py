"""AWS Bedrock's Converse API behind the provider seam:
``POST {base_url}/model/{modelId}/converse`` and ``/converse-stream``, signed with SigV4.

A key is an AWS access key: its ``value`` is the access key id, ``secret_access_key`` (and, for
temporary credentials, ``session_token``) ride with it as secrets, and its ``region`` (or the
provider's) picks the endpoint and the signature's scope.
"""

from __future__ import annotations

import functools
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from service.errors import FailureClass, GatewayError, UpstreamError
from service.providers.base import HttpProvider, Prepared, ProviderContext
from service.providers.transport import map_transport_errors
from service.routing import Target
from switchyard.config import ConfigError, KeyConfig, ProviderConfig
from switchyard.v1 import chat_pb2 as pb

from .errors import bedrock_error
from .eventstream import iter_events
from .request import build_body
from .response import response_from
from .signing import AwsKey, Signer
from .stream import StreamTranslator

# A key's settings besides its `value` (the access key id).
KEY_SECRETS = ("secret_access_key", "session_token", "region")
# `{region}` is the key's region (or the provider's); a base_url may use it too.
DEFAULT_BASE_URL = "https://bedrock-runtime.{region}.amazonaws.com"
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d+")
_MAX_SIGNERS = 1024


@dataclass(frozen=True, slots=True)
class BedrockOptions:
    # The AWS region (us-east-1…) of the endpoint and the signature; a key's own `region` wins.
    region: str = ""


def check_config(config: ProviderConfig, options: BedrockOptions) -> None:
    """Every key must be signable: a secret access key and a region (its own or the provider's)."""
    path = f"providers.{config.name}"
    if options.region and not _REGION.fullmatch(options.region):
        raise ConfigError(f"{path}.region", f"is not an AWS region name (like us-east-1): {options.region!r}")
    for i, key in enumerate(config.keys):
        where = f"{path}.keys[{i}]"
        secret = key.secrets.get("secret_access_key")
        if secret is None or not secret.value:
            raise ConfigError(
                f"{where}.secret_access_key",
                "is required (an environment reference such as ${AWS_SECRET_ACCESS_KEY})",
            )
        region = key.secrets.get("region")
        if region is not None and region.value and not _REGION.fullmatch(region.value):
            raise ConfigError(
                f"{where}.region", f"is not an AWS region name (like us-east-1): {region.value!r}"
            )
        if not options.region and not (region and region.value):
            raise ConfigError(f"{path}.region", "is required (or a `region` on every key)")


@functools.lru_cache(maxsize=4096)
def model_path(model: str) -> str:
    """The model id as a URL path segment. ``/`` (in ARNs) must be escaped; ``:`` is left as it
    is because the HTTP client (aiohttp's URL parser) sends it unescaped whatever it is given,
    and the signature must cover the path exactly as it goes out. AWS decodes both spellings
    to the same model id."""
    return quote(model, safe=":")


class BedrockProvider(HttpProvider):
    # AWS's SDK sends no Accept header to ConverseStream; neither do we.
    stream_accept = None

    def __init__(self, config: ProviderConfig, context: ProviderContext, options: BedrockOptions) -> None:
        super().__init__(config, context)
        self.options = options
        self._base = config.base_url.rstrip("/")
        # id(key) -> (key, its signer); the key is kept so a recycled id is never taken for it.
        self._signers: dict[int, tuple[KeyConfig, Signer]] = {}

    def accepts_prefill(self, target: Target) -> bool:
        # Converse continues a final assistant turn for Anthropic's models; for the others it
        # is not documented, so they are not trusted with it unless the config says so.
        own = self.config.assistant_prefill
        return "anthropic." in target.model if own is None else own

    def prepare(self, request: pb.ChatCompletionRequest, target: Target, *, stream: bool) -> Prepared:
        return Prepared(target, orjson.dumps(build_body(request)), stream)

    def url(self, prepared: Prepared, key: KeyConfig) -> str:
        base = self._base.replace("{region}", self._signer(key, prepared).region)
        action = "converse-stream" if prepared.stream else "converse"
        return f"{base}/model/{model_path(prepared.target.model)}/{action}"

    def headers(self, prepared: Prepared, key: KeyConfig) -> dict[str, str]:
        signer = self._signer(key, prepared)
        return signer.sign(self.url(prepared, key), {"content-type": "application/json"}, prepared.body)

    def response_from(self, data: dict[str, Any], prepared: Prepared) -> pb.ChatCompletionResponse:
        return self.translated(
            prepared, "a Converse response", lambda: response_from(data, prepared.target.model)
        )

    def stream_decoder(self, prepared: Prepared) -> StreamTranslator:
        return StreamTranslator(prepared.target.model)

    def error_from(
        self, status: int, payload: object, headers: httpx.Headers, prepared: Prepared
    ) -> UpstreamError:
        return bedrock_error(status, payload, headers, provider=self.name, model=prepared.target.model)

    def events(self, response: httpx.Response, prepared: Prepared) -> AsyncIterator[tuple[bytes, bytes]]:
        model = prepared.target.model

        def error(kind: str, payload: object) -> GatewayError:
            return bedrock_error(None, payload, {}, error_type=kind, provider=self.name, model=model)

        return iter_events(
            response.aiter_bytes(),
            lambda: map_transport_errors(self.name, model, mid_stream=True),
            error,
            lambda why: self.bad_response(prepared, f"an unreadable event stream ({why})"),
        )

    # -- credentials

    def _signer(self, key: KeyConfig, prepared: Prepared) -> Signer:
        entry = self._signers.get(id(key))
        if entry is None or entry[0] is not key:
            if len(self._signers) >= _MAX_SIGNERS:
                self._signers.clear()
            entry = self._signers[id(key)] = (key, Signer(self._aws_key(key, prepared)))
        return entry[1]

    def _aws_key(self, key: KeyConfig, prepared: Prepared) -> AwsKey:
        secrets = key.secrets
        secret = secrets.get("secret_access_key")
        token = secrets.get("session_token")
        region = secrets.get("region")
        aws_key = AwsKey(
            access_key_id=key.secret.value,
            secret_access_key=secret.value if secret else "",
            session_token=token.value if token and token.value else None,
            region=region.value if region and region.value else self.options.region,
        )
        if not (aws_key.access_key_id and aws_key.secret_access_key and aws_key.region):
            # The registry checks the config at start; this is a key built some other way.
            raise GatewayError(
                502,
                "upstream_credentials",
                f"Bedrock key {key.name or '?'} lacks its secret access key or region",
                failure=FailureClass.CREDENTIAL,
                provider=self.name,
                model=prepared.target.model,
            )
        return aws_key
