"""Server instructions per renewal under callgrind: Marquee's leader next to the no-op floor.

The timed renewal figures move by a tenth or more between rounds here, more
than most changes to the renewal path are worth; instruction counts repeat.
This runs a single-node coordinator (`python -m marquee_coordinator`, no
peers: it leads at once and its leader lease needs no follower) and the
floor (coordinator_bench_floor.py) under callgrind, one after the other, and
counts the server's instructions per unary Renew and per KeepAlive message,
with the same span of idle background work subtracted
(the method of service_stack/instructions.py, whose Callgrind it uses).

A single node answers renewals by the same path as a leader of three
(LeaseNode.renew_locally, the encoded answers); what it lacks is the
followers' heartbeats and acknowledgements, which are background work.

`.venv/bin/python bench/coordinator/instructions.py` (`BENCH_CALLS`, default
1600; `BENCH_CALLGRIND_DIR` keeps the dumps for callgrind_annotate; needs
valgrind). About 2 minutes.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import uvloop
from google.protobuf.duration_pb2 import Duration

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from service_stack.instructions import CALLS, TASKS, Callgrind, instructions_per_call

from benchlib import Row, print_results, wait_serving
from marquee.coordinator.v1 import lease_pb2, lease_pb2_grpc
from marquee_localservers import free_port

HERE = Path(__file__).resolve().parent
SECRET = "bench-instructions-cluster-secret"
TTL_SECONDS = 3600  # no lease runs out while valgrind slows everything ~50x

Renewal = Callable[[], Awaitable[object]]


async def _granted(stub: lease_pb2_grpc.LeaseServiceAsyncStub, n: int) -> list[lease_pb2.Lease]:
    leases = []
    for i in range(n):
        reply = await stub.Acquire(
            lease_pb2.AcquireRequest(
                name=f"bench/instructions-{i}",
                holder_id=f"holder-{i}",
                ttl=Duration(seconds=TTL_SECONDS),
            ),
            timeout=300,
        )
        if not reply.acquired:
            raise RuntimeError(f"not granted: {reply}")
        leases.append(reply.lease)
    return leases


async def unary_renew(channel: grpc.aio.Channel) -> Renewal:
    stub = lease_pb2_grpc.LeaseServiceStub(channel)
    leases = await _granted(stub, TASKS)
    requests = [
        lease_pb2.RenewRequest(name=x.name, holder_id=x.holder_id, token=x.token) for x in leases
    ]
    turn = iter(range(10**12))

    async def renew() -> object:
        reply = await stub.Renew(requests[next(turn) % len(requests)], timeout=300)
        if not reply.renewed:
            raise RuntimeError(f"not renewed: {reply}")
        return reply

    return renew


async def keepalive_message(channel: grpc.aio.Channel) -> Renewal:
    """One renewal written on a long-lived stream and its answer read; a stream per task."""
    stub = lease_pb2_grpc.LeaseServiceStub(channel)
    leases = await _granted(stub, TASKS)
    Stream = grpc.aio.StreamStreamCall[lease_pb2.KeepAliveRequest, lease_pb2.KeepAliveResponse]
    free: asyncio.Queue[tuple[Stream, lease_pb2.KeepAliveRequest]] = asyncio.Queue()
    for lease in leases:
        request = lease_pb2.KeepAliveRequest(
            name=lease.name, holder_id=lease.holder_id, token=lease.token
        )
        free.put_nowait((stub.KeepAlive(), request))

    async def renew() -> object:
        call, request = free.get_nowait()
        try:
            await call.write(request)
            reply = await call.read()
        finally:
            free.put_nowait((call, request))
        if not isinstance(reply, lease_pb2.KeepAliveResponse) or not reply.alive:
            raise RuntimeError(f"not renewed: {reply}")
        return reply

    return renew


async def measure(
    label: str, argv: list[str], env: dict[str, str], port: int, tmp: Path
) -> dict[str, float]:
    server = Callgrind(argv, {**os.environ, **env}, tmp / f"{label}.callgrind")
    try:
        address = f"127.0.0.1:{port}"
        await wait_serving(address, timeout=300)
        counts = {}
        async with grpc.aio.insecure_channel(address) as channel:
            for figure, make in (("Renew", unary_renew), ("KeepAlive message", keepalive_message)):
                counts[figure] = await instructions_per_call(server, await make(channel))
        return counts
    finally:
        server.stop()


async def main() -> None:
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    keep = os.environ.get("BENCH_CALLGRIND_DIR")  # keep the dumps there, for callgrind_annotate
    with tempfile.TemporaryDirectory(prefix="bench-coordinator-instructions-") as tmp_name:
        tmp = Path(keep or tmp_name)
        tmp.mkdir(parents=True, exist_ok=True)
        port = free_port()
        marquee = await measure(
            "marquee",
            [sys.executable, "-m", "marquee_coordinator"],
            {
                "MARQUEE_COORDINATOR_NODE_ID": "1",
                "MARQUEE_COORDINATOR_RAFT_ADDRESS": f"127.0.0.1:{free_port()}",
                "MARQUEE_COORDINATOR_PEERS": "",
                "MARQUEE_COORDINATOR_DATA_DIR": str(tmp / "marquee"),
                "MARQUEE_COORDINATOR_CLUSTER_SECRET": SECRET,
                "MARQUEE_COORDINATOR_PROFILE": "prod",
                "MARQUEE_COORDINATOR_GRPC_PORT": str(port),
                "MARQUEE_COORDINATOR_METRICS_PORT": "-1",
                "MARQUEE_COORDINATOR_LOG_LEVEL": "WARNING",
            },
            port,
            tmp,
        )
        port = free_port()
        floor = await measure(
            "floor",
            [sys.executable, str(HERE / "coordinator_bench_floor.py")],
            {
                "MARQUEE_FLOOR_GRPC_PORT": str(port),
                "MARQUEE_FLOOR_METRICS_PORT": "-1",
                "MARQUEE_FLOOR_LOG_LEVEL": "WARNING",
                "MARQUEE_FLOOR_PROFILE": "prod",
                "PYTHONPATH": os.pathsep.join([str(HERE.parent), *sys.path]),
            },
            port,
            tmp,
        )
    unit = "server instructions per renewal vs the no-op floor"
    print_results(
        "coordinator_instructions",
        "no-op floor",
        [
            Row("unary Renew", marquee["Renew"], floor["Renew"], unit),
            Row(
                "KeepAlive message", marquee["KeepAlive message"], floor["KeepAlive message"], unit
            ),
        ],
        notes={"calls": CALLS},
    )


if __name__ == "__main__":
    uvloop.run(main())
