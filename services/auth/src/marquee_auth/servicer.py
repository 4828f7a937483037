"""The AuthService servicer, assembled from one mixin per group of RPCs."""

from __future__ import annotations

from marquee.auth.v1 import auth_pb2_grpc
from marquee_auth.deps import AuthDeps
from marquee_auth.rpc_accounts import AccountRpcs
from marquee_auth.rpc_oidc import OidcRpcs
from marquee_auth.rpc_policy import CheckRpc
from marquee_auth.rpc_totp import TotpRpcs
from marquee_auth.rpc_webauthn import WebAuthnRpcs
from marquee_authn import TokenVerifier


class AuthServicer(
    AccountRpcs,
    TotpRpcs,
    WebAuthnRpcs,
    CheckRpc,
    OidcRpcs,
    auth_pb2_grpc.AuthServiceServicer,
):
    def __init__(self, deps: AuthDeps, token_verifier: TokenVerifier) -> None:
        self.deps = deps
        self.policy = deps.policy
        self.token_verifier = token_verifier
