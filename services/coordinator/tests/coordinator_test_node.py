"""A bare coordinator Raft node for the fault tests, driven over JSON lines on a control port.

Run as a script by coordinator_cluster.py (`python coordinator_test_node.py --node-id 1 ...`).
Each control request is one JSON object per line; the answer is one line:
{"ok": ...} or {"error": "<exception class>", "message": ..., "leader": ..., "current": ...}.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import structlog

from marquee_coordinator.errors import CoordinatorError, LeaseHeld, LeaseNotHeld, NotLeader
from marquee_coordinator.raft_config import FAST_TIMING, NodeConfig
from marquee_coordinator.raft_node import LeaseNode
from marquee_coordinator.state import Lease


def lease_dict(lease: Lease | None) -> dict[str, Any] | None:
    if lease is None:
        return None
    # JSON has no bytes: the published value travels as text (tests publish ASCII).
    return {**dataclasses.asdict(lease), "value": lease.value.decode()}


async def handle(node: LeaseNode, request: dict[str, Any]) -> Any:
    op = request.pop("op")
    if op == "status":
        return json.loads(json.dumps(dataclasses.asdict(node.status())))
    if op == "acquire":
        return lease_dict(await node.acquire(**request))
    if op == "renew":
        return lease_dict(await node.renew(**request))
    if op == "release":
        return lease_dict(await node.release(**request))
    if op == "get":
        return lease_dict(await node.get(**request))
    if op == "list":
        return [lease_dict(lease) for lease in await node.list(**request)]
    if op == "local":
        return [lease_dict(lease) for lease in node.local_leases()]
    if op == "events":
        # Everything retained after `since`, then whatever arrives within `wait` seconds.
        events = []
        try:
            async with asyncio.timeout(request.get("wait", 0.2)):
                async for event in node.watch(request["since"]):
                    events.append(
                        {
                            "revision": event.revision,
                            "kind": event.kind,
                            "lease": lease_dict(event.lease),
                        }
                    )
        except TimeoutError:
            pass
        return events
    raise ValueError(f"unknown op {op!r}")


def error_answer(exc: Exception) -> dict[str, Any]:
    answer: dict[str, Any] = {"error": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, NotLeader):
        answer["leader"] = exc.leader_raft_address
        answer["leader_client"] = exc.leader_client_address
    if isinstance(exc, LeaseHeld | LeaseNotHeld):
        answer["current"] = lease_dict(exc.current)
    return answer


async def serve(node: LeaseNode, port: int) -> None:
    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    answer = {"ok": await handle(node, json.loads(line))}
                except CoordinatorError as exc:
                    answer = error_answer(exc)
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(on_connection, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


async def run(args: argparse.Namespace) -> None:
    timing = dataclasses.replace(FAST_TIMING, compaction_min_entries=args.compaction_min_entries)
    config = NodeConfig(
        node_id=args.node_id,
        raft_address=args.raft,
        peers=tuple(p for p in args.peers.split(",") if p),
        data_dir=Path(args.data_dir),
        cluster_secret=args.secret or None,
        allow_insecure=not args.secret,
        client_address=f"client-of-{args.raft}",
        timing=timing,
        local_renewal=args.local_renewal,
    )
    # Constructed on the main thread, which asyncio.run runs on.
    node = LeaseNode(config)
    try:
        await serve(node, args.control_port)
    finally:
        node.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--node-id", type=int, required=True)
    parser.add_argument("--raft", required=True)
    parser.add_argument("--peers", default="")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--secret", default="")
    parser.add_argument("--control-port", type=int, required=True)
    parser.add_argument("--compaction-min-entries", type=int, default=5000)
    parser.add_argument("--local-renewal", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    # Plain stdlib logging: the platform's JSON setup imports gRPC and OpenTelemetry,
    # seconds of start-up per node on 2 cores; its rendering is tested in-process.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    structlog.configure(
        processors=[structlog.processors.KeyValueRenderer(key_order=["event"])],
        logger_factory=structlog.stdlib.LoggerFactory(),
    )
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
