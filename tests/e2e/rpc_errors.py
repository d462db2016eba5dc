"""Reading Switchyard's rich gRPC errors (google.rpc.Status with ErrorInfo, RetryInfo, ErrorBody)."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from switchyard.v1 import chat_pb2


def rich_status(err: grpc.RpcError) -> tuple[status_pb2.Status, dict[str, object]]:
    """The google.rpc.Status of a failed call, and its details unpacked by type name."""
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None, "the error carries no google.rpc.Status"
    details: dict[str, object] = {}
    for any_detail in status.details:
        for cls in (error_details_pb2.ErrorInfo, error_details_pb2.RetryInfo, chat_pb2.ErrorBody):
            if any_detail.Is(cls.DESCRIPTOR):
                msg = cls()
                any_detail.Unpack(msg)
                details[cls.DESCRIPTOR.full_name] = msg
    return status, details


def error_body(details: dict[str, object]) -> chat_pb2.ErrorBody:
    body = details.get("switchyard.v1.ErrorBody")
    assert isinstance(body, chat_pb2.ErrorBody), f"no ErrorBody detail in {list(details)}"
    return body
