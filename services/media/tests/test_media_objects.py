"""The storage contract, run on both backends (local disk and real S3)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from media_support import Client

from marquee.media.v1 import media_pb2
from marquee_testing.inprocess import RunningService

MIB = 1024 * 1024


async def expect(code: grpc.StatusCode, awaitable: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await awaitable  # type: ignore[misc]
    assert caught.value.code() == code, caught.value.details()
    return caught.value


async def test_put_stat_get_delete(alice: Client) -> None:
    data = os.urandom(3 * MIB + 17)
    chunks = [data[i : i + MIB] for i in range(0, len(data), MIB)]
    info = await alice.put(
        "videos/1/source.bin", chunks, content_type="video/mp4", metadata={"owner": "alice"}
    )
    assert info.size == len(data)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert info.content_type == "video/mp4"
    assert dict(info.metadata) == {"owner": "alice"}
    stat = await alice.stub.Stat(media_pb2.StatRequest(key=info.key), metadata=alice.metadata)
    assert stat.object.sha256 == info.sha256
    assert stat.object.size == len(data)
    assert stat.object.etag
    header, body = await alice.get(info.key)
    assert body == data
    assert header.length == len(data)
    assert header.offset == 0
    deleted = await alice.stub.Delete(
        media_pb2.DeleteRequest(key=info.key), metadata=alice.metadata
    )
    assert deleted.deleted
    again = await alice.stub.Delete(media_pb2.DeleteRequest(key=info.key), metadata=alice.metadata)
    assert not again.deleted
    await expect(
        grpc.StatusCode.NOT_FOUND,
        alice.stub.Stat(media_pb2.StatRequest(key=info.key), metadata=alice.metadata),
    )
    await expect(grpc.StatusCode.NOT_FOUND, alice.get(info.key))


async def test_byte_ranges(alice: Client) -> None:
    data = os.urandom(2 * MIB + 5)
    await alice.put("r/obj", [data[i : i + MIB] for i in range(0, len(data), MIB)])
    for offset, length in [(0, 1), (10, 100), (MIB - 3, MIB + 7), (len(data) - 1, 0), (5, 0)]:
        header, body = await alice.get("r/obj", offset, length)
        expected = data[offset : offset + length] if length else data[offset:]
        assert body == expected
        assert (header.offset, header.length) == (offset, len(expected))
    header, body = await alice.get("r/obj", len(data) - 10, 1000)  # clipped at the end
    assert body == data[-10:]
    assert header.length == 10
    await expect(grpc.StatusCode.OUT_OF_RANGE, alice.get("r/obj", len(data)))
    await expect(grpc.StatusCode.INVALID_ARGUMENT, alice.get("r/obj", -1))


async def test_empty_object(alice: Client) -> None:
    info = await alice.put("empty", [])
    assert info.size == 0
    assert info.sha256 == hashlib.sha256(b"").hexdigest()
    header, body = await alice.get("empty")
    assert body == b""
    assert header.length == 0


async def test_overwrite_rules(alice: Client) -> None:
    await alice.put("o/k", [b"one"])
    await expect(grpc.StatusCode.ALREADY_EXISTS, alice.put("o/k", [b"two"]))
    assert (await alice.get("o/k"))[1] == b"one"
    info = await alice.put("o/k", [b"three"], overwrite=True)
    assert info.size == 5
    assert (await alice.get("o/k"))[1] == b"three"


async def test_checksum_mismatch_discards_the_upload(alice: Client) -> None:
    wrong = hashlib.sha256(b"something else").hexdigest()
    await expect(grpc.StatusCode.DATA_LOSS, alice.put("c/k", [b"payload"], sha256=wrong))
    await expect(
        grpc.StatusCode.NOT_FOUND,
        alice.stub.Stat(media_pb2.StatRequest(key="c/k"), metadata=alice.metadata),
    )
    right = hashlib.sha256(b"payload").hexdigest()
    assert (await alice.put("c/k", [b"pay", b"load"], sha256=right)).sha256 == right


async def test_multipart_checksum_mismatch_leaves_nothing(alice: Client) -> None:
    data = os.urandom(12 * MIB)  # more than one part
    wrong = hashlib.sha256(b"x").hexdigest()
    chunks = [data[i : i + MIB] for i in range(0, len(data), MIB)]
    await expect(grpc.StatusCode.DATA_LOSS, alice.put("big/k", chunks, sha256=wrong))
    await expect(grpc.StatusCode.NOT_FOUND, alice.get("big/k"))


@pytest.mark.parametrize(
    "key", ["", "/abs", "a/../b", "a//b", "./a", "a/", "x" * 1025, "a\x00b", ".mq-x/a"]
)
async def test_bad_keys_are_invalid_argument(alice: Client, key: str) -> None:
    error = await expect(
        grpc.StatusCode.INVALID_ARGUMENT,
        alice.stub.Stat(media_pb2.StatRequest(key=key), metadata=alice.metadata),
    )
    status = rpc_status.from_call(error)
    assert status is not None
    bad = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad)
    assert bad.field_violations[0].field == "key"
    await expect(grpc.StatusCode.INVALID_ARGUMENT, alice.put(key, [b"x"]))


async def test_bad_upload_streams(alice: Client) -> None:
    async def chunk_first() -> AsyncIterator[media_pb2.UploadRequest]:
        yield media_pb2.UploadRequest(chunk=b"x")

    await expect(
        grpc.StatusCode.INVALID_ARGUMENT, alice.stub.Upload(chunk_first(), metadata=alice.metadata)
    )

    async def two_headers() -> AsyncIterator[media_pb2.UploadRequest]:
        yield media_pb2.UploadRequest(header=media_pb2.UploadHeader(key="h/a"))
        yield media_pb2.UploadRequest(header=media_pb2.UploadHeader(key="h/b"))

    await expect(
        grpc.StatusCode.INVALID_ARGUMENT, alice.stub.Upload(two_headers(), metadata=alice.metadata)
    )
    await expect(grpc.StatusCode.INVALID_ARGUMENT, alice.put("h/c", [b"x"], sha256="ABC"))
    await expect(grpc.StatusCode.INVALID_ARGUMENT, alice.put("h/c", [b"x"], metadata={"Bad": "1"}))
    await expect(grpc.StatusCode.NOT_FOUND, alice.get("h/a"))


async def test_calls_without_a_token_are_unauthenticated(media: RunningService) -> None:
    stub = Client(media.channel, "not-a-jwt").stub
    await expect(
        grpc.StatusCode.UNAUTHENTICATED, stub.Stat(media_pb2.StatRequest(key="k"), metadata=())
    )
    await expect(
        grpc.StatusCode.UNAUTHENTICATED,
        stub.Stat(media_pb2.StatRequest(key="k"), metadata=(("authorization", "Bearer x.y.z"),)),
    )


def test_every_rpc_declares_its_caller(backend: str) -> None:
    from marquee_authn import undeclared_methods
    from marquee_media.servicer import MediaServicer

    service = media_pb2.DESCRIPTOR.services_by_name["MediaService"]
    assert undeclared_methods(MediaServicer, service) == []
