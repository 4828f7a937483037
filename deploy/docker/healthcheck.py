"""The images' own health check (compose `healthcheck`): grpc.health.v1 Check, bounded.

    python /opt/marquee/healthcheck.py PORT [SERVICE]

Exit 0 when the server on 127.0.0.1:PORT answers SERVING for SERVICE (default
"", the whole server), 1 otherwise, within 3 seconds. Kubernetes uses its
native gRPC probes instead.
"""

from __future__ import annotations

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

TIMEOUT_SECONDS = 3.0


def check(port: int, service: str) -> bool:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            answer = stub.Check(
                health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT_SECONDS
            )
        except grpc.RpcError as exc:
            print(f"health check failed: {exc.code().name}", file=sys.stderr)
            return False
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    print(status)
    return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3) or not sys.argv[1].isdigit():
        raise SystemExit("usage: healthcheck.py PORT [SERVICE]")
    sys.exit(0 if check(int(sys.argv[1]), sys.argv[2] if len(sys.argv) == 3 else "") else 1)
