"""Types shared by the cache tests, importable under a name unique across the repo."""

from collections.abc import Awaitable, Callable

from marquee_cache import Cache

CacheFactory = Callable[..., Awaitable[Cache]]
