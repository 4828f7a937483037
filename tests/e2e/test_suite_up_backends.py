"""`marquee up --storage s3` with its optional backends: SeaweedFS for media, the OIDC provider.

One launcher for the module, as a person runs it: media keeps what is uploaded
in the launcher's SeaweedFS (seen there through S3 itself), and a person at
auth's dev console signs in with the local OIDC provider (its dev login page
scripted as the auth tests do), the callback going through the console. A
SeaweedFS killed with -9 is restarted on its port with its objects.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import grpc
import httpx
import psutil
import pytest

from marquee.auth.v1 import auth_pb2, auth_pb2_grpc
from marquee.media.v1 import media_pb2, media_pb2_grpc
from marquee_localservers import server_data_dir
from marquee_testing.oidc.browser import log_in

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

MARQUEE = Path(sys.executable).parent / "marquee"
STARTUP_SECONDS = 180.0
LAUNCHER_STARTUP_SECONDS = 150
# The provider starts once the services serve; a first run installs its npm package.
PROVIDER_SECONDS = 120.0
RPC_SECONDS = 10.0
STOP_SECONDS = 30.0
RESTART_SECONDS = 90.0
BUCKET = "marquee-media"


@dataclass
class Suite:
    launcher: subprocess.Popen[bytes]
    data_dir: Path
    stderr: Path

    def endpoints(self) -> dict[str, Any]:
        return dict(json.loads((self.data_dir / "endpoints.json").read_text()))

    def process(self, name: str) -> dict[str, Any]:
        found = [p for p in self.endpoints()["processes"] if p["name"] == name]
        assert found, f"{name} is not in endpoints.json"
        return dict(found[0])

    def wait_for(self, name: str, seconds: float) -> dict[str, Any]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert self.launcher.poll() is None, self.stderr.read_text()
            names = [p["name"] for p in self.endpoints()["processes"]]
            if name in names:
                return self.process(name)
            time.sleep(0.2)
        pytest.fail(f"no {name} in endpoints.json after {seconds:g}s\n{self.stderr.read_text()}")


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    output = tmp_path_factory.mktemp("launcher")
    stderr = output / "stderr"
    with server_data_dir("marquee-e2e-s3-") as data_dir, stderr.open("wb") as err:
        launcher = subprocess.Popen(
            [
                str(MARQUEE), "up", "--data-dir", str(data_dir), "--base-port", "0", "--json",
                "--storage", "s3", "--startup-timeout", str(LAUNCHER_STARTUP_SECONDS),
            ],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + STARTUP_SECONDS
            while not (data_dir / "endpoints.json").exists():
                if launcher.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"marquee up did not come up:\n{stderr.read_text()}")
                time.sleep(0.2)
            yield Suite(launcher, data_dir, stderr)
        finally:
            launcher.send_signal(signal.SIGTERM)
            try:
                launcher.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                launcher.kill()
                launcher.wait()


def _console_port(auth_pid: int) -> int:
    # Not in endpoints.json (nothing depends on it): auth is told it in its environment.
    return int(psutil.Process(auth_pid).environ()["MARQUEE_AUTH_CONSOLE_PORT"])


def _sign_in_at_the_console(suite: Suite, name: str) -> str:
    """Sign in through the local provider as a person at the console would; the access token."""
    provider = suite.wait_for("oidc-provider", PROVIDER_SECONDS)
    auth = suite.process("auth")
    redirect_uri = f"http://localhost:{_console_port(auth['pid'])}/oidc/callback"
    with grpc.insecure_channel(auth["grpc"]) as channel:
        begun = auth_pb2_grpc.AuthServiceStub(channel).BeginOidcLogin(
            auth_pb2.BeginOidcLoginRequest(provider="dev", redirect_uri=redirect_uri),
            timeout=RPC_SECONDS,
        )
    assert begun.authorization_url.startswith(f"{provider['url']}/auth?")
    callback = asyncio.run(log_in(begun.authorization_url, redirect_uri, name))
    # The console finishes the login (CompleteOidcLogin) and hands the page its answer.
    page = httpx.get(callback.url, timeout=RPC_SECONDS)
    assert page.status_code == 200, page.text
    found = re.search(r"setItem\('oidc_result', (\".*\")\);", page.text)
    assert found, page.text
    result = json.loads(json.loads(found.group(1)))
    assert result["status"] == 200, result
    token = result["answer"]["tokens"]["access_token"]
    assert isinstance(token, str)
    return token


@pytest.fixture(scope="module")
def token(suite: Suite) -> str:
    return _sign_in_at_the_console(suite, "e2e-person")


def _upload(suite: Suite, token: str, key: str, body: bytes) -> None:
    metadata = (("authorization", f"Bearer {token}"),)

    def requests() -> Iterator[media_pb2.UploadRequest]:
        header = media_pb2.UploadHeader(key=key, content_type="application/octet-stream")
        yield media_pb2.UploadRequest(header=header)
        for start in range(0, len(body), 256 * 1024):
            yield media_pb2.UploadRequest(chunk=body[start : start + 256 * 1024])

    with grpc.insecure_channel(suite.process("media")["grpc"]) as channel:
        media = media_pb2_grpc.MediaServiceStub(channel)
        stored = media.Upload(requests(), metadata=metadata, timeout=RPC_SECONDS)
    assert stored.object.size == len(body)


def _download(suite: Suite, token: str, key: str) -> bytes:
    metadata = (("authorization", f"Bearer {token}"),)
    with grpc.insecure_channel(suite.process("media")["grpc"]) as channel:
        media = media_pb2_grpc.MediaServiceStub(channel)
        request = media_pb2.DownloadRequest(key=key)
        parts = list(media.Download(request, metadata=metadata, timeout=RPC_SECONDS))
    assert parts[0].WhichOneof("part") == "header"
    return b"".join(p.chunk for p in parts[1:])


def test_media_keeps_objects_in_seaweedfs_and_oidc_login_works(suite: Suite, token: str) -> None:
    seaweed = suite.process("seaweedfs")
    body = bytes(range(256)) * 4096 + b"tail"  # ~1 MiB, several chunks
    key = "e2e/round-trip.bin"
    _upload(suite, token, key, body)
    assert _download(suite, token, key) == body

    secret = (suite.data_dir / "seaweedfs" / "secret-key").read_text().strip()
    s3 = boto3.client(
        "s3",
        endpoint_url=seaweed["url"],
        aws_access_key_id="marquee",
        aws_secret_access_key=secret,
        region_name="us-east-1",
    )
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == body
    assert not list((suite.data_dir / "media").rglob("round-trip.bin")), "not on local disk"


def test_a_killed_seaweedfs_is_restarted_with_its_objects(suite: Suite, token: str) -> None:
    body = b"kept across a crash" * 1000
    _upload(suite, token, "e2e/kept.bin", body)
    before = suite.process("seaweedfs")
    os.kill(before["pid"], signal.SIGKILL)

    deadline = time.monotonic() + RESTART_SECONDS
    while (now := suite.process("seaweedfs"))["restarts"] == before["restarts"]:
        assert time.monotonic() < deadline, f"no restart in {RESTART_SECONDS:g}s"
        assert suite.launcher.poll() is None, suite.stderr.read_text()
        time.sleep(0.2)
    assert now["url"] == before["url"]
    assert now["last_exit"] == "killed by SIGKILL"
    # Listed again once it answers: media reads the object through it (its
    # client may need a call or two to drop connections to the dead server).
    while True:
        try:
            assert _download(suite, token, "e2e/kept.bin") == body
            break
        except grpc.RpcError:
            assert time.monotonic() < deadline, "media could not read after the restart"
            time.sleep(0.5)
