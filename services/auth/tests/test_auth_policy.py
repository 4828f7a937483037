"""RBAC through pycasbin: wildcards that match, deny over allow, roles of roles, two instances."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import asyncpg
import casbin
import grpc
import pytest
from auth_support import auth_service, bearer, login, register_user, stub, violations

from marquee.auth.v1 import auth_pb2, policy_pb2, policy_pb2_grpc
from marquee_auth import policy_engine
from marquee_auth.casbin_adapter import AsyncpgAdapter
from marquee_auth.policy_engine import MODEL, PolicyEngine, _Snapshot
from marquee_auth.schema import MIGRATIONS
from marquee_migrations.startup import migrate_on_start
from marquee_testing.inprocess import RunningService

if TYPE_CHECKING:
    from marquee.auth.v1.auth_pb2_grpc import AuthServiceAsyncStub

ALLOW, DENY = policy_pb2.POLICY_EFFECT_ALLOW, policy_pb2.POLICY_EFFECT_DENY
Metadata = tuple[tuple[str, str], ...]


class Admin:
    """The configured administrator's session on one instance."""

    def __init__(self, service: RunningService, access: Metadata) -> None:
        self.auth: AuthServiceAsyncStub = stub(service)
        self.policy = policy_pb2_grpc.PolicyServiceStub(service.channel)
        self.access = access

    async def allow(
        self, subject: str, obj: str, action: str, effect: policy_pb2.PolicyEffect.ValueType = ALLOW
    ) -> bool:
        policy = policy_pb2.Policy(subject=subject, object=obj, action=action, effect=effect)
        added = await self.policy.AddPolicy(
            policy_pb2.AddPolicyRequest(policy=policy), metadata=self.access, timeout=10
        )
        return bool(added.added)

    async def assign(self, user: str, role: str) -> None:
        await self.policy.AssignRole(
            policy_pb2.AssignRoleRequest(user_id=user, role=role), metadata=self.access, timeout=10
        )

    async def check(self, subject: str, obj: str, action: str) -> bool:
        answer = await self.auth.Check(
            auth_pb2.CheckRequest(subject=subject, object=obj, action=action),
            metadata=self.access,
            timeout=10,
        )
        return bool(answer.allowed)


@pytest.fixture
async def service(scratch_database_url: str) -> AsyncIterator[RunningService]:
    async with auth_service(scratch_database_url, admin_usernames=["root"]) as running:
        yield running


async def admin_of(service: RunningService) -> Admin:
    auth = stub(service)
    try:
        await register_user(auth, "root")
    except grpc.aio.AioRpcError as error:
        if error.code() != grpc.StatusCode.ALREADY_EXISTS:
            raise
    tokens = await login(auth, "root")
    return Admin(service, bearer(tokens.access_token))


async def test_the_seeded_admin_rule_grants_what_it_says(service: RunningService) -> None:
    admin = await admin_of(service)
    root_id = (await login(admin.auth, "root")).user_id
    assert await admin.check(root_id, "media:/videos/42", "delete")
    assert await admin.check("admin", "anything", "at-all")
    assert not await admin.check("someone-else", "media:/videos/42", "read")


async def test_wildcards_roles_of_roles_and_deny_over_allow(service: RunningService) -> None:
    admin = await admin_of(service)
    assert await admin.allow("editor", "media:/videos/*", "write")
    assert not await admin.allow("editor", "media:/videos/*", "write"), "identical rule exists"
    assert await admin.allow("viewer", "media:/*", "read")
    assert await admin.allow("mallory", "media:/videos/secret", "*", DENY)
    await admin.assign("senior", "editor")  # a role holding a role
    await admin.assign("editor", "viewer")
    await admin.assign("mallory", "senior")
    await admin.assign("bob", "senior")

    assert await admin.check("bob", "media:/videos/42", "write")
    assert await admin.check("bob", "media:/images/1", "read"), "through editor -> viewer"
    assert not await admin.check("bob", "media:/images/1", "write")
    assert await admin.check("bob", "media:/videos/secret", "write")
    assert not await admin.check("mallory", "media:/videos/secret", "write"), "deny wins"
    assert await admin.check("mallory", "media:/videos/other", "write")

    roles = await admin.policy.ListUserRoles(
        policy_pb2.ListUserRolesRequest(user_id="bob", include_implicit=True),
        metadata=admin.access,
    )
    assert list(roles.roles) == ["editor", "senior", "viewer"]
    listed = await admin.policy.ListPolicies(
        policy_pb2.ListPoliciesRequest(subject="editor"), metadata=admin.access
    )
    assert [(p.object, p.action, p.effect) for p in listed.policies] == [
        ("media:/videos/*", "write", ALLOW)
    ]

    removed = await admin.policy.RemovePolicy(
        policy_pb2.RemovePolicyRequest(
            policy=policy_pb2.Policy(
                subject="mallory", object="media:/videos/secret", action="*", effect=DENY
            )
        ),
        metadata=admin.access,
    )
    assert removed.removed
    assert await admin.check("mallory", "media:/videos/secret", "write")
    unassigned = await admin.policy.UnassignRole(
        policy_pb2.UnassignRoleRequest(user_id="bob", role="senior"), metadata=admin.access
    )
    assert unassigned.unassigned
    assert not await admin.check("bob", "media:/videos/42", "write")


