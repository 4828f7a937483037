"""`marquee cache get|set|del|prefix-del`: the cache gateway by hand, for operators and scripts.

The gateway is `--address host:port`, or else the "cache-gateway" process of the
suite running under `--data-dir` (its endpoints.json).

Values are bytes. `get` prints a value as text only when it is printable UTF-8;
`--raw` writes its bytes as they are, `--json` gives base64 for binary values.
`set` takes VALUE, `-` for stdin, or `--file PATH`.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from marquee_cli import output
from marquee_cli.names import TERMINAL_UNSAFE, printable, printable_each
from marquee_cli.output import CommandError, fail
from marquee_cli.service_address import suite_service_address

if TYPE_CHECKING:  # grpc and the protos load only in the commands that call the gateway
    import grpc
    from google.protobuf.duration_pb2 import Duration

    from marquee.cache.v1 import cache_pb2_grpc

GATEWAY_PROCESS = "cache-gateway"
# The largest message the CLI sends or accepts: gRPC's default receive limit, which
# the services keep unless configured otherwise (their GRPC_MAX_RECEIVE_MESSAGE_BYTES
# setting). Beyond it the gateway would answer RESOURCE_EXHAUSTED, so a larger value
# is refused here, before anything is sent.
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
# The gateway's own bound (marquee_cache_gateway.validation.MAX_TTL_SECONDS).
MAX_TTL_SECONDS = 10 * 365 * 86_400

Address = Annotated[
    str | None,
    typer.Option(
        "--address",
        envvar="MARQUEE_CACHE_ADDRESS",
        help="Cache gateway host:port (default: from the running suite).",
    ),
]
DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        envvar="MARQUEE_DATA_DIR",
        help="Where the local suite keeps its endpoints.json (used without --address).",
    ),
]
# A day: far beyond any call, and inside what a gRPC deadline can hold (1e300 overflows).
MAX_TIMEOUT_SECONDS = 86_400.0
Timeout = Annotated[
    float,
    typer.Option("--timeout", min=0.1, max=MAX_TIMEOUT_SECONDS, help="Seconds the call may take."),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
Key = Annotated[str, typer.Argument(callback=printable, metavar="KEY", help="The key.")]
MaxMessageBytes = Annotated[
    int,
    typer.Option(
        "--max-message-bytes",
        envvar="MARQUEE_CLI_MAX_MESSAGE_BYTES",
        min=1024,
        max=2**31 - 1,  # gRPC channel options are C ints
        help="Largest gRPC message to send or accept; raise it only for a gateway "
        "configured to receive more (default: gRPC's 4 MiB).",
    ),
]
DEFAULT_DATA_DIR = Path(".data")
DEFAULT_TIMEOUT = 5.0

app = output.command_group("Read and write the cache through the cache gateway.")

T = TypeVar("T")


def gateway_address(address: str | None, data_dir: Path) -> str:
    return suite_service_address(GATEWAY_PROCESS, address, data_dir)


def call(
    target: str,
    action: Callable[[cache_pb2_grpc.CacheServiceStub], T],
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> T:
    """Run `action` with a stub; a gRPC error becomes a CommandError (exit code 1)."""
    import grpc

    from marquee.cache.v1 import cache_pb2_grpc

    options = [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
    ]
    with grpc.insecure_channel(target, options=options) as channel:
        try:
            return action(cache_pb2_grpc.CacheServiceStub(channel))
        except grpc.RpcError as error:
            raise rpc_error(target, error) from None


def rpc_error(target: str, error: grpc.RpcError) -> CommandError:
    import grpc

    code: grpc.StatusCode = error.code()
    details: str = error.details() or ""
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in details:
        return fail(
            f"cache gateway at {target}: a message was over the gRPC message-size limit "
            f"({details}); see --max-message-bytes",
            grpc_status=code.name,
        )
    return fail(f"cache gateway at {target}: {code.name}: {details}", grpc_status=code.name)


def value_json(value: bytes) -> dict[str, str]:
    """Text when it is UTF-8, else base64, saying which."""
    try:
        return {"value": value.decode("utf-8"), "encoding": "utf-8"}
    except UnicodeDecodeError:
        return {"value": base64.b64encode(value).decode("ascii"), "encoding": "base64"}


def printable_text(value: bytes) -> str | None:
    """`value` as text if printing it cannot upset a terminal, else None."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if TERMINAL_UNSAFE.search(text) else text


@app.command()
def get(
    key: Key,
    raw: Annotated[
        bool, typer.Option("--raw", help="Write the value's bytes to stdout as they are.")
    ] = False,
    address: Address = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    timeout: Timeout = DEFAULT_TIMEOUT,
    max_message_bytes: MaxMessageBytes = DEFAULT_MAX_MESSAGE_BYTES,
    json_output: Json = False,
) -> None:
    """Print KEY's value. Exits 1 if the key does not exist.

    Binary values (not printable UTF-8) are not written to a terminal: use --raw
    (e.g. `--raw > file`) or --json (base64).
    """
    if raw and json_output:
        raise typer.BadParameter("--raw and --json exclude each other")
    target = gateway_address(address, data_dir)
    from marquee.cache.v1 import cache_pb2

    request = cache_pb2.GetRequest(key=key)
    reply = call(target, lambda s: s.Get(request, timeout=timeout), max_message_bytes)
    if json_output:
        document: dict[str, Any] = {"found": reply.found, "value": None}
        if reply.found:
            document |= value_json(reply.value)
        document["layer"] = cache_pb2.CacheLayer.Name(reply.layer).removeprefix("CACHE_LAYER_")
        typer.echo(output.render_json(document))
    elif reply.found and raw:
        stdout = typer.get_binary_stream("stdout")
        stdout.write(reply.value)
        stdout.flush()
    elif reply.found:
        text = printable_text(reply.value)
        if text is None:
            raise fail(
                f"{key!r} holds {len(reply.value)} bytes that are not printable text; "
                "--raw writes them as they are, --json as base64"
            )
        typer.echo(text)
    if not reply.found:
        raise output.negative(f"key {key!r} not found")


