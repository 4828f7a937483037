"""Tokens: verified elsewhere, refresh rotation and reuse, logout, key rotation, secrets at rest."""

from __future__ import annotations

import json

import asyncpg
import grpc
import pytest
from auth_support import auth_service, auth_settings, bearer, login, register_user, stub
from joserfc import jwt
from joserfc.jwk import KeySet, OKPKey

from marquee.auth.v1 import auth_pb2
from marquee_auth.secret_box import SecretBox, SecretBoxError
from marquee_auth.servicer import AuthServicer
from marquee_authn import GrpcJwksSource, TokenVerifier, undeclared_methods
from marquee_testing.inprocess import RunningService


def verifier_for(service: RunningService) -> TokenVerifier:
    # No pause between JWKS fetches: the rotation test meets a new key id at once.
    return TokenVerifier(
        GrpcJwksSource(service.channel), issuer="marquee-auth", min_refresh_interval=0
    )


async def test_an_access_token_verifies_against_the_published_jwks(
    scratch_database_url: str,
) -> None:
    async with auth_service(scratch_database_url) as service:
        auth = stub(service)
        user = await register_user(auth)
        tokens = await login(auth, user.username)
        identity = await verifier_for(service).verify(tokens.access_token)
        assert identity.subject == user.id
        assert identity.session_id == tokens.session_id
        jwks = await auth.GetJwks(auth_pb2.GetJwksRequest(), timeout=10)
        assert [(k.kty, k.crv, k.alg, k.use) for k in jwks.keys] == [
            ("OKP", "Ed25519", "Ed25519", "sig")
        ]
        assert '"d"' not in jwks.jwks_json, "no private part is published"


