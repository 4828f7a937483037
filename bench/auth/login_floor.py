"""The floor of a password login here: a bare grpc.aio server doing only what any login must.

It answers the same AuthService/Login method with the same messages, on the same
PostgreSQL tables and the same argon2id parameters, and does the least a login
that hands out a refresh token and a signed access token can do:

- one indexed read of the user's id and password hash;
- the argon2id verify, on as many threads of its own as the service hashes on;
- one statement that opens the session and stores its refresh token's hash;
- an Ed25519-signed access token.

No interceptors, validation, attempt limits, lockout, second factors, logging
or metrics. Against raw argon2 hashes, it says how much of a login's shortfall
the machine imposes; against it, Marquee's Login says what Marquee adds.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import asyncpg
import grpc
from argon2 import PasswordHasher
from argon2.exceptions import VerificationError
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf.timestamp_pb2 import Timestamp

from marquee.auth.v1 import auth_pb2

_FIND = (
    "SELECT u.id, c.hash FROM auth_users u"
    " JOIN auth_password_credentials c ON c.user_id = u.id"
    " WHERE lower(u.username) = lower($1)"
)
_OPEN = (
    "WITH opened AS ("
    " INSERT INTO auth_sessions (id, user_id, expires_at) VALUES ($1, $2, $3)"
    " RETURNING id)"
    " INSERT INTO auth_refresh_tokens (token_hash, session_id, expires_at)"
    " SELECT $4, id, $3 FROM opened"
)


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _timestamp(at: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(at)
    return stamp


async def _no_reset(conn: asyncpg.Connection) -> None:
    """Release a pooled connection without asyncpg's reset query, as auth does."""


class LoginFloor:
    def __init__(self, dsn: str, hasher: PasswordHasher, threads: int) -> None:
        self._dsn = dsn
        self._hasher = hasher
        self._threads = ThreadPoolExecutor(threads, thread_name_prefix="floor-argon2")
        self._key = Ed25519PrivateKey.generate()
        self._header = _b64(b'{"typ":"JWT","alg":"EdDSA","kid":"floor"}')
        self._pool: asyncpg.Pool | None = None
        self._server: grpc.aio.Server | None = None

    async def start(self) -> str:
        self._pool = await asyncpg.create_pool(self._dsn, min_size=1, max_size=10, reset=_no_reset)
        self._server = grpc.aio.server()
        self._server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "marquee.auth.v1.AuthService",
                    {
                        "Login": grpc.unary_unary_rpc_method_handler(
                            self._login,
                            request_deserializer=auth_pb2.LoginRequest.FromString,
                            response_serializer=auth_pb2.LoginResponse.SerializeToString,
                        )
                    },
                ),
            )
        )
        port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()
        return f"127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(None)
        if self._pool is not None:
            await self._pool.close()
        self._threads.shutdown(wait=True)

    def _verify(self, stored: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored, password)
        except VerificationError:
            return False

    async def _login(
        self,
        request: auth_pb2.LoginRequest,
        context: grpc.aio.ServicerContext[auth_pb2.LoginRequest, auth_pb2.LoginResponse],
    ) -> auth_pb2.LoginResponse:
        assert self._pool is not None
        row = await self._pool.fetchrow(_FIND, request.username)
        if row is None or not await asyncio.get_running_loop().run_in_executor(
            self._threads, self._verify, row["hash"], request.password
        ):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "wrong username or password")
        user_id = row["id"]
        session_id = uuid.uuid4()
        now = datetime.now(UTC)
        refresh_expires = now + timedelta(days=30)
        refresh = "mqr_" + secrets.token_urlsafe(32)
        await self._pool.execute(
            _OPEN, session_id, user_id, refresh_expires, hashlib.sha256(refresh.encode()).digest()
        )
        access_expires = now + timedelta(minutes=15)
        claims = {
            "iss": "marquee-auth",
            "sub": str(user_id),
            "sid": str(session_id),
            "typ": "access",
            "iat": int(now.timestamp()),
            "exp": int(access_expires.timestamp()),
            "jti": uuid.uuid4().hex,
        }
        payload = json.dumps(claims, separators=(",", ":")).encode()
        signing_input = self._header + b"." + _b64(payload)
        access = signing_input + b"." + _b64(self._key.sign(signing_input))
        return auth_pb2.LoginResponse(
            tokens=auth_pb2.Tokens(
                access_token=access.decode("ascii"),
                refresh_token=refresh,
                token_type="Bearer",  # nosec B106
                access_token_expires_at=_timestamp(access_expires),
                refresh_token_expires_at=_timestamp(refresh_expires),
                session_id=str(session_id),
                user_id=str(user_id),
            )
        )
