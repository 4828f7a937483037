"""`marquee cache get|set|del|prefix-del`: the cache gateway by hand, for operators and scripts.

The gateway is `--address host:port`, or else the "cache-gateway" process of the
suite running under `--data-dir` (its endpoints.json).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import grpc
import typer
from google.protobuf.duration_pb2 import Duration

from marquee.cache.v1 import cache_pb2, cache_pb2_grpc
from marquee_cli import output
from marquee_cli.endpoints import EndpointsFileError, endpoints_path, read_endpoints

GATEWAY_PROCESS = "cache-gateway"

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
Timeout = Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds the call may take.")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
DEFAULT_DATA_DIR = Path(".data")
DEFAULT_TIMEOUT = 5.0

app = typer.Typer(help="Read and write the cache through the cache gateway.", no_args_is_help=True)

T = TypeVar("T")


def fail(message: str) -> typer.Exit:
    typer.echo(f"marquee: {message}", err=True)
    return typer.Exit(1)


def gateway_address(address: str | None, data_dir: Path) -> str:
    if address:
        return address
    path = endpoints_path(data_dir.absolute())
    try:
        suite = read_endpoints(path)
    except FileNotFoundError:
        raise fail(f"no suite running ({path} does not exist); pass --address") from None
    except EndpointsFileError as exc:
        raise fail(f"cannot read endpoints file: {exc}") from None
    for process in suite.processes:
        if process.name == GATEWAY_PROCESS and process.grpc:
            return process.grpc
    raise fail(f"the suite in {path} runs no cache gateway")


def call(
    address: str | None,
    data_dir: Path,
    action: Callable[[cache_pb2_grpc.CacheServiceStub], T],
) -> T:
    """Run `action` with a stub; a gRPC error becomes one line on stderr and exit code 1."""
    target = gateway_address(address, data_dir)
    with grpc.insecure_channel(target) as channel:
        try:
            return action(cache_pb2_grpc.CacheServiceStub(channel))
        except grpc.RpcError as error:
            raise fail(
                f"cache gateway at {target}: {error.code().name}: {error.details()}"
            ) from None


def value_json(value: bytes) -> dict[str, str]:
    """Text when it is UTF-8, else base64, saying which."""
    try:
        return {"value": value.decode("utf-8"), "encoding": "utf-8"}
    except UnicodeDecodeError:
        return {"value": base64.b64encode(value).decode("ascii"), "encoding": "base64"}


@app.command()
def get(
    key: str,
    address: Address = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    timeout: Timeout = DEFAULT_TIMEOUT,
    json_output: Json = False,
) -> None:
    """Print KEY's value. Exits 1 if the key does not exist."""
    reply = call(address, data_dir, lambda s: s.Get(cache_pb2.GetRequest(key=key), timeout=timeout))
    if json_output:
        document: dict[str, Any] = {"found": reply.found, "value": None}
        if reply.found:
            document |= value_json(reply.value)
        document["layer"] = cache_pb2.CacheLayer.Name(reply.layer).removeprefix("CACHE_LAYER_")
        typer.echo(output.render_json(document))
    elif reply.found:
        typer.echo(reply.value)  # bytes go out as they are
    if not reply.found:
        raise fail(f"key {key!r} not found")


@app.command("set")
def set_(
    key: str,
    value: str,
    ttl: Annotated[
        float | None, typer.Option(min=0.001, help="Seconds until it expires (default: never).")
    ] = None,
    if_absent: Annotated[
        bool, typer.Option("--if-absent", help="Only if the key does not exist.")
    ] = False,
    if_present: Annotated[
        bool, typer.Option("--if-present", help="Only if the key exists.")
    ] = False,
    base64_value: Annotated[
        bool, typer.Option("--base64", help="VALUE is base64 (for binary values).")
    ] = False,
    address: Address = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    timeout: Timeout = DEFAULT_TIMEOUT,
    json_output: Json = False,
) -> None:
    """Store VALUE under KEY. Exits 1 if a condition kept it from being stored."""
    if if_absent and if_present:
        raise typer.BadParameter("--if-absent and --if-present exclude each other")
    try:
        data = base64.b64decode(value, validate=True) if base64_value else value.encode()
    except binascii.Error:
        raise typer.BadParameter("VALUE is not valid base64", param_hint="VALUE") from None
    request = cache_pb2.SetRequest(key=key, value=data)
    if ttl is not None:
        request.ttl.CopyFrom(_duration(ttl))
    if if_absent:
        request.condition = cache_pb2.SET_CONDITION_IF_ABSENT
    elif if_present:
        request.condition = cache_pb2.SET_CONDITION_IF_PRESENT
    reply = call(address, data_dir, lambda s: s.Set(request, timeout=timeout))
    if json_output:
        typer.echo(output.render_json({"stored": reply.stored}))
    elif reply.stored:
        typer.echo(f"stored {key!r}")
    if not reply.stored:
        raise fail(f"{key!r} not stored: the condition was not met")


@app.command("del")
def delete(
    keys: Annotated[list[str], typer.Argument(help="Keys to delete.")],
    address: Address = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    timeout: Timeout = DEFAULT_TIMEOUT,
    json_output: Json = False,
) -> None:
    """Delete KEYS; prints how many existed."""
    reply = call(
        address, data_dir, lambda s: s.Delete(cache_pb2.DeleteRequest(keys=keys), timeout=timeout)
    )
    _print_deleted(reply.deleted_count, json_output)


@app.command("prefix-del")
def prefix_delete(
    prefix: str,
    address: Address = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    timeout: Timeout = DEFAULT_TIMEOUT,
    json_output: Json = False,
) -> None:
    """Delete every key starting with PREFIX (SCAN in batches, never KEYS)."""
    request = cache_pb2.DeleteByPrefixRequest(prefix=prefix)
    reply = call(address, data_dir, lambda s: s.DeleteByPrefix(request, timeout=timeout))
    _print_deleted(reply.deleted_count, json_output)


def _print_deleted(count: int, json_output: bool) -> None:
    if json_output:
        typer.echo(output.render_json({"deleted": count}))
    else:
        typer.echo(f"deleted {count} key{'' if count == 1 else 's'}")


def _duration(seconds: float) -> Duration:
    result = Duration()
    result.FromNanoseconds(round(seconds * 1e9))
    return result
