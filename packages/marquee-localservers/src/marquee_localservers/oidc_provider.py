"""A real OpenID provider (the npm package `oidc-provider`) as a local server process.

The package is installed on demand, pinned, into a cache directory outside any
checkout (~/.cache/marquee/oidc-provider-<version>), through npm's ordinary
client and registry configuration; node_modules never lands in the repository.
One install at a time across processes (a file lock), into a temporary
directory renamed into place, so a parallel session never sees half of it.
The provider itself is a small script given by the caller (marquee_testing
ships one) that takes its port, client and redirect URIs as arguments.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from pathlib import Path

from marquee_localservers.errors import BackendUnavailable
from marquee_localservers.process import ServerProcess, netloc, run_quiet

OIDC_PROVIDER_VERSION = "9.13.3"
_NPM_TIMEOUT = 300.0


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "marquee"


def find_node() -> str:
    node = shutil.which("node")
    if node is None:
        raise BackendUnavailable("node is not on PATH (oidc-provider needs Node.js 20 or later)")
    return node


def oidc_provider_modules(
    version: str = OIDC_PROVIDER_VERSION, timeout: float = _NPM_TIMEOUT
) -> Path:
    """The node_modules directory holding oidc-provider@`version`, installed if missing
    (npm given at most `timeout` seconds)."""
    target = _cache_dir() / f"oidc-provider-{version}"
    modules = target / "node_modules"
    if (modules / "oidc-provider" / "package.json").is_file():
        return modules
    npm = shutil.which("npm")
    if npm is None:
        raise BackendUnavailable("npm is not on PATH: cannot install oidc-provider")
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = os.open(target.parent / "oidc-provider.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (modules / "oidc-provider" / "package.json").is_file():
            return modules  # another process installed it while we waited
        staging = target.with_name(f"{target.name}.{uuid.uuid4().hex}.tmp")
        try:
            staging.mkdir()
            result = run_quiet(
                [
                    npm, "install", "--no-save", "--no-audit", "--no-fund", "--ignore-scripts",
                    "--prefix", str(staging), f"oidc-provider@{version}",
                ],
                timeout,
            )  # fmt: skip
            if result.returncode != 0:
                detail = (result.stderr or result.stdout).strip()[-500:]
                raise BackendUnavailable(f"npm install oidc-provider@{version} failed: {detail}")
            shutil.rmtree(target, ignore_errors=True)  # a broken earlier attempt
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    finally:
        os.close(lock)
    return modules


class OidcProviderServer(ServerProcess):
    """oidc-provider on a free port, serving one confidential client that must use PKCE.

    State (sessions, codes) lives in the provider's memory and keys are new at
    each start: a restart forgets logins in progress and rotates the signing key.
    """

    log_name = "oidc-provider.log"

    def __init__(
        self,
        data_dir: Path,
        script: Path,
        port: int | None = None,
        host: str = "127.0.0.1",
        *,
        client_id: str = "marquee-test",
        client_secret: str = "marquee-test-secret",  # noqa: S107  # nosec B107
        redirect_uris: Sequence[str] = ("http://127.0.0.1/oidc/callback",),
    ) -> None:
        super().__init__("oidc-provider", data_dir, port, host)
        self.script = Path(script)
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uris = tuple(redirect_uris)
        self._modules: Path | None = None

    @property
    def url(self) -> str:
        """The issuer."""
        return f"http://{netloc(self.host, self.port)}"

    @property
    def discovery_url(self) -> str:
        return f"{self.url}/.well-known/openid-configuration"

    def _prepare(self, deadline: float) -> None:
        # The install (first start on a machine) counts against start()'s timeout.
        if not self.script.is_file():
            raise BackendUnavailable(f"oidc-provider script {str(self.script)!r} is missing")
        left = deadline - time.monotonic()
        if left <= 1:
            raise BackendUnavailable("no time left to install oidc-provider")
        self._modules = oidc_provider_modules(timeout=left)

    def _command(self) -> list[str]:
        assert self._modules is not None, "_prepare runs first"
        command = [
            find_node(), str(self.script),
            "--port", str(self.port),
            "--host", self.host,
            "--modules", str(self._modules),
            "--client-id", self.client_id,
            "--client-secret", self.client_secret,
        ]  # fmt: skip
        for uri in self.redirect_uris:
            command += ["--redirect-uri", uri]
        return command

    def _ping(self) -> bool:
        # Ready once the discovery document names this issuer.
        try:
            # An http URL this class builds from its own host and port.
            with urllib.request.urlopen(self.discovery_url, timeout=1.0) as response:  # noqa: S310  # nosec B310
                return bool(json.loads(response.read()).get("issuer") == self.url)
        except (OSError, ValueError, urllib.error.URLError):
            return False