async def test_administering_needs_the_admin_permission(service: RunningService) -> None:
    auth = stub(service)
    user = await register_user(auth)
    tokens = await login(auth, user.username)
    policy = policy_pb2_grpc.PolicyServiceStub(service.channel)
    request = policy_pb2.AddPolicyRequest(
        policy=policy_pb2.Policy(subject=user.id, object="*", action="*", effect=ALLOW)
    )
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await policy.AddPolicy(request, metadata=bearer(tokens.access_token), timeout=10)
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as anonymous:
        await policy.AddPolicy(request, timeout=10)
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # A user may list their own roles, not someone else's.
    own = await policy.ListUserRoles(
        policy_pb2.ListUserRolesRequest(user_id=user.id), metadata=bearer(tokens.access_token)
    )
    assert list(own.roles) == []
    with pytest.raises(grpc.aio.AioRpcError) as others:
        await policy.ListUserRoles(
            policy_pb2.ListUserRolesRequest(user_id="root"), metadata=bearer(tokens.access_token)
        )
    assert others.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as no_token:
        await auth.Check(auth_pb2.CheckRequest(subject="a", object="b", action="c"), timeout=10)
    assert no_token.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_bad_policy_input_is_invalid_argument(service: RunningService) -> None:
    admin = await admin_of(service)
    cases = [
        (
            "AddPolicy",
            policy_pb2.AddPolicyRequest(),
            ["policy.subject", "policy.object", "policy.action", "policy.effect"],
        ),
        (
            "RemovePolicy",
            policy_pb2.RemovePolicyRequest(
                policy=policy_pb2.Policy(subject="a\x00", object="o", action="a", effect=ALLOW)
            ),
            ["policy.subject"],
        ),
        ("AssignRole", policy_pb2.AssignRoleRequest(user_id="u"), ["role"]),
        ("ListUserRoles", policy_pb2.ListUserRolesRequest(), ["user_id"]),
        ("ListPolicies", policy_pb2.ListPoliciesRequest(effect=7), ["effect"]),  # type: ignore[arg-type]
    ]
    for method, request, fields in cases:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await getattr(admin.policy, method)(request, metadata=admin.access, timeout=10)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, method
        assert violations(raised.value) == fields, method
    checks = [
        (auth_pb2.CheckRequest(subject="s"), ["object", "action"]),
        (auth_pb2.CheckRequest(subject="s\x00", object="o", action="a"), ["subject"]),
        (
            auth_pb2.CheckRequest(subject="s", object="o\u200b", action="x" * 257),
            ["object", "action"],
        ),
    ]
    for request, fields in checks:
        with pytest.raises(grpc.aio.AioRpcError) as check:
            await admin.auth.Check(request, metadata=admin.access)
        assert check.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert violations(check.value) == fields, request
    # Not printable, but no control or format character: allowed (the slow path).
    await admin.auth.Check(
        auth_pb2.CheckRequest(subject="s\u00a0t", object="o", action="a"), metadata=admin.access
    )


async def test_a_change_on_one_instance_reaches_another(scratch_database_url: str) -> None:
    async with (
        auth_service(scratch_database_url, admin_usernames=["root"]) as first,
        auth_service(scratch_database_url, admin_usernames=["root"]) as second,
    ):
        on_first, on_second = await admin_of(first), await admin_of(second)
        assert not await on_second.check("carol", "media:/x", "read")
        assert await on_first.allow("carol", "media:/*", "read")
        changed = time.monotonic()
        async with asyncio.timeout(10):
            while not await on_second.check("carol", "media:/x", "read"):
                await asyncio.sleep(0.01)
        print(f"policy change seen by the other instance after {time.monotonic() - changed:.3f} s")


@pytest.fixture
async def adapter(scratch_database_url: str) -> AsyncIterator[AsyncpgAdapter]:
    await migrate_on_start(scratch_database_url, MIGRATIONS, apply=True)
    pool = await asyncpg.create_pool(scratch_database_url, min_size=1, max_size=4)
    assert pool is not None
    try:
        yield AsyncpgAdapter(pool)
    finally:
        await pool.close()


async def test_removing_a_rule_matches_empty_fields_exactly(adapter: AsyncpgAdapter) -> None:
    await adapter.add_policy("p", "p", ["alice", "data", "read"])
    await adapter.add_policy("p", "p", ["alice", "data", "read", "allow"])
    assert await adapter.remove_policy("p", "p", ["alice", "data", "read"])
    assert ("p", ["alice", "data", "read", "allow"]) in await adapter.rules()
    assert not await adapter.remove_policy("p", "p", ["alice", "data", "read"])


