from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from cli_health_server import DOWN, UP, health_server

from marquee_cli.health import SERVING, UNREACHABLE, ProcessHealth, check_health, process_health
from marquee_localservers import free_port


@pytest.fixture
async def address() -> AsyncIterator[str]:
    async with health_server() as address:
        yield address


async def test_overall_and_named_services(address: str) -> None:
    assert await check_health(address) == SERVING
    assert await check_health(address, "demo.v1.Up") == SERVING
    assert await check_health(address, "demo.v1.Down") == "NOT_SERVING"


async def test_unknown_service(address: str) -> None:
    assert await check_health(address, "demo.v1.Nope") == "SERVICE_UNKNOWN"


async def test_nothing_listening_is_unreachable() -> None:
    assert await check_health(f"127.0.0.1:{free_port()}", deadline=1.0) == UNREACHABLE


async def test_each_served_service_has_its_own_status(address: str) -> None:
    health = await process_health(address)
    assert health == ProcessHealth(SERVING, {DOWN: "NOT_SERVING", UP: SERVING})


async def test_without_reflection_only_the_process_is_known() -> None:
    async with health_server(with_reflection=False) as address:
        assert await process_health(address) == ProcessHealth(SERVING, {})


async def test_an_unreachable_process_has_no_services() -> None:
    health = await process_health(f"127.0.0.1:{free_port()}", deadline=1.0)
    assert health == ProcessHealth(UNREACHABLE, {})
