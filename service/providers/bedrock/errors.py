"""Bedrock's errors -> UpstreamError.

AWS names every error by its exception type: an HTTP error carries it in the
``x-amzn-errortype`` header (``ThrottlingException:http://internal.amazon.com/…``) or as the
body's ``__type`` (``com.amazon.coral.service#ThrottlingException``), next to ``{"message": …}``;
an exception frame of a stream carries it in its ``:exception-type`` header, camel-cased
(``throttlingException``). The type decides the failure class; the HTTP status, when there is
one, is kept as the status the caller sees.
"""

from __future__ import annotations

from collections.abc import Mapping

from service.errors import FailureClass, UpstreamError, overflow_code, str_or_none, upstream_error

# Bedrock's exception type (lower-cased) -> (its HTTP status, our failure class). The statuses are
# the service model's; the IAM/SigV4 ones come from AWS's common errors.
ERROR_TYPES: Mapping[str, tuple[int, FailureClass]] = {
    "validationexception": (400, FailureClass.CALLER),
    "conflictexception": (400, FailureClass.CALLER),
    # A quota of the account behind the key: another key (another account) may have room.
    "servicequotaexceededexception": (400, FailureClass.RATE_LIMIT),
    "resourcenotfoundexception": (404, FailureClass.CALLER),
    "accessdeniedexception": (403, FailureClass.CREDENTIAL),
    "unrecognizedclientexception": (403, FailureClass.CREDENTIAL),
    "invalidsignatureexception": (403, FailureClass.CREDENTIAL),
    "incompletesignatureexception": (403, FailureClass.CREDENTIAL),
    "missingauthenticationtokenexception": (403, FailureClass.CREDENTIAL),
    "expiredtokenexception": (403, FailureClass.CREDENTIAL),
    "throttlingexception": (429, FailureClass.RATE_LIMIT),
    # The model is loading (on-demand custom or imported models): it will be there shortly.
    "modelnotreadyexception": (429, FailureClass.TRANSIENT),
    "modeltimeoutexception": (408, FailureClass.TIMEOUT),
    "modelerrorexception": (424, FailureClass.TRANSIENT),
    "modelstreamerrorexception": (424, FailureClass.TRANSIENT),
    "internalserverexception": (500, FailureClass.TRANSIENT),
    "serviceunavailableexception": (503, FailureClass.TRANSIENT),
}


# ValidationException: "Input is too long for requested model." / "...too many input tokens...".
OVERFLOW_PHRASES = ("input is too long", "too many input tokens")


def bedrock_error(
    status: int | None,
    payload: object,
    headers: Mapping[str, str],
    *,
    error_type: str | None = None,
    provider: str,
    model: str,
) -> UpstreamError:
    """A Bedrock error response (HTTP ``status``) or a stream's exception frame (``status=None``,
    ``error_type`` from its header) -> UpstreamError."""
    message = None
    if isinstance(payload, dict):
        message = str_or_none(payload.get("message") or payload.get("Message"))
    error_type = _type_name(error_type or headers.get("x-amzn-errortype") or _body_type(payload))
    known = ERROR_TYPES.get((error_type or "").lower())
    if status is None:
        # An exception frame comes inside a 200 response: its type is all there is.
        status = known[0] if known else 500
    return upstream_error(
        status,
        headers,
        message=message,
        failure=known[1] if known else None,
        error_type=error_type,
        code=overflow_code(status, message, OVERFLOW_PHRASES),
        provider=provider,
        model=model,
    )


def _body_type(payload: object) -> str | None:
    if not isinstance(payload, dict):
        return None
    return str_or_none(payload.get("__type") or payload.get("code"))


def _type_name(raw: str | None) -> str | None:
    """``ThrottlingException:http://…``, ``…#ThrottlingException`` or a stream's
    ``throttlingException`` -> ``ThrottlingException``, so callers see one spelling."""
    name = (raw or "").split(":", 1)[0].rsplit("#", 1)[-1]
    return name[:1].upper() + name[1:] if name else None
