"""Helpers of the media tests: a JWKS-only auth server, tokens, and a client."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

import grpc
from joserfc import jwt
from joserfc.jwk import KeySet, OKPKey

from marquee.auth.v1 import auth_pb2, auth_pb2_grpc
from marquee.media.v1 import media_pb2, media_pb2_grpc
from marquee_authn import ACCESS_TOKEN_ALGORITHM

ISSUER = "marquee-auth"


def new_key() -> OKPKey:
    return OKPKey.generate_key(
        "Ed25519", parameters={"kid": "media-test", "alg": ACCESS_TOKEN_ALGORITHM}, private=True
    )


def sign(key: OKPKey, subject: str) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": subject, "sid": "s-" + subject, "typ": "access",
              "iat": now, "exp": now + 3600}  # fmt: skip
    header = {"alg": ACCESS_TOKEN_ALGORITHM, "kid": key.kid}
    return jwt.encode(header, claims, key, algorithms=[ACCESS_TOKEN_ALGORITHM])


class JwksOnlyAuth(auth_pb2_grpc.AuthServiceServicer):
    """The one auth RPC media needs; media never imports the auth service itself."""

    def __init__(self, key: OKPKey) -> None:
        self._jwks = json.dumps(KeySet([OKPKey.import_key(key.as_dict(private=False))]).as_dict())

    async def GetJwks(
        self, request: auth_pb2.GetJwksRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> auth_pb2.GetJwksResponse:
        return auth_pb2.GetJwksResponse(jwks_json=self._jwks)


async def start_auth(key: OKPKey) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server()
    auth_pb2_grpc.add_AuthServiceServicer_to_server(JwksOnlyAuth(key), server)  # type: ignore[abstract]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


class Client:
    """A MediaService stub that sends one user's token with every call."""

    def __init__(self, channel: grpc.aio.Channel, token: str) -> None:
        self.stub = media_pb2_grpc.MediaServiceStub(channel)
        self.metadata = (("authorization", f"Bearer {token}"),)

    async def put(
        self,
        key: str,
        chunks: Iterable[bytes] | AsyncIterator[bytes],
        *,
        content_type: str = "",
        overwrite: bool = False,
        sha256: str = "",
        metadata: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> media_pb2.ObjectInfo:
        header = media_pb2.UploadHeader(
            key=key, content_type=content_type, overwrite=overwrite, sha256=sha256,
            metadata=metadata or {},
        )  # fmt: skip

        async def requests() -> AsyncIterator[media_pb2.UploadRequest]:
            yield media_pb2.UploadRequest(header=header)
            if isinstance(chunks, AsyncIterator):
                async for chunk in chunks:
                    yield media_pb2.UploadRequest(chunk=chunk)
            else:
                for chunk in chunks:
                    yield media_pb2.UploadRequest(chunk=chunk)

        answer = await self.stub.Upload(requests(), metadata=self.metadata, timeout=timeout)
        return answer.object

    async def get(
        self, key: str, offset: int = 0, length: int = 0, timeout: float = 60
    ) -> tuple[media_pb2.DownloadHeader, bytes]:
        call = self.stub.Download(
            media_pb2.DownloadRequest(key=key, offset=offset, length=length),
            metadata=self.metadata,
            timeout=timeout,
        )
        header: media_pb2.DownloadHeader | None = None
        body = bytearray()
        async for message in call:
            if message.WhichOneof("part") == "header":
                header = message.header
            else:
                body += message.chunk
        assert header is not None
        return header, bytes(body)