async def test_filtered_removal_treats_an_empty_filter_value_as_any(
    adapter: AsyncpgAdapter,
) -> None:
    for obj in ("a", "b"):
        await adapter.add_policy("p", "p", ["alice", obj, "read", "allow"])
    await adapter.add_policy("p", "p", ["bob", "a", "read", "allow"])
    assert await adapter.remove_filtered_policy("p", "p", 0, "alice", "", "read")
    remaining = [values for ptype, values in await adapter.rules() if ptype == "p"]
    assert ["bob", "a", "read", "allow"] in remaining
    assert not any(values[0] == "alice" for values in remaining)


async def test_saving_the_whole_policy_never_shows_a_moment_without_rules(
    adapter: AsyncpgAdapter,
) -> None:
    model = casbin.Enforcer.new_model(text=MODEL)
    for ptype, values in await adapter.rules():  # the seeded admin rule and its link
        model.add_policy(ptype, ptype, values)
    smallest = 10**6
    stop = asyncio.Event()

    async def reader() -> None:
        nonlocal smallest
        while not stop.is_set():
            smallest = min(smallest, len(await adapter.rules()))

    reading = asyncio.create_task(reader())
    for _ in range(20):
        await adapter.save_policy(model)
    stop.set()
    await reading
    assert smallest >= 1, "a reader saw the table empty mid-save"


async def test_long_decisions_run_on_the_worker_thread_short_ones_on_the_loop(
    adapter: AsyncpgAdapter, scratch_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[str] = []
    original = _Snapshot.decide_fast

    def recording(self: _Snapshot, subject: str, obj: str, action: str) -> bool:
        threads.append(threading.current_thread().name)
        return original(self, subject, obj, action)

    monkeypatch.setattr(_Snapshot, "decide_fast", recording)
    engine = PolicyEngine(adapter._pool, scratch_database_url)
    await engine.start()
    try:
        assert engine.decided("admin", "x", "y") is None  # not decided yet: check() it
        assert await engine.check("admin", "x", "y")  # one rule: on the loop
        assert engine.decided("admin", "x", "y") is True  # remembered, without a coroutine
        assert await engine.check("admin", "x", "y")
        assert await engine.check("nobody", "x", "y") is False
        assert engine.decided("nobody", "x", "y") is False  # a refusal is remembered too
        monkeypatch.setattr(policy_engine, "FAST_DECISION_RULES", 0)
        assert await engine.check("admin", "x", "z")  # "too many" rules: the worker
    finally:
        await engine.close()
    assert threads[0] == threading.current_thread().name
    assert len(threads) == 3
    assert threads[2].startswith("casbin")


async def test_closing_while_a_change_notice_reloads_ends_the_reload_cleanly(
    adapter: AsyncpgAdapter, scratch_database_url: str
) -> None:
    engine = PolicyEngine(adapter._pool, scratch_database_url)
    await engine.start()
    engine._on_notify()  # a change notice arrives as the service stops
    [reload] = engine._pending_reloads
    await engine.close()
    assert reload.done()
    assert reload.cancelled() or reload.exception() is None
    engine._on_notify()  # and one after close() starts nothing
    assert not engine._pending_reloads


def test_the_fast_decision_is_casbins_on_random_policies() -> None:
    """decide_fast against plain pycasbin enforce: allow and deny, roles in three
    levels, keyMatch patterns and "*" actions, on thousands of random queries."""
    rng = random.Random(20261205)
    users = [f"u{i}" for i in range(40)]
    roles = [f"r{i}" for i in range(15)]
    objects = ["/media/1", "/media/2/x", "/admin", "/media", "/mediax", "x", ""]
    patterns = ["/media/*", "/media/2/*", "/admin", "*", "/m*", "/media", "x", "/media/1"]
    actions = ["read", "write", "delete"]
    rules: list[tuple[str, list[str]]] = []
    for _ in range(300):
        subject = rng.choice(users + roles + roles)
        effect = "deny" if rng.random() < 0.2 else "allow"
        action = rng.choice([*actions, "*"])
        rules.append(("p", [subject, rng.choice(patterns), action, effect]))
    for user in users:
        for role in rng.sample(roles[:10], rng.randint(0, 3)):
            rules.append(("g", [user, role]))
    for i in range(10):  # r0-r9 inherit r10-r14, r10-r12 inherit r13-r14
        rules.append(("g", [f"r{i}", f"r{10 + i % 5}"]))
    rules += [("g", ["r10", "r13"]), ("g", ["r11", "r14"]), ("g", ["r12", "r13"])]

    snapshot = _Snapshot(rules)
    plain = casbin.Enforcer(casbin.Enforcer.new_model(text=MODEL))
    plain.get_model().add_policies("p", "p", [v for t, v in rules if t == "p"])
    plain.get_model().add_policies("g", "g", [v for t, v in rules if t == "g"])
    plain.build_role_links()
    answers = set()
    for _ in range(5000):
        query = (rng.choice(users + roles), rng.choice(objects), rng.choice(actions))
        expected = bool(plain.enforce(*query))
        assert snapshot.decide_fast(*query) == expected, query
        answers.add(expected)
    assert answers == {True, False}
