"""Password hashing: bounded concurrency off the loop, a real check for unknown users."""

from __future__ import annotations

import asyncio
import contextlib
import threading

from auth_support import FAST_HASHING

from marquee_auth.passwords import Passwords
from marquee_auth.settings import AuthSettings


class Recording(Passwords):
    """Counts argon2 verifications and the most hashes seen running at once."""

    def __init__(self, settings: AuthSettings) -> None:
        super().__init__(settings)
        self.verifications = 0
        self.running = 0
        self.most_at_once = 0
        self._count_lock = threading.Lock()

    def _verify_sync(self, stored_hash: str, password: str) -> tuple[bool, bool]:
        with self._count_lock:
            self.verifications += 1
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            return super()._verify_sync(stored_hash, password)
        finally:
            with self._count_lock:
                self.running -= 1


async def test_an_unknown_user_costs_a_real_argon2_verification() -> None:
    passwords = Recording(AuthSettings(**FAST_HASHING))
    verdict = await passwords.verify(None, "whatever")
    assert not verdict.ok
    assert passwords.verifications == 1


async def test_hashes_run_off_the_loop_at_most_max_concurrent_at_once() -> None:
    settings = AuthSettings(max_concurrent_hashes=2, **FAST_HASHING)
    passwords = Recording(settings)
    stored = await passwords.hash("secret password")
    loop_ticks = 0

    async def ticker() -> None:
        nonlocal loop_ticks
        while True:
            loop_ticks += 1
            await asyncio.sleep(0)

    ticking = asyncio.create_task(ticker())
    try:
        verdicts = await asyncio.gather(
            *(passwords.verify(stored, "secret password") for _ in range(8))
        )
    finally:
        ticking.cancel()
    assert all(v.ok for v in verdicts)
    assert passwords.verifications == 8
    assert passwords.most_at_once == 2, "bounded by max_concurrent_hashes"
    assert loop_ticks > 8, "the event loop kept running while hashes ran"


async def test_a_hash_with_old_parameters_verifies_and_asks_for_a_rehash() -> None:
    old = Passwords(AuthSettings(argon2_time_cost=1, argon2_memory_kib=8 * 1024))
    new = Passwords(AuthSettings(argon2_time_cost=2, argon2_memory_kib=8 * 1024))
    stored = await old.hash("secret password")
    verdict = await new.verify(stored, "secret password")
    assert verdict.ok
    assert verdict.new_hash is not None
    assert ",t=2," in verdict.new_hash
    assert (await new.verify(verdict.new_hash, "secret password")).new_hash is None
    assert not (await new.verify(stored, "wrong")).ok
    assert not (await new.verify("not a hash", "secret password")).ok


async def test_a_cancelled_verification_still_queued_never_hashes() -> None:
    passwords = Recording(AuthSettings(max_concurrent_hashes=1, **FAST_HASHING))
    stored = await passwords.hash("secret password")
    try:
        running = asyncio.ensure_future(passwords.verify(stored, "secret password"))
        queued = asyncio.ensure_future(passwords.verify(stored, "secret password"))
        await asyncio.sleep(0)  # both submitted; the one thread takes the first
        queued.cancel()
        assert (await running).ok
        with contextlib.suppress(asyncio.CancelledError):
            await queued
        assert passwords.verifications == 1
    finally:
        await passwords.close()
