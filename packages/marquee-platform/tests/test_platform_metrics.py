"""Prometheus /metrics on its own port, scraped over HTTP like Prometheus would."""

from __future__ import annotations

import asyncio
import gc
import urllib.request

import grpc.aio
import pytest
from platform_echo_service import SERVICE, EchoService, EchoSettings
from platform_serving import Running, serving
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from marquee_platform.gc_pauses import GcPauses
from marquee_platform.metrics import MethodMetrics


async def scrape(running: Running) -> str:
    url = f"http://127.0.0.1:{running.info.metrics_port}/metrics"

    def get() -> str:
        with urllib.request.urlopen(url, timeout=5) as response:
            body: bytes = response.read()
            return body.decode()

    return await asyncio.to_thread(get)


def handled(text: str, grpc_method: str, grpc_code: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "marquee_grpc_server_handled_total" and sample.labels == {
                "grpc_service": SERVICE,
                "grpc_method": grpc_method,
                "grpc_code": grpc_code,
            }:
                return sample.value
    return 0.0


async def test_handled_counter_has_the_status_code(echo: tuple[EchoService, Running]) -> None:
    _, running = echo
    before = await scrape(running)
    for _ in range(3):  # the first call looks up the labelled series, later ones reuse it
        await running.unary("Echo")(b"x", timeout=5)
    with pytest.raises(grpc.aio.AioRpcError):
        await running.unary("Invalid")(b"", timeout=5)
    stream = running.unary_stream("Stream")
    assert len([r async for r in stream(b"2", timeout=5)]) == 2

    expected = {
        ("Echo", "OK"): handled(before, "Echo", "OK") + 3,
        ("Invalid", "INVALID_ARGUMENT"): handled(before, "Invalid", "INVALID_ARGUMENT") + 1,
        ("Stream", "OK"): handled(before, "Stream", "OK") + 1,
    }
    # An error's status goes out before the wrapper counts the call, so the caller
    # may see it a moment before the metric moves: wait (bounded) for the counts.
    async with asyncio.timeout(5):
        while True:
            after = await scrape(running)
            if {key: handled(after, *key) for key in expected} == expected:
                break
            await asyncio.sleep(0.02)
    assert "marquee_grpc_server_handling_seconds_bucket" in after


async def test_each_metric_is_exported_under_one_name(echo: tuple[EchoService, Running]) -> None:
    text = await scrape(echo[1])
    assert "marquee_grpc_server_handled_created" not in text
    assert "marquee_grpc_server_handling_seconds_created" not in text


async def test_metrics_can_be_disabled() -> None:
    async with serving(EchoService().register, EchoSettings(metrics_port=-1)) as running:
        assert running.info.metrics_port is None


def test_the_latency_histogram_counts_each_call_once_in_its_bucket() -> None:
    """The hand-kept series read as prometheus_client's Histogram would have exported them.

    A bound is inclusive (le), buckets are cumulative, +Inf is the count, and two
    servers in one process share a method's series.
    """
    first = MethodMetrics("/test.Histogram/Get")
    second = MethodMetrics("/test.Histogram/Get")
    for seconds in (0.001, 0.005, 0.0051, 0.3, 12.0):
        first.record(grpc.StatusCode.OK, seconds)
    second.record(grpc.StatusCode.NOT_FOUND, 0.01)

    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(generate_latest().decode())
        for sample in family.samples
        if sample.labels.get("grpc_service") == "test.Histogram"
    }
    labels = (("grpc_method", "Get"), ("grpc_service", "test.Histogram"))

    def bucket(le: str) -> float:
        return samples[("marquee_grpc_server_handling_seconds_bucket", (*labels, ("le", le)))]

    assert bucket("0.005") == 2  # 0.001 and 0.005 itself
    assert bucket("0.01") == 4  # + 0.0051 and the NOT_FOUND call's 0.01
    assert bucket("0.25") == 4
    assert bucket("0.5") == 5
    assert bucket("10.0") == 5
    assert bucket("+Inf") == 6
    assert samples[("marquee_grpc_server_handling_seconds_count", labels)] == 6
    assert samples[("marquee_grpc_server_handling_seconds_sum", labels)] == pytest.approx(
        0.001 + 0.005 + 0.0051 + 0.3 + 12.0 + 0.01
    )
    ok = (*sorted((*labels, ("grpc_code", "OK"))),)
    not_found = (*sorted((*labels, ("grpc_code", "NOT_FOUND"))),)
    assert samples[("marquee_grpc_server_handled_total", ok)] == 5
    assert samples[("marquee_grpc_server_handled_total", not_found)] == 1


def gc_samples(text: str, generation: str) -> dict[str, float]:
    """marquee_gc_pause_seconds' samples for one generation, by name and bound."""
    return {
        sample.name.removeprefix("marquee_gc_pause_seconds") + sample.labels.get("le", ""): (
            sample.value
        )
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if family.name == "marquee_gc_pause_seconds" and sample.labels["generation"] == generation
    }


async def test_a_served_process_times_its_garbage_collections(
    echo: tuple[EchoService, Running],
) -> None:
    before = gc_samples(await scrape(echo[1]), "2")
    gc.collect()
    gc.collect()
    after = gc_samples(await scrape(echo[1]), "2")
    assert after["_count"] >= before["_count"] + 2
    assert after["_sum"] > before["_sum"]
    assert after["_bucket+Inf"] == after["_count"]
    assert {f"_bucket{b}" for b in ("0.0001", "0.05", "1.0")} <= after.keys()


def test_a_pause_is_counted_in_its_generation_and_bucket() -> None:
    clock = iter([10.0, 10.003, 20.0, 20.0000001])  # a full collection of 3 ms, a young one
    pauses = GcPauses(clock=lambda: next(clock))
    pauses.callback("start", {"generation": 2})
    pauses.callback("stop", {"generation": 2, "collected": 0, "uncollectable": 0})
    pauses.callback("start", {"generation": 0})
    pauses.callback("stop", {"generation": 0, "collected": 0, "uncollectable": 0})
    (family,) = pauses.collect()
    samples = {
        (s.name, s.labels["generation"], s.labels.get("le")): s.value for s in family.samples
    }
    assert samples[("marquee_gc_pause_seconds_bucket", "2", "0.0025")] == 0
    assert samples[("marquee_gc_pause_seconds_bucket", "2", "0.005")] == 1
    assert samples[("marquee_gc_pause_seconds_sum", "2", None)] == pytest.approx(0.003)
    assert samples[("marquee_gc_pause_seconds_bucket", "0", "0.0001")] == 1
    assert samples[("marquee_gc_pause_seconds_count", "1", None)] == 0
