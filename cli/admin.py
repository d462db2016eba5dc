"""``switchyard keys …`` and ``switchyard token mint``: administration from the shell.

``keys create|list|revoke`` call the running service's gRPC Admin API (the same
calls as ``/api/keys`` over REST), so they work against any replica and never
touch the database behind the service's back.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import grpc
import orjson
from grpc_status import rpc_status

from switchyard.codec import message_to_json
from switchyard.config import ConfigError, load_config
from switchyard.v1 import admin_pb2 as apb
from switchyard.v1 import admin_pb2_grpc, chat_pb2


def add_commands(sub: Any) -> None:
    def common(cmd: argparse.ArgumentParser) -> None:
        cmd.add_argument(
            "--config", help="YAML config file (default: $SWITCHYARD_CONFIG, else the built-in one)"
        )
        cmd.add_argument("--service", help="the service's gRPC address (default: from the config)")
        cmd.add_argument("--token", help="admin credential (default: $SWITCHYARD_ADMIN_TOKEN)")

    keys = sub.add_parser("keys", help="create, list and revoke virtual keys")
    keys_sub = keys.add_subparsers(dest="action", required=True)
    create = keys_sub.add_parser("create", help="create a virtual key (its secret is printed once)")
    common(create)
    create.add_argument("--id", default="", help="a readable id (default: random)")
    create.add_argument("--name", default="")
    create.add_argument("--description", default="")
    create.add_argument("--models", nargs="*", default=[], help="allowed models/deployments (globs)")
    create.add_argument("--providers", nargs="*", default=[], help="allowed providers")
    create.add_argument("--budget-usd", type=float, help="budget in USD")
    create.add_argument("--budget-reset", default="1mo", choices=("1h", "1d", "1w", "1mo"))
    create.add_argument("--rpm", type=int, help="requests per minute")
    create.add_argument("--tpm", type=int, help="tokens per minute")
    create.add_argument("--team", help="team id")
    create.add_argument("--expires-in-days", type=float, help="expiry, days from now")
    listing = keys_sub.add_parser("list", help="list virtual keys")
    common(listing)
    revoke = keys_sub.add_parser("revoke", help="revoke a virtual key")
    common(revoke)
    revoke.add_argument("id")
    keys_sub.add_parser("generate", help="print a fresh sk-bf- secret (for the config file)")

    token = sub.add_parser("token", help="development JWTs")
    token_sub = token.add_subparsers(dest="action", required=True)
    mint = token_sub.add_parser("mint", help="sign a JWT with auth.jwt.secret")
    mint.add_argument("--config", help="YAML config file")
    who = mint.add_mutually_exclusive_group(required=True)
    who.add_argument("--admin", action="store_true", help="an admin token")
    who.add_argument("--virtual-key", metavar="ID", help="a token acting as this virtual key")
    mint.add_argument("--subject", default="switchyard-cli")
    mint.add_argument("--ttl", type=float, default=3600.0, help="seconds until it expires (default 3600)")


def run(args: argparse.Namespace) -> int:
    try:
        if args.command == "token":
            return _mint(args)
        if args.action == "generate":
            from service.auth import new_virtual_key

            print(new_virtual_key())
            return 0
        return _keys(args)
    except ConfigError as exc:
        print(f"switchyard: {exc}", file=sys.stderr)
        return 2


def _mint(args: argparse.Namespace) -> int:
    from service.auth import AuthError, mint_jwt

    config = load_config(args.config)
    try:
        token = mint_jwt(
            config.auth.jwt,
            subject=args.subject,
            ttl_s=args.ttl,
            now=time.time(),
            admin=args.admin,
            virtual_key_id=args.virtual_key,
        )
    except AuthError as exc:
        print(f"switchyard: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def _keys(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    token = args.token or os.environ.get("SWITCHYARD_ADMIN_TOKEN", "")
    if not token:
        print(
            "switchyard: an admin credential is needed: --token or $SWITCHYARD_ADMIN_TOKEN", file=sys.stderr
        )
        return 2
    metadata = (("authorization", f"Bearer {token}"),)
    target = args.service or config.server.grpc_target
    with grpc.insecure_channel(target) as channel:
        stub = admin_pb2_grpc.AdminStub(channel)
        try:
            if args.action == "create":
                reply: Any = stub.CreateVirtualKey(_create_request(args), metadata=metadata, timeout=30)
                print(orjson.dumps(message_to_json(reply), option=orjson.OPT_INDENT_2).decode())
                print("The secret is shown this once; store it now.", file=sys.stderr)
            elif args.action == "list":
                page_token = ""
                while True:
                    page = stub.ListVirtualKeys(
                        apb.ListVirtualKeysRequest(page_token=page_token), metadata=metadata, timeout=30
                    )
                    for key in page.keys:
                        state = (
                            "active"
                            if key.active
                            else "revoked"
                            if key.HasField("revoked_at")
                            else "inactive"
                        )
                        print(f"{key.id}\t{key.name}\t{key.key_prefix}…\t{state}")
                    page_token = page.next_page_token
                    if not page_token:
                        break
            else:
                reply = stub.RevokeVirtualKey(
                    apb.RevokeVirtualKeyRequest(id=args.id), metadata=metadata, timeout=30
                )
                print(f"revoked {reply.id}")
        except grpc.RpcError as err:
            print(f"switchyard: {_error_text(err, target)}", file=sys.stderr)
            return 1
    return 0


def _create_request(args: argparse.Namespace) -> apb.CreateVirtualKeyRequest:
    request = apb.CreateVirtualKeyRequest(
        id=args.id,
        name=args.name,
        description=args.description,
        allowed_models=args.models,
        allowed_providers=args.providers,
    )
    if args.budget_usd is not None:
        request.budget.CopyFrom(
            apb.Budget(max_usd=args.budget_usd, reset=args.budget_reset, calendar_aligned=True)
        )
    if args.rpm is not None:
        request.rate_limit.requests_per_minute = args.rpm
    if args.tpm is not None:
        request.rate_limit.tokens_per_minute = args.tpm
    if args.team:
        request.team_id = args.team
    if args.expires_in_days is not None:
        request.expires_at = time.time() + args.expires_in_days * 86400
    return request


def _error_text(err: grpc.RpcError, target: str) -> str:
    """One line for a failed admin call, with what to check for the two first-run mistakes."""
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    if status is not None:
        for detail in status.details:
            if detail.Is(chat_pb2.ErrorBody.DESCRIPTOR):
                body = chat_pb2.ErrorBody()
                detail.Unpack(body)
                text = f"{body.status_code} {body.type}: {body.error.message}"
                if body.status_code == 401:
                    # The usual cause: the server was started before the token was exported.
                    text += (
                        " (the server must have been started with this same SWITCHYARD_ADMIN_TOKEN"
                        " in its environment)"
                    )
                return text
    code: grpc.StatusCode = err.code()  # type: ignore[attr-defined]
    text = f"{code.name}: {err.details()}"  # type: ignore[attr-defined]
    if code == grpc.StatusCode.UNAVAILABLE:
        # No ErrorBody: nothing answered at all (a service that answers says why it is unavailable).
        return (
            f"{code.name}: nothing answered at {target}: Switchyard may not be running there, or not"
            f" listening yet (start it and wait until it is ready, or name its address with --service)"
            f" [{err.details()}]"  # type: ignore[attr-defined]
        )
    return text
