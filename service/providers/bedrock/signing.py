"""AWS Signature Version 4 for Bedrock requests, by botocore's signer (never hand-rolled).

The signature covers the method, the URL's path and host, the signed headers and a hash of
the body, so it is made per request, last, from exactly what goes on the wire. Measured cost
(1000 signs): about 60 µs of CPU per request with a 2 KB body, 97 µs with 64 KB (the body's
SHA-256); see docs/providers/bedrock.md.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

# Bedrock's signing name (the runtime's endpoint prefix is bedrock-runtime, its scope is not).
SERVICE = "bedrock"

# botocore's signer logs every canonical request at DEBUG, session token included; with the
# service's log level at debug that would put a credential in the logs.
logging.getLogger("botocore.auth").setLevel(logging.INFO)


@dataclass(frozen=True, slots=True)
class AwsKey:
    """One key's credentials and region."""

    access_key_id: str
    secret_access_key: str
    session_token: str | None
    region: str


class Signer:
    """Signs requests with one key's credentials, for its region."""

    __slots__ = ("_auth", "region")

    def __init__(self, key: AwsKey) -> None:
        credentials = Credentials(key.access_key_id, key.secret_access_key, key.session_token)
        self._auth = SigV4Auth(credentials, SERVICE, key.region)
        self.region = key.region

    def __repr__(self) -> str:
        return f"Signer(region={self.region!r})"  # never the credentials

    def sign(self, url: str, headers: dict[str, str], body: bytes) -> dict[str, str]:
        """``headers`` plus ``Authorization``, ``X-Amz-Date`` (and ``X-Amz-Security-Token``), as
        lower-case names, for a POST of ``body`` to ``url``. ``url`` must be exactly what the
        transport sends: the signature covers its path as written."""
        request = AWSRequest(method="POST", url=url, headers=headers, data=body)
        self._auth.add_auth(request)
        return {name.lower(): value for name, value in request.headers.items()}
