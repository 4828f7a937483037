"""argon2id password hashing off the event loop, with bounded concurrency.

Each hash holds `memory_cost` KiB for its duration, so hashes run on a pool of
`max_concurrent_hashes` threads of their own: a login flood queues instead of
exhausting memory or the default executor. An unknown user is checked against a
dummy hash with the same parameters, so the answer takes as long as a wrong
password.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from marquee_auth.settings import AuthSettings


@dataclass(frozen=True)
class Verdict:
    ok: bool
    # The stored hash uses other parameters than the current ones: store a new one.
    new_hash: str | None = None


class Passwords:
    def __init__(self, settings: AuthSettings) -> None:
        self._hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
            type=Type.ID,
        )
        # Its own threads rather than a semaphore in front of asyncio.to_thread: a
        # thread that finishes a hash takes the next queued one at once, where a
        # semaphore hands its slot over only when the event loop gets to it, and
        # under a login flood the loop shares the cores with the hashes
        # (`docs/benchmarks.md`, auth). A cancelled call still queued never hashes.
        self._threads = ThreadPoolExecutor(
            max_workers=settings.max_concurrent_hashes, thread_name_prefix="argon2"
        )
        self._dummy_hash: str | None = None

    async def close(self) -> None:
        # After the drain nothing waits on a hash; one still running ends on its own.
        self._threads.shutdown(wait=False, cancel_futures=True)

    async def hash(self, password: str) -> str:
        return await asyncio.get_running_loop().run_in_executor(
            self._threads, self._hasher.hash, password
        )

    async def verify(self, stored_hash: str | None, password: str) -> Verdict:
        """Check `password`; with `stored_hash` None (no such user) spend the same time, fail."""
        if stored_hash is None:
            if self._dummy_hash is None:
                self._dummy_hash = await self.hash("marquee: no such user")
            await self._check(self._dummy_hash, password)
            return Verdict(ok=False)
        ok, stale = await self._check(stored_hash, password)
        if not ok:
            return Verdict(ok=False)
        if stale:
            return Verdict(ok=True, new_hash=await self.hash(password))
        return Verdict(ok=True)

    async def _check(self, stored_hash: str, password: str) -> tuple[bool, bool]:
        """Whether `password` matches, and whether the hash is at other parameters than ours."""
        return await asyncio.get_running_loop().run_in_executor(
            self._threads, self._verify_sync, stored_hash, password
        )

    def _verify_sync(self, stored_hash: str, password: str) -> tuple[bool, bool]:
        # The rehash check parses the stored hash: on the hashing thread, not the event loop.
        try:
            ok = self._hasher.verify(stored_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False, False
        return ok, self._hasher.check_needs_rehash(stored_hash)
