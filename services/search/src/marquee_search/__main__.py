"""Entry point: `python -m marquee_search`."""

from marquee_platform import run_service
from marquee_search.app import register
from marquee_search.settings import SearchSettings

if __name__ == "__main__":
    run_service("search", SearchSettings, register)
