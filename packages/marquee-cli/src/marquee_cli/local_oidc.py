"""The local OpenID provider `marquee up` runs in the dev profile, and auth's view of it.

The provider is the npm package `oidc-provider` run by marquee_localservers
with the script the test harness uses (marquee_testing/oidc/provider.mjs, a
dev login page that takes any name). It is optional: without Node.js, the
package or that script, the suite starts without OIDC login.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import socket
from collections.abc import Mapping
from pathlib import Path

from marquee_cli.cluster_secret import load_or_create_secret
from marquee_localservers import BackendUnavailable, OidcProviderServer
from marquee_localservers.oidc_provider import find_node

# The name auth knows it by; the console's provider field defaults to it.
PROVIDER_NAME = "dev"
CLIENT_ID = "marquee-dev"
CALLBACK_PATH = "/oidc/callback"
# MARQUEE_UP_OIDC=0 keeps it off.
ENABLE_VARIABLE = "MARQUEE_UP_OIDC"
# Always loopback: the console is served there, and auth accepts plain http
# provider URLs only to loopback hosts.
PROVIDER_HOST = "127.0.0.1"


def wanted(env: Mapping[str, str] = os.environ) -> str | None:
    """Why the provider stays off, or None to run it."""
    if env.get(ENABLE_VARIABLE, "1").strip().lower() in ("0", "false", "no", "off"):
        return f"{ENABLE_VARIABLE} is off"
    if env.get("MARQUEE_AUTH_PROFILE", "dev") != "dev":
        return "auth does not run in the dev profile"
    return None


def provider_script() -> Path:
    """The provider script, found without importing the test package (it loads pytest)."""
    spec = importlib.util.find_spec("marquee_testing")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        script = Path(location) / "oidc" / "provider.mjs"
        if script.is_file():
            return script
    raise BackendUnavailable("the provider script (marquee-testing's oidc/provider.mjs) is missing")


def redirect_uris(console_port: int) -> list[str]:
    # The console's page sends its own origin: a person may open either name.
    return [
        f"http://localhost:{console_port}{CALLBACK_PATH}",
        f"http://127.0.0.1:{console_port}{CALLBACK_PATH}",
    ]


def provider_server(data_dir: Path, port: int, console_port: int) -> OidcProviderServer:
    """The provider for this data dir; BackendUnavailable when it cannot run here.

    Its client secret is generated once per data dir (auth is given the same one).
    """
    find_node()
    script = provider_script()
    secret = load_or_create_secret(data_dir / "client-secret")
    return OidcProviderServer(
        data_dir,
        script,
        port,
        PROVIDER_HOST,
        client_id=CLIENT_ID,
        client_secret=secret,
        redirect_uris=redirect_uris(console_port),
    )


def auth_providers(server: OidcProviderServer) -> str:
    """MARQUEE_AUTH_OIDC_PROVIDERS naming the provider; a first login creates the user."""
    config = {
        PROVIDER_NAME: {
            "discovery_url": server.discovery_url,
            "client_id": server.client_id,
            "client_secret": server.client_secret,
            "redirect_uris": list(server.redirect_uris),
            "on_first_login": "create",
        }
    }
    return json.dumps(config)


def hold_port(port: int) -> socket.socket | None:
    """A socket bound to the provider's port until it starts (None if the port is taken).

    The provider starts only once the services serve, seconds after its port
    was planned; meanwhile their outgoing connections take ephemeral ports,
    and the kernel never gives one that a socket is bound to.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((PROVIDER_HOST, port))
    except OSError:
        sock.close()
        return None
    return sock


def release(held: socket.socket | None) -> None:
    if held is not None:
        with contextlib.suppress(OSError):
            held.close()
