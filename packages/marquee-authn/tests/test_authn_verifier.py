"""TokenVerifier against keys made here: every way a token is refused, and JWKS refresh."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, OKPKey

from marquee_authn import ACCESS_TOKEN_ALGORITHM, InvalidToken, TokenVerifier, bearer_token
from marquee_authn.verifier import KeysUnavailable

ISSUER = "marquee-auth"


def new_key(kid: str) -> OKPKey:
    return OKPKey.generate_key(
        "Ed25519", parameters={"kid": kid, "alg": ACCESS_TOKEN_ALGORITHM}, private=True
    )


def sign(key: OKPKey, **overrides: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": "user-1",
        "sid": "session-1",
        "typ": "access",
        "iat": now,
        "exp": now + 60,
    }
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    header = {"alg": ACCESS_TOKEN_ALGORITHM, "kid": key.kid}
    return jwt.encode(header, claims, key, algorithms=[ACCESS_TOKEN_ALGORITHM])


class Source:
    """A JWKS source whose keys the test changes; counts fetches, can fail."""

    def __init__(self, *keys: OKPKey) -> None:
        self.keys = list(keys)
        self.fetches = 0
        self.fail = False

    async def fetch(self) -> KeySet:
        self.fetches += 1
        if self.fail:
            raise OSError("auth is down")
        return KeySet([OKPKey.import_key(k.as_dict(private=False)) for k in self.keys])


async def test_a_valid_token_gives_its_identity_and_is_remembered() -> None:
    key = new_key("k1")
    source = Source(key)
    verifier = TokenVerifier(source, issuer=ISSUER)
    token = sign(key)
    identity = await verifier.verify(token)
    assert (identity.subject, identity.session_id) == ("user-1", "session-1")
    assert await verifier.verify(token) is identity
    assert source.fetches == 1


async def test_only_a_token_verified_before_and_unexpired_is_known_without_a_coroutine() -> None:
    key = new_key("k1")
    now = [time.time()]
    verifier = TokenVerifier(Source(key), issuer=ISSUER, clock=lambda: now[0])
    token = sign(key)
    assert verifier.verified(token) is None  # never verified: verify() decides
    identity = await verifier.verify(token)
    assert verifier.verified(token) is identity
    assert verifier.verified(sign(key, sub="user-2")) is None
    now[0] += 3600  # long past its expiry, leeway included
    assert verifier.verified(token) is None
    with pytest.raises(InvalidToken, match="expired"):
        await verifier.verify(token)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"exp": int(time.time()) - 60}, "expired"),
        ({"exp": None}, "no expiry"),
        ({"iss": "someone-else"}, "issued by someone else"),
        ({"typ": "refresh"}, "not an access token"),
        ({"sub": None}, "no subject"),
        ({"sub": ""}, "no subject"),
        ({"sid": None}, "no subject"),
        ({"iat": int(time.time()) + 3600, "nbf": int(time.time()) + 3600}, "not valid yet"),
    ],
)
async def test_bad_claims_are_refused(overrides: dict[str, Any], reason: str) -> None:
    key = new_key("k1")
    verifier = TokenVerifier(Source(key), issuer=ISSUER)
    with pytest.raises(InvalidToken, match=reason):
        await verifier.verify(sign(key, **overrides))


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def test_forged_and_malformed_tokens_are_refused() -> None:
    key = new_key("k1")
    verifier = TokenVerifier(Source(key), issuer=ISSUER)
    good = sign(key)
    head, body, signature = good.split(".")
    other = sign(new_key("k1"))  # same kid, another private key
    cases = {
        "not a JWT": "abc",
        "unreadable header": "!!!." + body + "." + signature,
        "algorithm 'none' not accepted": _b64({"alg": "none", "kid": "k1"}) + "." + body + ".",
        "algorithm 'HS256' not accepted": _b64({"alg": "HS256", "kid": "k1"}) + f".{body}.x",
        "no key id": _b64({"alg": ACCESS_TOKEN_ALGORITHM}) + f".{body}.{signature}",
        "rejected": other,
        "rejected:": f"{head}.{_b64({'sub': 'admin'})}.{signature}",
        "not a JWT ": good + ".extra",
        "unreadable signature": f"{head}.{body}.{signature[:-2]}*!",
        "unreadable signature ": f"{head}.{body}.{signature}==",
        "bad signature": f"{head}.{body}.{signature[:-4]}AAAA",
        "unreadable header ": base64.urlsafe_b64encode(b"\xff\xfe").decode() + f".{body}.x",
        "critical header": _b64({"alg": ACCESS_TOKEN_ALGORITHM, "kid": "k1", "crit": ["x"]})
        + f".{body}.{signature}",
    }
    for reason, token in cases.items():
        with pytest.raises(InvalidToken, match=reason.strip()):
            await verifier.verify(token)


async def test_an_unknown_key_id_refreshes_the_jwks_at_most_once_per_interval() -> None:
    old, new = new_key("old"), new_key("new")
    source = Source(old)
    verifier = TokenVerifier(source, issuer=ISSUER, min_refresh_interval=3600)
    await verifier.verify(sign(old))
    assert source.fetches == 1
    with pytest.raises(InvalidToken, match="unknown signing key 'made-up'"):
        await verifier.verify(sign(new_key("made-up")))
    assert source.fetches == 1, "within the interval, made-up key ids cost no fetch"

    source.keys.append(new)
    eager = TokenVerifier(source, issuer=ISSUER, min_refresh_interval=0)
    await eager.verify(sign(old))
    assert (await eager.verify(sign(new))).subject == "user-1"


async def test_keys_that_cannot_be_fetched_are_unavailable_not_a_bad_token() -> None:
    key = new_key("k1")
    source = Source(key)
    source.fail = True
    verifier = TokenVerifier(source, issuer=ISSUER, min_refresh_interval=0)
    with pytest.raises(KeysUnavailable, match="auth is down"):
        await verifier.verify(sign(key))
    source.fail = False
    await verifier.verify(sign(key))
    # Once keys are held, a failed refresh keeps them.
    source.fail = True
    assert (await verifier.verify(sign(key, sub="user-2"))).subject == "user-2"
    with pytest.raises(InvalidToken, match="unknown signing key"):
        await verifier.verify(sign(new_key("k2")))


def test_bearer_token_reads_the_authorization_entry() -> None:
    assert bearer_token([("authorization", "Bearer abc")]) == "abc"
    assert bearer_token([("x", "y"), ("authorization", "bearer  abc ")]) == "abc"
    assert bearer_token([("authorization", "Basic abc")]) is None
    assert bearer_token([("authorization", "Bearer ")]) is None
    assert bearer_token([("authorization", b"Bearer abc")]) is None
    assert bearer_token(None) is None


async def test_a_key_id_given_a_new_key_is_verified_with_the_new_one() -> None:
    """The per-kid key objects are dropped with the JWKS they came from."""
    old, new = new_key("k1"), new_key("k1")
    source = Source(old)
    verifier = TokenVerifier(source, issuer=ISSUER, min_refresh_interval=0)
    await verifier.verify(sign(old))
    source.keys = [new, new_key("k2")]
    with pytest.raises(InvalidToken, match="bad signature"):
        await verifier.verify(sign(new))  # still holds k1's old key: no refresh for a known kid
    await verifier._refresh()  # what an unknown kid (k2) would trigger
    assert (await verifier.verify(sign(new))).subject == "user-1"