async def test_refresh_rotates_and_a_reused_token_revokes_the_session(
    scratch_database_url: str,
) -> None:
    async with auth_service(scratch_database_url) as service:
        auth = stub(service)
        user = await register_user(auth)
        first = await login(auth, user.username)
        second = (
            await auth.Refresh(
                auth_pb2.RefreshRequest(refresh_token=first.refresh_token), timeout=10
            )
        ).tokens
        assert second.refresh_token != first.refresh_token
        assert second.session_id == first.session_id
        assert second.access_token != first.access_token

        # The spent token comes back: someone else holds the family. Both lose it.
        with pytest.raises(grpc.aio.AioRpcError) as reused:
            await auth.Refresh(
                auth_pb2.RefreshRequest(refresh_token=first.refresh_token), timeout=10
            )
        assert reused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "already used" in (reused.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as revoked:
            await auth.Refresh(
                auth_pb2.RefreshRequest(refresh_token=second.refresh_token), timeout=10
            )
        assert revoked.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "session has ended" in (revoked.value.details() or "")

        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await auth.Refresh(auth_pb2.RefreshRequest(refresh_token="mqr_forged"), timeout=10)
        assert unknown.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_logout_ends_one_session_and_logout_all_ends_every_one(
    scratch_database_url: str,
) -> None:
    async with auth_service(scratch_database_url) as service:
        auth = stub(service)
        user = await register_user(auth)
        a, b, c = [await login(auth, user.username) for _ in range(3)]

        out = await auth.Logout(auth_pb2.LogoutRequest(refresh_token=a.refresh_token), timeout=10)
        assert out.revoked_sessions == 1
        again = await auth.Logout(auth_pb2.LogoutRequest(refresh_token=a.refresh_token), timeout=10)
        assert again.revoked_sessions == 0, "logout is idempotent"
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await auth.Refresh(auth_pb2.RefreshRequest(refresh_token=a.refresh_token), timeout=10)
        assert ended.value.code() == grpc.StatusCode.UNAUTHENTICATED

        # By access token, every session of the user: b and c.
        everyone = await auth.Logout(
            auth_pb2.LogoutRequest(all_sessions=True), metadata=bearer(b.access_token), timeout=10
        )
        assert everyone.revoked_sessions == 2
        for tokens in (b, c):
            with pytest.raises(grpc.aio.AioRpcError) as gone:
                await auth.Refresh(
                    auth_pb2.RefreshRequest(refresh_token=tokens.refresh_token), timeout=10
                )
            assert gone.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_logout_without_credentials_or_with_a_bad_token_is_unauthenticated(
    scratch_database_url: str,
) -> None:
    async with auth_service(scratch_database_url) as service:
        auth = stub(service)
        for metadata in [(), bearer("not.a.token"), bearer("garbage")]:
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await auth.Logout(auth_pb2.LogoutRequest(), metadata=metadata, timeout=10)
            assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_authenticated_methods_need_a_valid_token_and_every_method_is_declared(
    scratch_database_url: str,
) -> None:
    async with auth_service(scratch_database_url) as service:
        auth = stub(service)
        user = await register_user(auth)
        tokens = await login(auth, user.username)
        for metadata in [(), bearer("x.y.z")]:
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await auth.BeginWebAuthnRegistration(
                    auth_pb2.BeginWebAuthnRegistrationRequest(), metadata=metadata, timeout=10
                )
            assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # A valid token reaches the handler.
        begun = await auth.BeginWebAuthnRegistration(
            auth_pb2.BeginWebAuthnRegistrationRequest(),
            metadata=bearer(tokens.access_token),
            timeout=10,
        )
        assert begun.ceremony_id
    descriptor = auth_pb2.DESCRIPTOR.services_by_name["AuthService"]
    assert undeclared_methods(AuthServicer, descriptor) == []


async def test_after_a_key_rotation_old_tokens_still_verify_and_new_ones_use_the_new_key(
    scratch_database_url: str,
) -> None:
    async with auth_service(scratch_database_url) as service:
        auth = stub(service)
        user = await register_user(auth)
        old = await login(auth, user.username)
        verifier = verifier_for(service)
        await verifier.verify(old.access_token)  # caches the JWKS with one key

        # Another replica rotates the key in the shared table.
        async with auth_service(scratch_database_url) as other:
            reused = await stub(other).GetJwks(auth_pb2.GetJwksRequest(), timeout=10)
        assert len(reused.keys) == 1, "a fresh replica reuses the current key"
        conn = await asyncpg.connect(scratch_database_url)
        try:
            await conn.execute(
                "UPDATE auth_signing_keys SET created_at = now() - interval '30 days'"
            )
        finally:
            await conn.close()
        async with auth_service(scratch_database_url) as rotating:
            jwks = await stub(rotating).GetJwks(auth_pb2.GetJwksRequest(), timeout=10)
            assert len(jwks.keys) == 2, "the retired key stays published"
            new = await login(stub(rotating), user.username)
        assert new.access_token.split(".")[0] != old.access_token.split(".")[0], "new kid"
        # The first replica publishes what the table holds, so its verifiers learn the
        # new key on the unknown kid; the old token still verifies.
        assert (await verifier.verify(new.access_token)).subject == user.id
        assert (await verifier.verify(old.access_token)).subject == user.id


async def test_signing_keys_are_encrypted_at_rest_under_the_configured_key(
    scratch_database_url: str,
) -> None:
    key_a = "A" * 43 + "="
    key_b = "B" * 43 + "="
    async with auth_service(scratch_database_url, encryption_key=key_a) as service:
        await register_user(stub(service))
    conn = await asyncpg.connect(scratch_database_url)
    try:
        sealed = await conn.fetch("SELECT private_key_encrypted FROM auth_signing_keys")
    finally:
        await conn.close()
    assert sealed
    assert all(b"PRIVATE KEY" not in row["private_key_encrypted"] for row in sealed)
    with pytest.raises(SecretBoxError, match="does not decrypt"):
        async with auth_service(scratch_database_url, encryption_key=key_b):
            pass


async def test_the_encryption_key_rotates_through_previous_keys(
    scratch_database_url: str,
) -> None:
    old_key, new_key = "A" * 43 + "=", "C" * 43 + "="
    async with auth_service(scratch_database_url, encryption_key=old_key) as service:
        auth = stub(service)
        user = await register_user(auth)
        tokens = await login(auth, user.username)
        await auth.EnrollTotp(auth_pb2.EnrollTotpRequest(), metadata=bearer(tokens.access_token))
    # The new key with the old one as previous: everything opens, and is sealed again.
    async with auth_service(
        scratch_database_url, encryption_key=new_key, previous_encryption_keys=[old_key]
    ) as service:
        assert (await login(stub(service), user.username)).user_id == user.id
    # From now on the new key alone opens every secret.
    async with auth_service(scratch_database_url, encryption_key=new_key) as service:
        assert (await login(stub(service), user.username)).user_id == user.id
        conn = await asyncpg.connect(scratch_database_url)
        try:
            pending = await conn.fetchval("SELECT pending_secret_sealed FROM auth_totp")
        finally:
            await conn.close()
        assert pending is not None


async def test_an_issued_token_is_the_one_joserfc_would_sign(scratch_database_url: str) -> None:
    """The issuer writes the compact JWS itself: byte for byte joserfc's jwt.encode
    of the same header and claims (Ed25519 signatures are deterministic)."""
    async with auth_service(scratch_database_url) as service:
        auth = stub(service)
        user = await register_user(auth)
        token = (await login(auth, user.username)).access_token
        jwks = await auth.GetJwks(auth_pb2.GetJwksRequest(), timeout=10)
    conn = await asyncpg.connect(scratch_database_url)
    try:
        box = SecretBox.from_settings(auth_settings(scratch_database_url))
        rows = await conn.fetch("SELECT kid, private_key_encrypted FROM auth_signing_keys")
    finally:
        await conn.close()
    assert len(rows) == 1
    kid = rows[0]["kid"]
    private = OKPKey.import_key(box.open(rows[0]["private_key_encrypted"], f"signing-key:{kid}"))
    decoded = jwt.decode(
        token, KeySet.import_key_set(json.loads(jwks.jwks_json)), algorithms=["Ed25519"]
    )
    assert decoded.header == {"typ": "JWT", "alg": "Ed25519", "kid": kid}
    assert set(decoded.claims) == {"iss", "sub", "sid", "typ", "iat", "exp", "jti"}
    again = jwt.encode(decoded.header, decoded.claims, private, algorithms=["Ed25519"])
    assert again == token
