"""The whole suite through `marquee up`, as a developer runs it with `make run`.

One launcher for the module: every process must answer health checks and list
its services through reflection, a pending RPC per service must say what is
missing, auth must run the job queue's `cleanup` job under the coordinator's
lease, and a SIGTERM must stop everything cleanly (the last test).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from prometheus_client.parser import text_string_to_metric_families

from marquee.auth.v1 import auth_pb2, auth_pb2_grpc
from marquee.cache.v1 import cache_pb2, cache_pb2_grpc
from marquee.coordinator.v1 import lease_pb2, lease_pb2_grpc
from marquee.media.v1 import media_pb2, media_pb2_grpc
from marquee.search.v1 import search_pb2, search_pb2_grpc
from marquee_localservers import server_data_dir

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

MARQUEE = Path(sys.executable).parent / "marquee"
STARTUP_SECONDS = 180.0
# The launcher's own limit, within ours so that its diagnosis is what we report.
LAUNCHER_STARTUP_SECONDS = 150
STOP_SECONDS = 15.0
RPC_SECONDS = 5.0
# Auth runs the queue's `cleanup` job as soon as it holds the coordinator lease.
CLEANUP_SECONDS = 60.0

COORDINATOR = {
    "marquee.coordinator.v1.LeaseService",
    "marquee.coordinator.v1.ElectionService",
    "marquee.coordinator.v1.ClusterService",
}
# The gRPC services each process of the suite must serve.
EXPECTED_SERVICES = {
    "cache-gateway": {"marquee.cache.v1.CacheService"},
    "auth": {"marquee.auth.v1.AuthService", "marquee.auth.v1.PolicyService"},
    "media": {"marquee.media.v1.MediaService"},
    "search": {"marquee.search.v1.SearchService"},
    "coordinator-1": COORDINATOR,
    "coordinator-2": COORDINATOR,
    "coordinator-3": COORDINATOR,
}


@dataclass
class Suite:
    launcher: subprocess.Popen[bytes]
    data_dir: Path
    stdout: Path
    stderr: Path
    endpoints: dict[str, Any]

    def services(self) -> list[dict[str, Any]]:
        return [p for p in self.endpoints["processes"] if "grpc" in p]


def _diagnostics(data_dir: Path, stderr: Path) -> str:
    logs = sorted((data_dir / "logs").glob("*.log"))
    tails = "\n".join(
        f"--- {log.name}\n" + "\n".join(log.read_text().splitlines()[-15:]) for log in logs
    )
    return f"launcher stderr:\n{stderr.read_text()}\n{tails}"


def _wait_for_endpoints(launcher: subprocess.Popen[bytes], data_dir: Path, stderr: Path) -> Any:
    path = data_dir / "endpoints.json"
    deadline = time.monotonic() + STARTUP_SECONDS
    while not path.exists():
        if launcher.poll() is not None:
            pytest.fail(
                f"marquee up exited with {launcher.returncode}\n" + _diagnostics(data_dir, stderr)
            )
        if time.monotonic() > deadline:
            pytest.fail(
                f"no endpoints.json after {STARTUP_SECONDS}s\n" + _diagnostics(data_dir, stderr)
            )
        time.sleep(0.2)
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    with server_data_dir("marquee-e2e-") as data_dir:
        yield from _run_suite(data_dir, tmp_path_factory)


def _run_suite(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    output_dir = tmp_path_factory.mktemp("launcher")
    stdout, stderr = output_dir / "stdout", output_dir / "stderr"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        launcher = subprocess.Popen(
            [
                str(MARQUEE),
                "up",
                "--data-dir",
                str(data_dir),
                "--base-port",
                "0",
                "--json",
                # Under load (2 shared cores) a service may take a minute to import.
                "--startup-timeout",
                str(LAUNCHER_STARTUP_SECONDS),
            ],
            stdout=out,
            stderr=err,
        )
    spawned = time.monotonic()
    try:
        endpoints = _wait_for_endpoints(launcher, data_dir, stderr)
        # The figure docs/benchmarks.md tracks ("make run"): shown with -s.
        print(f"\nmarquee up: spawn to all SERVING {time.monotonic() - spawned:.2f}s")
        yield Suite(launcher, data_dir, stdout, stderr, endpoints)
    finally:
        # Normally the last test has stopped it already.
        if launcher.poll() is None:
            launcher.send_signal(signal.SIGTERM)
            try:
                launcher.wait(30)
            except subprocess.TimeoutExpired:
                launcher.kill()
                launcher.wait()


def test_every_process_is_listed(suite: Suite) -> None:
    names = [p["name"] for p in suite.endpoints["processes"]]
    # The OIDC provider joins once everything serves; it may be listed already.
    assert sorted(set(names) - {"oidc-provider"}) == sorted(
        [*EXPECTED_SERVICES, "redis", "postgres"]
    )
    assert suite.endpoints["launcher_pid"] == suite.launcher.pid


def test_json_output_matches_endpoints_file(suite: Suite) -> None:
    # The launcher prints right after writing the file; give the line a moment.
    deadline = time.monotonic() + 5
    while not suite.stdout.read_text().endswith("\n") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert json.loads(suite.stdout.read_text()) == suite.endpoints


def test_every_service_is_serving(suite: Suite) -> None:
    for process in suite.services():
        with grpc.insecure_channel(process["grpc"]) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            for service in ["", *EXPECTED_SERVICES[process["name"]]]:
                reply = stub.Check(
                    health_pb2.HealthCheckRequest(service=service), timeout=RPC_SECONDS
                )
                assert reply.status == health_pb2.HealthCheckResponse.SERVING, (
                    process["name"],
                    service,
                )


def test_reflection_lists_every_service(suite: Suite) -> None:
    for process in suite.services():
        with grpc.insecure_channel(process["grpc"]) as channel:
            listed = set(ProtoReflectionDescriptorDatabase(channel).get_services())
        assert EXPECTED_SERVICES[process["name"]] <= listed, process["name"]
        assert "grpc.health.v1.Health" in listed


def test_every_service_answers_for_real(suite: Suite) -> None:
    """No contract is a placeholder any more: one real answer from each service."""
    by_name = {p["name"]: p for p in suite.services()}
    with grpc.insecure_channel(by_name["auth"]["grpc"]) as channel:
        jwks = auth_pb2_grpc.AuthServiceStub(channel).GetJwks(
            auth_pb2.GetJwksRequest(), timeout=RPC_SECONDS
        )
        assert jwks.keys, "auth publishes its signing key"
    with grpc.insecure_channel(by_name["search"]["grpc"]) as channel:
        films = search_pb2_grpc.SearchServiceStub(channel).Search(
            search_pb2.SearchRequest(collection="films", q="*"), timeout=RPC_SECONDS
        )
        assert films.found > 0, "the demo catalogue answers out of the box"
    with grpc.insecure_channel(by_name["media"]["grpc"]) as channel:
        with pytest.raises(grpc.RpcError) as anonymous:
            media_pb2_grpc.MediaServiceStub(channel).Stat(
                media_pb2.StatRequest(key="videos/1.mp4"), timeout=RPC_SECONDS
            )
        error: Any = anonymous.value
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED, "media asks who is calling"


def test_cache_gateway_set_then_get(suite: Suite) -> None:
    (gateway,) = [p for p in suite.services() if p["name"] == "cache-gateway"]
    with grpc.insecure_channel(gateway["grpc"]) as channel:
        stub = cache_pb2_grpc.CacheServiceStub(channel)
        stub.Set(cache_pb2.SetRequest(key="e2e:k", value=b"v"), timeout=RPC_SECONDS)
        reply = stub.Get(cache_pb2.GetRequest(key="e2e:k"), timeout=RPC_SECONDS)
    assert reply.found
    assert reply.value == b"v"


def test_coordinator_leader_grants_and_followers_redirect(suite: Suite) -> None:
    nodes = [p for p in suite.services() if p["name"].startswith("coordinator-")]
    request = lease_pb2.AcquireRequest(name="e2e", holder_id="e2e-test")
    request.ttl.FromSeconds(30)
    answers: dict[str, Any] = {}
    for node in nodes:
        with grpc.insecure_channel(node["grpc"]) as channel:
            try:
                answers[node["grpc"]] = lease_pb2_grpc.LeaseServiceStub(channel).Acquire(
                    request, timeout=RPC_SECONDS
                )
            except grpc.RpcError as error:
                answers[node["grpc"]] = error
    granted = [a for a, r in answers.items() if isinstance(r, lease_pb2.AcquireResponse)]
    assert len(granted) == 1, answers
    leader = granted[0]
    assert answers[leader].acquired
    assert answers[leader].header.leader_address == leader
    for address, answer in answers.items():
        if address != leader:
            assert answer.code() == grpc.StatusCode.FAILED_PRECONDITION, answer
            assert ("x-marquee-leader", leader) in list(answer.trailing_metadata())


def _scrape(metrics_address: str, name: str, **labels: str) -> float:
    """One sample from a process's /metrics (0 when it is not there yet)."""
    url = f"http://{metrics_address}/metrics"
    with urllib.request.urlopen(url, timeout=RPC_SECONDS) as reply:
        text = reply.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


