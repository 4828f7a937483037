"""How a command calls a service and reports its gRPC answer: errors with their status,
messages as JSON."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from marquee_cli.output import CommandError, fail

if TYPE_CHECKING:
    import grpc
    from google.protobuf.message import Message

T = TypeVar("T")


def on_channel(service: str, target: str, action: Callable[[grpc.Channel], T]) -> T:
    """Run `action` on a channel to `target`; a gRPC error becomes a CommandError (exit 1)."""
    import grpc

    with grpc.insecure_channel(target) as channel:
        try:
            return action(channel)
        except grpc.RpcError as error:
            raise rpc_error(service, target, error) from None


def rpc_error(service: str, target: str, error: grpc.RpcError) -> CommandError:
    """`<service> at <target>: CODE: details`, exit code 1, the code under `grpc_status`."""
    code: grpc.StatusCode = error.code()
    details: str = error.details() or ""
    return fail(f"{service} at {target}: {code.name}: {details}", grpc_status=code.name)


def message_dict(message: Message) -> dict[str, Any]:
    """Every field, defaults included: a script reads `created: false`, `found: "0"`."""
    from google.protobuf import json_format

    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
