"""Which local user an OIDC identity is: its link, or what `on_first_login` says.

A link (provider, sub) is the only thing a later login trusts: the subject is
stable, an email is not. A first login creates a user, links to the user
holding the same verified email, or is refused, as configured.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

import asyncpg

from marquee_auth.accounts import Accounts, UsernameTaken
from marquee_auth.oidc_client import Identity
from marquee_auth.oidc_settings import FirstLogin
from marquee_auth.oidc_store import OidcStore

_NOT_USERNAME = re.compile(r"[^A-Za-z0-9._-]+")
_USERNAME_TRIES = 5


class FirstLoginRefused(Exception):
    """No local user for this identity, and the configuration creates none."""


@dataclass(frozen=True)
class Resolved:
    user_id: str
    created: bool


def _username_base(identity: Identity) -> str:
    for candidate in (
        identity.preferred_username,
        identity.email.partition("@")[0] if identity.email else None,
        identity.name,
    ):
        if candidate:
            cleaned = _NOT_USERNAME.sub("-", candidate).strip("._-")[:48]
            if len(cleaned) >= 3:
                return cleaned
    return "user"


def _email_of(provider: str, identity: Identity) -> str:
    if identity.email and identity.email_verified:
        return identity.email
    # An unverified address is not stored as the user's: whoever typed it there
    # does not own it. A reserved-domain placeholder keeps emails unique.
    digest = hashlib.sha256(f"{provider}\0{identity.subject}".encode()).hexdigest()[:20]
    return f"{digest}@{provider}.oidc.invalid"


class OidcUsers:
    def __init__(self, accounts: Accounts, store: OidcStore) -> None:
        self._accounts = accounts
        self._store = store

    async def resolve(self, provider: str, policy: FirstLogin, identity: Identity) -> Resolved:
        linked = await self._store.linked_user(provider, identity.subject)
        if linked is not None:
            return Resolved(linked, created=False)
        try:
            if policy == "create":
                return Resolved(await self._create(provider, identity), created=True)
            if policy == "link_by_email":
                return Resolved(await self._link_by_email(provider, identity), created=False)
        except asyncpg.UniqueViolationError:
            # A concurrent first login of the same subject linked first: use it.
            linked = await self._store.linked_user(provider, identity.subject)
            if linked is not None:
                return Resolved(linked, created=False)
            raise
        raise FirstLoginRefused(
            f"no local account is linked to this {provider} identity, "
            "and this provider does not create accounts"
        )

    async def _create(self, provider: str, identity: Identity) -> str:
        email = _email_of(provider, identity)
        base = _username_base(identity)
        async with self._accounts.pool.acquire() as conn, conn.transaction():
            for attempt in range(_USERNAME_TRIES):
                username = base if attempt == 0 else f"{base}-{secrets.token_hex(3)}"
                try:
                    async with conn.transaction():  # a savepoint: a taken name is retried
                        user_id = await self._accounts.insert_without_password(
                            conn, username, email, identity.name or ""
                        )
                except UsernameTaken as exc:
                    if exc.field == "email":
                        raise FirstLoginRefused(
                            "an account with this email exists already: log in to it "
                            "(this provider links only by subject)"
                        ) from None
                    continue
                await self._store.link(conn, provider, identity.subject, user_id)
                return user_id
        raise FirstLoginRefused("no free username could be made for this identity")

    async def _link_by_email(self, provider: str, identity: Identity) -> str:
        if not identity.email or not identity.email_verified:
            raise FirstLoginRefused(
                f"this {provider} identity has no verified email to link an account by"
            )
        account = await self._accounts.find_by_email(identity.email)
        if account is None:
            raise FirstLoginRefused(f"no local account has the email of this {provider} identity")
        async with self._accounts.pool.acquire() as conn, conn.transaction():
            if await self._store.has_link(conn, provider, account.id):
                raise FirstLoginRefused(
                    f"the account with this email is linked to another {provider} identity"
                )
            await self._store.link(conn, provider, identity.subject, account.id)
        return account.id
