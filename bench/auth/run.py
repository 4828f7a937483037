"""Auth, next to its peers (issue 11, item 13), in one run against one private PostgreSQL.

(a) Password logins/s through gRPC (AuthService.Login, argon2id at the service's
    default parameters) against raw argon2-cffi verifications/s with the same
    parameters in as many threads as the service lets hash at once; and the CPU
    one login costs (this process and PostgreSQL) against the CPU of one raw
    verification, which says where a shortfall of the first ratio goes. A third
    side, the login floor (login_floor.py), is a bare grpc.aio Login doing only
    what any login must (a read, the verify, a session insert, a signed token):
    raw argon2 against it is what this machine allows any login, and Marquee's
    Login against it is what Marquee adds.
(b) In-process Check/s at 1,000 rules with roles: PolicyEngine.check on queries
    it has not seen (cold: Casbin's matcher over the subject's rules, on the
    worker thread) and on a working set (warm: remembered decisions), against
    pycasbin's plain Enforcer.enforce over the same policy.
(c) gRPC Check against a no-op unary RPC on the same server (grpc.health.v1
    Check), at concurrency 1 and 64: the floor any unary call pays here; and
    against the same no-op carrying the caller's bearer header, which every
    authenticated call moves whatever it does.
(d) Access-token verification (marquee_authn.TokenVerifier) per call: a token
    seen for the first time, and one verified before, against a raw Ed25519
    signature check of the same signing input (cryptography).
(e) Policy propagation: a rule added through one instance's adapter, until a
    second instance's Check allows it (NOTIFY, reload).

Auth runs in this process (uvloop), so client and server share it; every figure
is paired per round with its peer, who goes first alternates, and rows show the
median over BENCH_ROUNDS rounds with the spread.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import random
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import casbin
import grpc
import psutil
import uvloop
from argon2 import PasswordHasher, Type
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from grpc_health.v1 import health_pb2, health_pb2_grpc
from joserfc import jwt
from joserfc.jwk import OKPKey
from pydantic import PostgresDsn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from auth.login_floor import LoginFloor

from benchlib import LoadLog, Row, from_runs, measure_calls, print_results
from marquee.auth.v1 import auth_pb2, auth_pb2_grpc
from marquee_auth.app import register
from marquee_auth.policy_engine import MODEL, PolicyEngine
from marquee_auth.schema import MIGRATIONS
from marquee_auth.settings import AuthSettings
from marquee_authn import ACCESS_TOKEN_ALGORITHM, StaticJwksSource, TokenVerifier
from marquee_localservers import PostgresServer
from marquee_migrations.startup import migrate_on_start
from marquee_testing.inprocess import serving

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "3"))
PASSWORD = "a benchmark password"
USERS = 16


def policy_rules(rng: random.Random) -> tuple[list[list[str]], list[list[str]]]:
    """1,000 allow/deny rules over 100 roles, roles of roles, 500 users with roles."""
    rules = []
    for role in range(100):
        for i in range(10):
            effect = "deny" if i == 9 else "allow"
            rules.append(
                [
                    f"role{role}",
                    f"media:/r{role}/o{i}/*",
                    rng.choice(["read", "write", "*"]),
                    effect,
                ]
            )
    grouping = [[f"role{r}", f"role{r // 10}"] for r in range(10, 100)]
    grouping += [[f"user{u}", f"role{rng.randrange(100)}"] for u in range(500)]
    return rules, grouping


def queries(rng: random.Random, count: int) -> list[tuple[str, str, str]]:
    return [
        (
            f"user{rng.randrange(500)}",
            f"media:/r{rng.randrange(100)}/o{rng.randrange(10)}/x{n}",
            rng.choice(["read", "write"]),
        )
        for n in range(count)
    ]


async def alternate(
    first: Callable[[], Awaitable[float]], second: Callable[[], Awaitable[float]], round_: int
) -> tuple[float, float]:
    if round_ % 2:
        b = await second()
        a = await first()
    else:
        a = await first()
        b = await second()
    return a, b


def postgres_cpu_seconds(data_dir: Path) -> float:
    """CPU used so far by the PostgreSQL server in `data_dir`: postmaster and backends."""
    try:
        postmaster = psutil.Process(int((data_dir / "postmaster.pid").read_text().split()[0]))
        total = 0.0
        for process in [postmaster, *postmaster.children()]:
            with contextlib.suppress(psutil.NoSuchProcess):
                times = process.cpu_times()
                total += times.user + times.system
        return total
    except (OSError, ValueError, psutil.Error):
        return float("nan")


async def bench_logins(
    address: str,
    dsn: str,
    settings: AuthSettings,
    rows: list[Row],
    load: LoadLog,
    postgres_cpu: Callable[[], float],
) -> None:
    hasher = PasswordHasher(
        time_cost=settings.argon2_time_cost,
        memory_cost=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
        type=Type.ID,
    )
    stored = hasher.hash(PASSWORD)
    threads = settings.max_concurrent_hashes
    floor = LoginFloor(dsn, hasher, threads)
    floor_address = await floor.start()
    try:
        async with (
            grpc.aio.insecure_channel(address) as channel,
            grpc.aio.insecure_channel(floor_address) as floor_channel,
        ):
            auth = auth_pb2_grpc.AuthServiceStub(channel)
            floor_auth = auth_pb2_grpc.AuthServiceStub(floor_channel)
            for u in range(USERS):
                await auth.Register(
                    auth_pb2.RegisterRequest(
                        username=f"bench{u}", email=f"bench{u}@example.com", password=PASSWORD
                    )
                )
            counter = iter(range(10**9))

            # CPU per login (this process: client, server, hashes; plus PostgreSQL) and
            # per raw hash: on a machine the hashes saturate, the logins ratio is about
            # the ratio of these two, so this row says where a shortfall goes.
            cpu_per_login: list[float] = []
            cpu_per_floor_login: list[float] = []
            cpu_per_hash: list[float] = []

            async def raw() -> float:
                loop = asyncio.get_running_loop()

                async def one_hash() -> None:
                    await loop.run_in_executor(pool, hasher.verify, stored, PASSWORD)

                with ThreadPoolExecutor(threads) as pool:
                    cpu = time.process_time()
                    result = await measure_calls(one_hash, concurrency=threads, seconds=SECONDS)
                    cpu = time.process_time() - cpu
                cpu_per_hash.append(cpu / result.calls * 1000)
                return result.per_second

            def logins(
                stub: auth_pb2_grpc.AuthServiceAsyncStub,
                cpu_per_call: list[float],
                p99s: list[float],
            ) -> Callable[[], Awaitable[float]]:
                async def one_login() -> None:
                    n = next(counter)
                    await stub.Login(
                        auth_pb2.LoginRequest(username=f"bench{n % USERS}", password=PASSWORD),
                        timeout=30,
                    )

                async def run() -> float:
                    cpu, db = time.process_time(), postgres_cpu()
                    result = await measure_calls(one_login, concurrency=8, seconds=SECONDS)
                    cpu, db = time.process_time() - cpu, postgres_cpu() - db
                    cpu_per_call.append((cpu + db) / result.calls * 1000)
                    p99s.append(result.p99_ms)
                    return result.per_second

                return run

            p99s: list[float] = []
            floor_p99s: list[float] = []
            sides = {
                "ours": logins(auth, cpu_per_login, p99s),
                "floor": logins(floor_auth, cpu_per_floor_login, floor_p99s),
                "raw": raw,
            }
            runs: dict[str, list[float]] = {name: [] for name in sides}
            for r in range(ROUNDS):
                load.sample()
                # Who goes first rotates, so no side always runs on a warmer machine.
                order = list(sides)
                order = order[r % 3 :] + order[: r % 3]
                for name in order:
                    runs[name].append(await sides[name]())
    finally:
        await floor.stop()
    recipe = (
        f"gRPC Login x8 concurrent; argon2-cffi verify in {threads} threads; "
        f"t={settings.argon2_time_cost} m={settings.argon2_memory_kib} KiB "
        f"p={settings.argon2_parallelism}"
    )
    rows.append(
        from_runs(
            "(a) password logins",
            runs["ours"],
            runs["raw"],
            "/s vs raw argon2id verify",
            recipe=recipe,
        )
    )
    rows.append(
        from_runs(
            "(a) floor logins",
            runs["floor"],
            runs["raw"],
            "/s vs raw argon2id verify",
            recipe="a bare grpc.aio Login (bench/auth/login_floor.py): one read, the verify, "
            "one session insert, an Ed25519 token; nothing else",
        )
    )
    rows.append(
        from_runs(
            "(a) password logins, floor",
            runs["ours"],
            runs["floor"],
            "/s vs the bare login floor",
        )
    )
    rows.append(from_runs("(a) login p99", p99s, floor_p99s, "ms vs the floor's p99", paired=True))
    rows.append(
        from_runs(
            "(a) CPU per login",
            cpu_per_login,
            cpu_per_hash,
            "ms vs CPU per raw argon2id verify",
            recipe="this process (gRPC client and server, hashes) plus PostgreSQL's "
            "processes, over the logins of the round",
        )
    )
    rows.append(
        from_runs(
            "(a) CPU per floor login",
            cpu_per_floor_login,
            cpu_per_hash,
            "ms vs CPU per raw argon2id verify",
        )
    )


async def bench_check_in_process(
    dsn: str, pool: asyncpg.Pool, rows: list[Row], load: LoadLog
) -> None:
    rng = random.Random(7)
    rules, grouping = policy_rules(rng)
    async with pool.acquire() as conn:
        await conn.execute("DELETE FROM auth_casbin_rules")
        await conn.executemany(
            "INSERT INTO auth_casbin_rules (ptype, v0, v1, v2, v3) VALUES ('p', $1, $2, $3, $4)",
            rules,
        )
        await conn.executemany(
            "INSERT INTO auth_casbin_rules (ptype, v0, v1) VALUES ('g', $1, $2)", grouping
        )
    engine = PolicyEngine(pool, dsn)
    await engine.start()
    plain = casbin.Enforcer(casbin.Enforcer.new_model(text=MODEL))
    plain.get_model().add_policies("p", "p", rules)
    plain.get_model().add_policies("g", "g", grouping)
    plain.build_role_links()
    try:
        cold_runs, warm_runs, plain_runs = [], [], []
        for r in range(ROUNDS):
            load.sample()
            fresh = queries(rng, 2000)
            working = queries(rng, 1000)
            for q in working:
                await engine.check(*q)

            async def cold(fresh: list[tuple[str, str, str]] = fresh) -> float:
                began = time.perf_counter()
                for q in fresh:
                    await engine.check(*q)
                return len(fresh) / (time.perf_counter() - began)

            async def warm(working: list[tuple[str, str, str]] = working) -> float:
                began = time.perf_counter()
                for _ in range(20):
                    for q in working:
                        await engine.check(*q)
                return 20 * len(working) / (time.perf_counter() - began)

            async def raw(fresh: list[tuple[str, str, str]] = fresh) -> float:
                sample = fresh[:200]
                began = time.perf_counter()
                for q in sample:
                    plain.enforce(*q)
                return len(sample) / (time.perf_counter() - began)

            c, p = await alternate(cold, raw, r)
            cold_runs.append(c)
            plain_runs.append(p)
            warm_runs.append(await warm())
        rows.append(
            from_runs(
                "(b) Check in process, cold",
                cold_runs,
                plain_runs,
                "/s vs plain enforce",
                recipe="distinct queries, 1,000 rules, 100 roles in 2 levels, 500 users",
            )
        )
        rows.append(
            from_runs(
                "(b) Check in process, warm",
                warm_runs,
                plain_runs,
                "/s vs plain enforce",
                recipe="a working set of 1,000 queries, decisions remembered",
            )
        )
    finally:
        await engine.close()


async def bench_check_grpc(address: str, token: str, rows: list[Row], load: LoadLog) -> None:
    rng = random.Random(11)
    working = queries(rng, 200)
    metadata = (("authorization", f"Bearer {token}"),)
    async with grpc.aio.insecure_channel(address) as channel:
        auth = auth_pb2_grpc.AuthServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        counter = iter(range(10**9))

        async def check() -> None:
            sub, obj, act = working[next(counter) % len(working)]
            await auth.Check(
                auth_pb2.CheckRequest(subject=sub, object=obj, action=act),
                metadata=metadata,
                timeout=10,
            )

        async def noop() -> None:
            await health.Check(health_pb2.HealthCheckRequest(), timeout=10)

        async def noop_with_header() -> None:
            # The same no-op carrying the header every authenticated call carries: what
            # moving the credential costs (client and server), apart from Check's work.
            await health.Check(health_pb2.HealthCheckRequest(), metadata=metadata, timeout=10)

        for q in working:
            await auth.Check(
                auth_pb2.CheckRequest(subject=q[0], object=q[1], action=q[2]), metadata=metadata
            )
        calls = {"check": check, "noop": noop, "noop_with_header": noop_with_header}
        for concurrency in (1, 64):
            runs: dict[str, list[float]] = {name: [] for name in calls}
            for r in range(ROUNDS):
                load.sample()
                # The three back to back; which goes first rotates with the round.
                names = list(calls)
                for name in names[r % 3 :] + names[: r % 3]:
                    result = await measure_calls(
                        calls[name], concurrency=concurrency, seconds=SECONDS
                    )
                    runs[name].append(result.per_second)
            rows.append(
                from_runs(
                    f"(c) gRPC Check @{concurrency}",
                    runs["check"],
                    runs["noop"],
                    "calls/s vs no-op health Check",
                )
            )
            rows.append(
                from_runs(
                    f"(c) gRPC Check @{concurrency}, floor with the header",
                    runs["check"],
                    runs["noop_with_header"],
                    "calls/s vs the no-op carrying the same bearer header",
                )
            )


async def bench_verification(rows: list[Row], load: LoadLog) -> None:
    key = OKPKey.generate_key(
        "Ed25519", parameters={"kid": "k", "alg": ACCESS_TOKEN_ALGORITHM}, private=True
    )
    verifier = TokenVerifier(
        StaticJwksSource({"keys": [key.as_dict(private=False)]}),
        issuer="bench",
        cache_size=1_000_000,
    )
    now = int(time.time())

    def token(n: int) -> str:
        claims = {
            "iss": "bench",
            "sub": f"u{n}",
            "sid": "s",
            "typ": "access",
            "iat": now,
            "exp": now + 3600,
        }
        return jwt.encode(
            {"alg": ACCESS_TOKEN_ALGORITHM, "kid": "k"},
            claims,
            key,
            algorithms=[ACCESS_TOKEN_ALGORITHM],
        )

    public = Ed25519PublicKey.from_public_bytes(key.public_key.public_bytes_raw())
    cold_runs, warm_runs, raw_runs = [], [], []
    for r in range(ROUNDS):
        load.sample()
        tokens = [token(r * 10_000 + n) for n in range(2000)]
        pieces = [t.rsplit(".", 1) for t in tokens]

        signed = [
            (p[0].encode(), base64.urlsafe_b64decode(p[1] + "=" * (-len(p[1]) % 4))) for p in pieces
        ]
        began = time.perf_counter()
        for t in tokens:
            await verifier.verify(t)
        cold_runs.append((time.perf_counter() - began) / len(tokens) * 1e6)
        began = time.perf_counter()
        for _ in range(5):
            for t in tokens:
                await verifier.verify(t)
        warm_runs.append((time.perf_counter() - began) / (5 * len(tokens)) * 1e6)
        began = time.perf_counter()
        for message, signature in signed:
            public.verify(signature, message)
        raw_runs.append((time.perf_counter() - began) / len(signed) * 1e6)
    rows.append(
        from_runs(
            "(d) token verify, first time", cold_runs, raw_runs, "µs/call vs raw Ed25519 verify"
        )
    )
    rows.append(
        from_runs(
            "(d) token verify, seen before", warm_runs, raw_runs, "µs/call vs raw Ed25519 verify"
        )
    )


async def bench_propagation(dsn: str, pool: asyncpg.Pool, rows: list[Row], load: LoadLog) -> None:
    first, second = PolicyEngine(pool, dsn), PolicyEngine(pool, dsn)
    await first.start()
    await second.start()
    delays = []
    try:
        for n in range(max(ROUNDS, 5) * 4):
            load.sample()
            subject = f"propagation{n}"
            assert not await second.check(subject, "media:/p", "read")
            began = time.perf_counter()
            await first.adapter.add_policy("p", "p", [subject, "media:/*", "read", "allow"])
            async with asyncio.timeout(10):
                while not await second.check(subject, "media:/p", "read"):
                    await asyncio.sleep(0.0005)
            delays.append((time.perf_counter() - began) * 1000)
    finally:
        await first.close()
        await second.close()
    rows.append(
        from_runs(
            "(e) policy propagation",
            delays,
            [0.0] * len(delays),
            "ms to the other instance (no peer)",
            paired=False,
        )
    )


async def main() -> None:
    load = LoadLog()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-auth-") as tmp:
        postgres = PostgresServer(Path(tmp) / "pg", database="bench")
        postgres.start()
        try:
            dsn = postgres.url
            await migrate_on_start(dsn, MIGRATIONS, apply=True)
            settings = AuthSettings(
                grpc_port=0,
                metrics_port=-1,
                database_url=PostgresDsn(dsn),
                coordinator_endpoints=[],
                login_attempts_per_account=10**6,
                login_attempts_per_source=10**6,
                log_level="WARNING",
                admin_usernames=["bench0"],
            )
            async with serving("auth", settings, register) as service:
                await bench_logins(
                    service.address,
                    dsn,
                    settings,
                    rows,
                    load,
                    lambda: postgres_cpu_seconds(postgres.data_dir),
                )
                auth = auth_pb2_grpc.AuthServiceStub(service.channel)
                token = (
                    await auth.Login(auth_pb2.LoginRequest(username="bench0", password=PASSWORD))
                ).tokens.access_token
                pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
                assert pool is not None
                try:
                    await bench_check_in_process(dsn, pool, rows, load)
                    await bench_check_grpc(service.address, token, rows, load)
                    await bench_propagation(dsn, pool, rows, load)
                finally:
                    await pool.close()
            await bench_verification(rows, load)
        finally:
            postgres.stop()
    notes: dict[str, Any] = {"rounds": ROUNDS, "seconds": SECONDS, "cores": os.cpu_count()}
    print_results("auth", "peer", rows, notes, load=load)


if __name__ == "__main__":
    uvloop.run(main())
