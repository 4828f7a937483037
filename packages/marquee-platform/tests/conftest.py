from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from platform_echo_service import EchoService
from platform_serving import Running, serving


@pytest.fixture
async def echo() -> AsyncIterator[tuple[EchoService, Running]]:
    service = EchoService()
    async with serving(service.register) as running:
        yield service, running
