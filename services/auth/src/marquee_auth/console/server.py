"""The dev console's HTTP side (aiohttp): the page, and a JSON bridge to AuthService.

Every call goes through the service's own gRPC port, with the browser's bearer
token passed on, so what a person tries here is what a gRPC caller gets. It
listens on 127.0.0.1 only and runs only in the dev profile (AuthSettings
refuses it elsewhere).
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import grpc
from aiohttp import web
from google.protobuf import json_format
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from marquee.auth.v1 import auth_pb2
from marquee_platform import ServiceContext

SERVICE = auth_pb2.DESCRIPTOR.services_by_name["AuthService"]
METHODS: dict[str, MethodDescriptor] = {m.name: m for m in SERVICE.methods}
LOOPBACK = "127.0.0.1"
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 412,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
}
_CHANNEL = web.AppKey("channel", object)


def _channel(request: web.Request) -> grpc.aio.Channel:
    holder = request.app[_CHANNEL]
    assert isinstance(holder, _SelfChannel)
    return holder.get()


def _message_class(descriptor: Any) -> type[Message]:
    cls: type[Message] = getattr(auth_pb2, descriptor.name)
    return cls


def _page() -> str:
    return resources.files("marquee_auth.console").joinpath("page.html").read_text()


async def _index(request: web.Request) -> web.Response:
    return web.Response(text=_page(), content_type="text/html")


def _error(
    status: int, code: str, message: str, violations: list[str] | None = None
) -> web.Response:
    body = {"code": code, "message": message, "violations": violations or []}
    return web.json_response(body, status=status)


async def call_auth(
    channel: grpc.aio.Channel, method: str, body: dict[str, Any], authorization: str | None
) -> tuple[int, dict[str, Any]]:
    """Call AuthService.`method` with `body` as its request; (HTTP status, JSON answer)."""
    descriptor = METHODS[method]
    request_cls = _message_class(descriptor.input_type)
    response_cls = _message_class(descriptor.output_type)
    rpc: grpc.aio.UnaryUnaryMultiCallable[Message, Message] = channel.unary_unary(
        f"/{SERVICE.full_name}/{method}",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=response_cls.FromString,
    )
    request = json_format.ParseDict(body, request_cls())
    metadata = (("authorization", authorization),) if authorization else ()
    try:
        response = await rpc(request, metadata=metadata, timeout=30)
    except grpc.aio.AioRpcError as error:
        violations = []
        status = rpc_status.from_call(error)
        for detail in status.details if status else ():
            bad = error_details_pb2.BadRequest()
            if detail.Unpack(bad):
                violations = [f"{v.field}: {v.description}" for v in bad.field_violations]
        return HTTP_STATUS.get(error.code(), 500), {
            "code": error.code().name,
            "message": error.details() or "",
            "violations": violations,
        }
    return 200, json_format.MessageToDict(response, preserving_proto_field_name=True)


async def _rpc(request: web.Request) -> web.Response:
    method = request.match_info["method"]
    if method not in METHODS:
        return _error(404, "NOT_FOUND", f"AuthService has no method {method!r}")
    try:
        body = await request.json() if request.can_read_body else {}
    except json.JSONDecodeError:
        return _error(400, "INVALID_ARGUMENT", "the body is not JSON")
    if not isinstance(body, dict):
        return _error(400, "INVALID_ARGUMENT", "the body must be a JSON object")
    try:
        status, answer = await call_auth(
            _channel(request), method, body, request.headers.get("Authorization")
        )
    except json_format.ParseError as exc:
        return _error(400, "INVALID_ARGUMENT", f"the body does not fit {method}: {exc}")
    return web.json_response(answer, status=status)


async def _oidc_callback(request: web.Request) -> web.Response:
    """Where the OpenID provider sends the browser back: finish, then show the page."""
    body = {"code": request.query.get("code", ""), "state": request.query.get("state", "")}
    status, answer = await call_auth(_channel(request), "CompleteOidcLogin", body, None)
    result = json.dumps({"status": status, "answer": answer})
    # The page picks the result up from sessionStorage (no token in the URL or history).
    script = (
        "<script>sessionStorage.setItem('oidc_result', "
        + json.dumps(result)
        + "); location.replace('/');</script>"
    )
    return web.Response(text=script, content_type="text/html")


class _SelfChannel:
    """A channel to this service's own gRPC port, opened at the first request.

    The console starts inside the registrar, before the gRPC port is bound.
    """

    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx
        self._channel: grpc.aio.Channel | None = None

    def get(self) -> grpc.aio.Channel:
        if self._channel is None:
            address = self._ctx.grpc_address
            assert address is not None, "requests come once the server is bound"
            host, _, port = address.rpartition(":")
            # A wildcard listening address is reached through loopback; nothing binds here.
            if host in ("0.0.0.0", "", "[::]"):  # nosec B104
                host = LOOPBACK
            self._channel = grpc.aio.insecure_channel(f"{host}:{port}")
        return self._channel

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()


async def start_console(ctx: ServiceContext, port: int) -> int:
    """Serve the console on 127.0.0.1:`port` until the service stops; the bound port."""
    channel = _SelfChannel(ctx)
    app = web.Application()
    app[_CHANNEL] = channel
    app.router.add_get("/", _index)
    app.router.add_post("/api/rpc/{method}", _rpc)
    app.router.add_get("/oidc/callback", _oidc_callback)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, LOOPBACK, port)
    await site.start()

    async def stop() -> None:
        await runner.cleanup()
        await channel.close()

    ctx.on_shutdown(stop)
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    return int(sockets[0].getsockname()[1]) if sockets else port
