"""Entry point: `python -m marquee_cache_gateway`."""

from marquee_cache_gateway.app import register
from marquee_cache_gateway.settings import CacheSettings
from marquee_platform import run_service

if __name__ == "__main__":
    run_service("cache-gateway", CacheSettings, register)
