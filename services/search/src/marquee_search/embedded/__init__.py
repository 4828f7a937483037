"""The embedded default engine: tantivy indexes under the service's data dir."""

from marquee_search.embedded.backend import EmbeddedBackend

__all__ = ["EmbeddedBackend"]