@app.command("set")
def set_(
    key: Key,
    value: Annotated[
        str | None,
        typer.Argument(
            metavar="VALUE", help="The value; - reads it from stdin. Or give --file instead."
        ),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", dir_okay=False, help="Read the value (its bytes) from this file."),
    ] = None,
    ttl: Annotated[
        float | None,
        typer.Option(
            min=0.001, max=MAX_TTL_SECONDS, help="Seconds until it expires (default: never)."
        ),
    ] = None,
    if_absent: Annotated[
        bool, typer.Option("--if-absent", help="Only if the key does not exist.")
    ] = False,
    if_present: Annotated[
        bool, typer.Option("--if-present", help="Only if the key exists.")
    ] = False,
    base64_value: Annotated[
        bool, typer.Option("--base64", help="The value is base64 (for binary values).")
    ] = False,
    address: Address = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    timeout: Timeout = DEFAULT_TIMEOUT,
    max_message_bytes: MaxMessageBytes = DEFAULT_MAX_MESSAGE_BYTES,
    json_output: Json = False,
) -> None:
    """Store a value under KEY. Exits 1 if a condition kept it from being stored."""
    if if_absent and if_present:
        raise typer.BadParameter("--if-absent and --if-present exclude each other")
    data = _read_value(value, file, max_message_bytes)
    if base64_value:
        try:
            data = base64.b64decode(data, validate=True)
        except binascii.Error:
            raise typer.BadParameter("the value is not valid base64") from None
    target = gateway_address(address, data_dir)
    from marquee.cache.v1 import cache_pb2

    request = cache_pb2.SetRequest(key=key, value=data)
    if ttl is not None:
        request.ttl.CopyFrom(_duration(ttl))
    if if_absent:
        request.condition = cache_pb2.SET_CONDITION_IF_ABSENT
    elif if_present:
        request.condition = cache_pb2.SET_CONDITION_IF_PRESENT
    if request.ByteSize() > max_message_bytes:
        raise _too_large(f"{len(data)} bytes", max_message_bytes)
    reply = call(target, lambda s: s.Set(request, timeout=timeout), max_message_bytes)
    if json_output:
        typer.echo(output.render_json({"stored": reply.stored}))
    elif reply.stored:
        typer.echo(f"stored {key!r}")
    if not reply.stored:
        raise output.negative(f"{key!r} not stored: the condition was not met")


def _read_value(value: str | None, file: Path | None, limit: int) -> bytes:
    """The value's bytes from VALUE, stdin (`-`) or --file; never reads much past `limit`."""
    if (value is None) == (file is None):
        raise typer.BadParameter("give the value as VALUE, - (stdin) or --file PATH, once")
    if value is not None and value != "-":
        # The bytes as given: argv carries non-UTF-8 bytes as surrogate escapes.
        return value.encode("utf-8", "surrogateescape")
    try:
        if file is None:
            stream = typer.get_binary_stream("stdin")
        else:
            size = os.stat(file).st_size
            if size > limit:
                raise _too_large(f"{size} bytes", limit)
            stream = file.open("rb")
        with stream:
            # One byte past the limit is enough to know the value is too large.
            data = stream.read(limit + 1)
    except OSError as exc:
        raise fail(f"cannot read the value from {file or 'stdin'}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise _too_large(f"over {limit} bytes", limit)
    return data


def _too_large(size: str, limit: int) -> CommandError:
    return fail(
        f"the value ({size}) is too large for one gRPC message: the limit is {limit} bytes "
        "(--max-message-bytes; the gateway's own receive limit, gRPC's 4 MiB unless "
        "configured, applies too)",
        kind="too_large",
        limit_bytes=limit,
    )


@app.command("del")
def delete(
    keys: Annotated[
        list[str],
        typer.Argument(callback=printable_each, metavar="KEYS", help="Keys to delete."),
    ],
    address: Address = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    timeout: Timeout = DEFAULT_TIMEOUT,
    json_output: Json = False,
) -> None:
    """Delete KEYS; prints how many existed."""
    target = gateway_address(address, data_dir)
    from marquee.cache.v1 import cache_pb2

    request = cache_pb2.DeleteRequest(keys=keys)
    reply = call(target, lambda s: s.Delete(request, timeout=timeout))
    _print_deleted(reply.deleted_count, json_output)


@app.command("prefix-del")
def prefix_delete(
    prefix: Annotated[
        str, typer.Argument(callback=printable, metavar="PREFIX", help="The key prefix.")
    ],
    address: Address = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    timeout: Timeout = DEFAULT_TIMEOUT,
    json_output: Json = False,
) -> None:
    """Delete every key starting with PREFIX (SCAN in batches, never KEYS)."""
    target = gateway_address(address, data_dir)
    from marquee.cache.v1 import cache_pb2

    request = cache_pb2.DeleteByPrefixRequest(prefix=prefix)
    reply = call(target, lambda s: s.DeleteByPrefix(request, timeout=timeout))
    _print_deleted(reply.deleted_count, json_output)


def _print_deleted(count: int, json_output: bool) -> None:
    if json_output:
        typer.echo(output.render_json({"deleted": count}))
    else:
        typer.echo(f"deleted {count} key{'' if count == 1 else 's'}")


def _duration(seconds: float) -> Duration:
    from google.protobuf.duration_pb2 import Duration

    result = Duration()
    result.FromNanoseconds(round(seconds * 1e9))
    return result
