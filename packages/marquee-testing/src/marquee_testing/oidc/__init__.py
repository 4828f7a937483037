"""A real OpenID provider for tests: the node script run by OidcProviderServer."""

from pathlib import Path

PROVIDER_SCRIPT = Path(__file__).with_name("provider.mjs")