def _lease(suite: Suite, name: str) -> lease_pb2.GetResponse:
    """LeaseService/Get from the coordinator leader (followers redirect instead)."""
    failures = []
    for node in suite.services():
        if not node["name"].startswith("coordinator-"):
            continue
        with grpc.insecure_channel(node["grpc"]) as channel:
            try:
                reply: lease_pb2.GetResponse = lease_pb2_grpc.LeaseServiceStub(channel).Get(
                    lease_pb2.GetRequest(name=name), timeout=RPC_SECONDS
                )
                return reply
            except grpc.RpcError as error:
                failures.append(error)
    pytest.fail(f"no coordinator node answered Get({name!r}): {failures}")


def test_auth_runs_the_cleanup_job_under_the_coordinator_lease(suite: Suite) -> None:
    (auth,) = [p for p in suite.services() if p["name"] == "auth"]
    runs = "marquee_jobs_periodic_runs_total"
    deadline = time.monotonic() + CLEANUP_SECONDS
    while _scrape(auth["metrics"], runs, job="cleanup", outcome="succeeded") < 1:
        if time.monotonic() > deadline:
            pytest.fail("cleanup never ran\n" + _diagnostics(suite.data_dir, suite.stderr))
        time.sleep(0.2)
    assert _scrape(auth["metrics"], "marquee_jobs_lease_held_total", lease="jobs/cleanup") >= 1
    # The suite's one auth process holds the job's lease: the holder id is
    # "auth@<host>/<pid>/<runtime>".
    reply = _lease(suite, "jobs/cleanup")
    assert reply.found
    service, _, rest = reply.lease.holder_id.partition("@")
    assert (service, rest.split("/")[1]) == ("auth", str(auth["pid"]))


def test_sigterm_stops_everything(suite: Suite) -> None:
    launcher = psutil.Process(suite.launcher.pid)
    children = launcher.children(recursive=True)
    listed = [psutil.Process(p["pid"]) for p in suite.endpoints["processes"]]
    assert {p.pid for p in listed} <= {c.pid for c in children}

    suite.launcher.send_signal(signal.SIGTERM)
    assert suite.launcher.wait(STOP_SECONDS) == 0, _diagnostics(suite.data_dir, suite.stderr)

    _, alive = psutil.wait_procs(children, timeout=2)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    assert not [p for p in listed if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not (suite.data_dir / "endpoints.json").exists()
