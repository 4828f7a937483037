"""The Typesense backend: the same contract served by a Typesense server over HTTP."""

from marquee_search.typesense_backend.backend import TypesenseBackend

__all__ = ["TypesenseBackend"]
