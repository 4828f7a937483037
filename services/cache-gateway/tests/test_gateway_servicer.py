"""Every CacheService RPC in process against the session Redis, bad inputs included."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import grpc
import pytest
import redis.asyncio as aioredis
from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from marquee.cache.v1 import cache_pb2 as pb
from marquee_cache_gateway.health import SERVICE_NAME
from marquee_testing.inprocess import RunningService

if TYPE_CHECKING:  # the async stub class exists only in the type stubs
    from marquee.cache.v1.cache_pb2_grpc import CacheServiceAsyncStub as Stub


async def read(stream: Any) -> pb.WatchInvalidationsResponse:
    """The next message of a WatchInvalidations call (which must not have ended)."""
    message = await stream.read()
    assert isinstance(message, pb.WatchInvalidationsResponse), message
    return message


def ttl(seconds: float) -> Duration:
    d = Duration()
    d.FromNanoseconds(int(seconds * 1e9))
    return d


async def test_get_miss_is_found_false_then_layers(stub: Stub, ns: str) -> None:
    key = ns + "k"
    miss = await stub.Get(pb.GetRequest(key=key))
    assert not miss.found
    assert miss.value == b""
    assert (await stub.Set(pb.SetRequest(key=key, value=b"v1"))).stored
    first = await stub.Get(pb.GetRequest(key=key))
    assert (first.found, first.value, first.layer) == (True, b"v1", pb.CACHE_LAYER_L2)
    assert first.HasField("ttl"), "read under tracking: a remote L1 may keep it"
    second = await stub.Get(pb.GetRequest(key=key))
    assert (second.value, second.layer) == (b"v1", pb.CACHE_LAYER_L1)
    assert second.instance_id == first.instance_id != ""


async def test_own_write_is_read_back_at_once(stub: Stub, ns: str) -> None:
    key = ns + "k"
    for i in range(20):
        await stub.Set(pb.SetRequest(key=key, value=f"v{i}".encode()))
        assert (await stub.Get(pb.GetRequest(key=key))).value == f"v{i}".encode()
        assert (await stub.Get(pb.GetRequest(key=key))).layer == pb.CACHE_LAYER_L1


async def test_get_many_keeps_order_and_duplicates(
    stub: Stub, writer: aioredis.Redis, ns: str
) -> None:
    await writer.mset({ns + "a": b"A", ns + "c": b"C"})
    keys = [ns + "a", ns + "b", ns + "c", ns + "a"]
    reply = await stub.GetMany(pb.GetManyRequest(keys=keys))
    assert [(e.key, e.found, e.value) for e in reply.entries] == [
        (ns + "a", True, b"A"),
        (ns + "b", False, b""),
        (ns + "c", True, b"C"),
        (ns + "a", True, b"A"),
    ]
    again = await stub.GetMany(pb.GetManyRequest(keys=keys))
    assert {e.layer for e in again.entries} == {pb.CACHE_LAYER_L1}
    assert (await stub.GetMany(pb.GetManyRequest())).entries == []


async def test_set_with_sub_second_ttl_expires(stub: Stub, writer: aioredis.Redis, ns: str) -> None:
    key = ns + "k"
    await stub.Set(pb.SetRequest(key=key, value=b"v", ttl=ttl(0.25)))
    assert 0 < await writer.pttl(key) <= 250, "PX, not EX"
    assert (await stub.Get(pb.GetRequest(key=key))).found
    assert (await stub.Get(pb.GetRequest(key=key))).layer == pb.CACHE_LAYER_L1
    await asyncio.sleep(0.3)
    assert not (await stub.Get(pb.GetRequest(key=key))).found, "L1 honours the Redis TTL"
    await stub.Set(pb.SetRequest(key=key, value=b"v", ttl=ttl(0)))
    assert await writer.pttl(key) == -1, "zero TTL: no expiry"


async def test_set_conditions(stub: Stub, ns: str) -> None:
    key = ns + "k"
    if_present = pb.SET_CONDITION_IF_PRESENT
    if_absent = pb.SET_CONDITION_IF_ABSENT
    assert not (await stub.Set(pb.SetRequest(key=key, value=b"x", condition=if_present))).stored
    assert not (await stub.Get(pb.GetRequest(key=key))).found
    assert (await stub.Set(pb.SetRequest(key=key, value=b"1", condition=if_absent))).stored
    assert (await stub.Get(pb.GetRequest(key=key))).value == b"1", "its own cached miss is gone"
    assert not (await stub.Set(pb.SetRequest(key=key, value=b"2", condition=if_absent))).stored
    assert (await stub.Set(pb.SetRequest(key=key, value=b"3", condition=if_present))).stored
    assert (await stub.Get(pb.GetRequest(key=key))).value == b"3"


async def test_delete_and_delete_by_prefix(stub: Stub, writer: aioredis.Redis, ns: str) -> None:
    await writer.mset({f"{ns}p:{i}": b"v" for i in range(1200)} | {ns + "other": b"o"})
    await stub.GetMany(pb.GetManyRequest(keys=[f"{ns}p:{i}" for i in range(10)]))  # into L1
    reply = await stub.Delete(pb.DeleteRequest(keys=[ns + "p:0", ns + "p:0", ns + "absent"]))
    assert reply.deleted_count == 1
    assert (
        await stub.DeleteByPrefix(pb.DeleteByPrefixRequest(prefix=ns + "p:"))
    ).deleted_count == 1199
    left = await stub.GetMany(pb.GetManyRequest(keys=[f"{ns}p:{i}" for i in range(10)]))
    assert not any(e.found for e in left.entries)
    assert (await stub.Get(pb.GetRequest(key=ns + "other"))).found
    # Glob characters in a prefix match literally.
    await writer.mset({ns + "g*1": b"x", ns + "gz": b"y"})
    assert (
        await stub.DeleteByPrefix(pb.DeleteByPrefixRequest(prefix=ns + "g*"))
    ).deleted_count == 1
    assert await writer.exists(ns + "gz") == 1


async def test_rate_limit_allows_the_burst_then_refuses(stub: Stub, ns: str) -> None:
    request = pb.RateLimitRequest(key=ns + "login", limit=3, window=ttl(60))
    replies = [await stub.RateLimit(request) for _ in range(4)]
    assert [r.allowed for r in replies] == [True, True, True, False]
    assert [r.remaining for r in replies[:3]] == [2, 1, 0]
    refused = replies[3]
    assert refused.limit == 3
    assert not refused.degraded
    assert 0 < refused.retry_after.ToTimedelta().total_seconds() <= 20
    costly = await stub.RateLimit(
        pb.RateLimitRequest(key=ns + "c", limit=5, window=ttl(60), cost=5)
    )
    assert costly.allowed
    assert costly.remaining == 0


async def test_watch_starts_with_a_flush_then_sees_a_remote_write(
    stub: Stub, writer: aioredis.Redis, ns: str
) -> None:
    key = ns + "watched"
    await writer.set(key, b"old")
    stream = stub.WatchInvalidations(pb.WatchInvalidationsRequest(prefixes=[ns]))
    first = await read(stream)
    assert first.flushed.reason == pb.FLUSH_REASON_STREAM_STARTED
    assert not first.flushed.suspend_l1
    got = await stub.Get(pb.GetRequest(key=key))  # now tracked by the gateway
    await writer.set(ns + "unrelated-but-untracked", b"x")
    await writer.set(key, b"new")
    async with asyncio.timeout(5):
        event = await read(stream)
    assert list(event.invalidated.keys) == [key]
    assert event.sequence > got.sequence
    assert event.instance_id == got.instance_id
    # The key was not read since its invalidation, so Redis no longer tracks it:
    # only the gateway's own prefix event reports this delete.
    await stub.DeleteByPrefix(pb.DeleteByPrefixRequest(prefix=ns + "w"))
    async with asyncio.timeout(5):
        event = await read(stream)
    assert list(event.invalidated.prefixes) == [ns + "w"]
    stream.cancel()


async def test_watch_filters_by_prefix(stub: Stub, writer: aioredis.Redis, ns: str) -> None:
    await writer.mset({ns + "a:1": b"1", ns + "b:1": b"1"})
    await stub.GetMany(pb.GetManyRequest(keys=[ns + "a:1", ns + "b:1"]))
    stream = stub.WatchInvalidations(pb.WatchInvalidationsRequest(prefixes=[ns + "b:"]))
    await read(stream)
    await writer.set(ns + "a:1", b"2")
    await writer.set(ns + "b:1", b"2")
    async with asyncio.timeout(5):
        event = await read(stream)
    assert list(event.invalidated.keys) == [ns + "b:1"]
    stream.cancel()


async def test_health_reports_redis_serving(gateway: RunningService) -> None:
    health = health_pb2_grpc.HealthStub(gateway.channel)
    for service in ("", SERVICE_NAME):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def violations(error: grpc.aio.AioRpcError) -> list[str]:
    status = rpc_status.from_call(error)
    assert status is not None
    for detail in status.details:
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            return [v.field for v in bad_request.field_violations]
    return []


LONG = "k" * 1025
BAD_REQUESTS: list[tuple[str, Any, list[str]]] = [
    ("Get", pb.GetRequest(key=""), ["key"]),
    ("Get", pb.GetRequest(key=LONG), ["key"]),
    ("GetMany", pb.GetManyRequest(keys=["a", ""]), ["keys[1]"]),
    ("GetMany", pb.GetManyRequest(keys=["k"] * 1001), ["keys"]),
    ("Set", pb.SetRequest(key="", ttl=ttl(-1)), ["key", "ttl"]),
    ("Set", pb.SetRequest(key="k", ttl=Duration(seconds=1, nanos=-5)), ["ttl"]),
    ("Set", pb.SetRequest(key="k", condition=pb.SetCondition.ValueType(7)), ["condition"]),
    ("Delete", pb.DeleteRequest(), ["keys"]),
    ("Delete", pb.DeleteRequest(keys=["a", ""]), ["keys[1]"]),
    ("DeleteByPrefix", pb.DeleteByPrefixRequest(prefix=""), ["prefix"]),
    ("RateLimit", pb.RateLimitRequest(key="", limit=0), ["key", "limit", "window"]),
    ("RateLimit", pb.RateLimitRequest(key="k", limit=-1, window=ttl(1)), ["limit"]),
    ("RateLimit", pb.RateLimitRequest(key="k", limit=1, window=ttl(-1)), ["window"]),
    ("RateLimit", pb.RateLimitRequest(key="k", limit=2, window=ttl(1), cost=3), ["cost"]),
    ("RateLimit", pb.RateLimitRequest(key="k", limit=2, window=ttl(1), cost=-1), ["cost"]),
]


@pytest.mark.parametrize(
    ("method", "request_", "fields"), BAD_REQUESTS, ids=[f"{m}-{f}" for m, _, f in BAD_REQUESTS]
)
async def test_bad_input_is_invalid_argument_with_field_violations(
    stub: Stub, method: str, request_: Any, fields: list[str]
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await getattr(stub, method)(request_)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(raised.value) == fields


async def test_bad_watch_request_is_invalid_argument(stub: Stub) -> None:
    stream = stub.WatchInvalidations(pb.WatchInvalidationsRequest(prefixes=["ok", ""]))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await read(stream)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(raised.value) == ["prefixes[1]"]


async def test_wrong_type_is_failed_precondition(
    stub: Stub, writer: aioredis.Redis, ns: str
) -> None:
    await writer.rpush(ns + "list", b"x")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.Get(pb.GetRequest(key=ns + "list"))
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
