"""How a command reports a service's gRPC answer: errors with their status, messages as JSON."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from marquee_cli.output import CommandError, fail

if TYPE_CHECKING:
    import grpc
    from google.protobuf.message import Message


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
