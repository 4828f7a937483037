"""AuthService's passkey RPCs (py_webauthn): register, and log in or answer an MFA challenge.

Challenges live server-side in ceremonies, single use and expiring. Passkeys
are discoverable (resident keys), so a login may name no user at all. An
authenticator whose counter is always 0 passes; a non-zero counter that does
not move forward is refused and logged as a possible clone.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import structlog
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    parse_authentication_credential_json,
    parse_authenticator_data,
)
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from marquee.auth.v1 import auth_pb2
from marquee_auth.attempt_limits import source_of
from marquee_auth.db import Connection
from marquee_auth.deps import Context, HandlerBase, timestamp
from marquee_auth.mfa_challenges import ChallengeRefused
from marquee_auth.passkeys import CredentialTaken, StoredCredential
from marquee_auth.validation import Violations, check_token
from marquee_authn import TokenVerifier, authenticated, current_identity, public
from marquee_platform.errors import AlreadyExists, InvalidArgument, Unauthenticated

log = structlog.get_logger("marquee_auth.webauthn")
MAX_CREDENTIAL_JSON = 64 * 1024
EXPIRED = "WebAuthn ceremony expired or already used: begin again"


def _descriptor(credential: StoredCredential) -> PublicKeyCredentialDescriptor:
    transports = []
    for name in credential.transports:
        try:
            transports.append(AuthenticatorTransport(name))
        except ValueError:
            continue
    return PublicKeyCredentialDescriptor(id=credential.id, transports=transports or None)


def _check_finish(v: Violations, ceremony_id: str, credential_json: str) -> dict[str, Any]:
    check_token(v, "ceremony_id", ceremony_id)
    parsed: Any = None
    if not credential_json:
        v.add("credential_json", "required: the authenticator's response as JSON")
    elif len(credential_json) > MAX_CREDENTIAL_JSON:
        v.add("credential_json", f"at most {MAX_CREDENTIAL_JSON} bytes")
    else:
        try:
            parsed = json.loads(credential_json)
        except ValueError:
            v.add("credential_json", "not valid JSON")
        else:
            if not isinstance(parsed, dict):
                v.add("credential_json", "must be a JSON object")
    v.raise_if_any()
    assert isinstance(parsed, dict)
    return parsed


def _bad_credential(exc: Exception) -> InvalidArgument:
    # A response that does not verify is bad input (the old system answered 403).
    message = f"the authenticator's response does not verify: {exc}"
    return InvalidArgument(message, [("credential_json", message)])


class WebAuthnRpcs(HandlerBase):
    token_verifier: TokenVerifier

    @authenticated
    async def BeginWebAuthnRegistration(
        self, request: auth_pb2.BeginWebAuthnRegistrationRequest, context: Context
    ) -> auth_pb2.BeginWebAuthnRegistrationResponse:
        v = Violations()
        if len(request.nickname) > 64 or not request.nickname.isprintable():
            v.add("nickname", "at most 64 printable characters")
        v.raise_if_any()
        user_id = current_identity().subject
        account = await self.deps.accounts.get(user_id)
        if account is None:
            raise Unauthenticated("the account of this token no longer exists")
        s = self.deps.settings
        options = generate_registration_options(
            rp_id=s.webauthn_rp_id,
            rp_name=s.webauthn_rp_name,
            user_id=uuid.UUID(user_id).bytes,
            user_name=account.username,
            user_display_name=account.display_name or account.username,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.REQUIRED,
                user_verification=UserVerificationRequirement.PREFERRED,
            ),
            exclude_credentials=[_descriptor(c) for c in await self.deps.passkeys.of_user(user_id)],
        )
        ceremony_id = await self.deps.passkeys.open_ceremony(
            "register", options.challenge, user_id=user_id, nickname=request.nickname
        )
        return auth_pb2.BeginWebAuthnRegistrationResponse(
            ceremony_id=ceremony_id, options_json=options_to_json(options)
        )

    @authenticated
    async def FinishWebAuthnRegistration(
        self, request: auth_pb2.FinishWebAuthnRegistrationRequest, context: Context
    ) -> auth_pb2.FinishWebAuthnRegistrationResponse:
        credential = _check_finish(Violations(), request.ceremony_id, request.credential_json)
        ceremony = await self.deps.passkeys.take_ceremony(request.ceremony_id, "register")
        if ceremony is None or ceremony.user_id != current_identity().subject:
            raise Unauthenticated(EXPIRED)
        s = self.deps.settings
        try:
            verified = verify_registration_response(
                credential=credential,
                expected_challenge=ceremony.challenge,
                expected_rp_id=s.webauthn_rp_id,
                expected_origin=s.webauthn_origins,
            )
        except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
            raise _bad_credential(exc) from None
        transports = credential.get("response", {}).get("transports") or []
        try:
            stored = await self.deps.passkeys.add(
                ceremony.user_id,
                verified.credential_id,
                verified.credential_public_key,
                verified.sign_count,
                [str(t) for t in transports if isinstance(t, str)],
                ceremony.nickname,
            )
        except CredentialTaken:
            raise AlreadyExists("this passkey is registered already") from None
        return auth_pb2.FinishWebAuthnRegistrationResponse(
            credential=auth_pb2.WebAuthnCredential(
                id=credential.get("id", ""),
                nickname=stored.nickname,
                created_at=timestamp(stored.created_at),
            )
        )

    @public
    async def BeginWebAuthnLogin(
        self, request: auth_pb2.BeginWebAuthnLoginRequest, context: Context
    ) -> auth_pb2.BeginWebAuthnLoginResponse:
        v = Violations()
        check_token(v, "challenge_id", request.challenge_id, required=False)
        check_token(v, "username", request.username, required=False)
        v.raise_if_any()
        user_id: str | None = None
        if request.challenge_id:
            try:
                user_id = await self.deps.challenges.user_of(request.challenge_id)
            except ChallengeRefused as exc:
                raise Unauthenticated(str(exc)) from None
        elif request.username:
            account = await self.deps.accounts.find_for_login(request.username)
            # An unknown name gets a discoverable-credential ceremony: no account
            # enumeration through this call.
            user_id = account.id if account else None
        allowed = (
            [_descriptor(c) for c in await self.deps.passkeys.of_user(user_id)] if user_id else []
        )
        options = generate_authentication_options(
            rp_id=self.deps.settings.webauthn_rp_id,
            allow_credentials=allowed,
            user_verification=UserVerificationRequirement.PREFERRED,
        )
        ceremony_id = await self.deps.passkeys.open_ceremony(
            "login",
            options.challenge,
            user_id=user_id,
            mfa_challenge_id=request.challenge_id or None,
        )
        return auth_pb2.BeginWebAuthnLoginResponse(
            ceremony_id=ceremony_id, options_json=options_to_json(options)
        )

    @public
    async def FinishWebAuthnLogin(
        self, request: auth_pb2.FinishWebAuthnLoginRequest, context: Context
    ) -> auth_pb2.FinishWebAuthnLoginResponse:
        credential = _check_finish(Violations(), request.ceremony_id, request.credential_json)
        await self.deps.limits.spend(
            "webauthn",
            {f"source:{source_of(context.peer())}": self.deps.settings.mfa_attempts_per_source},
        )
        passkeys = self.deps.passkeys
        ceremony = await passkeys.take_ceremony(request.ceremony_id, "login")
        if ceremony is None:
            raise Unauthenticated(EXPIRED)
        try:
            parsed = parse_authentication_credential_json(credential)
            new_count = parse_authenticator_data(parsed.response.authenticator_data).sign_count
        except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
            raise _bad_credential(exc) from None
        stored = await passkeys.find(parsed.raw_id)
        if stored is None or (ceremony.user_id and stored.user_id != ceremony.user_id):
            raise Unauthenticated("this passkey is not registered for this login")
        if (new_count > 0 or stored.sign_count > 0) and new_count <= stored.sign_count:
            log.warning(
                "passkey counter did not move forward: possible cloned authenticator",
                user_id=stored.user_id,
                stored=stored.sign_count,
                presented=new_count,
            )
            raise Unauthenticated("passkey refused: its signature counter went backwards")
        s = self.deps.settings
        try:
            verified = verify_authentication_response(
                credential=parsed,
                expected_challenge=ceremony.challenge,
                expected_rp_id=s.webauthn_rp_id,
                expected_origin=s.webauthn_origins,
                credential_public_key=stored.public_key,
                credential_current_sign_count=stored.sign_count,
            )
        except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
            raise _bad_credential(exc) from None
        user_id = await self._complete(ceremony.mfa_challenge_id, stored, verified.new_sign_count)
        issued = await self.deps.sessions.open(user_id)
        return auth_pb2.FinishWebAuthnLoginResponse(tokens=self.tokens(issued))

    async def _complete(
        self, mfa_challenge_id: str | None, stored: StoredCredential, sign_count: int
    ) -> str:
        passkeys = self.deps.passkeys

        async def answer(conn: Connection, user_id: str) -> bool:
            return user_id == stored.user_id and await passkeys.record_use(
                conn, stored.id, sign_count
            )

        if mfa_challenge_id is not None:
            try:
                return await self.deps.challenges.complete(mfa_challenge_id, answer)
            except ChallengeRefused as exc:
                raise Unauthenticated(str(exc)) from None
        async with passkeys.pool.acquire() as conn, conn.transaction():
            if not await answer(conn, stored.user_id):
                raise Unauthenticated("passkey refused: its signature counter went backwards")
        return stored.user_id
