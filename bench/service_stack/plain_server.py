"""The peer: a bare grpc.aio server with only the health service, no interceptors."""

import sys

import grpc
from grpc_health.v1 import health, health_pb2_grpc


async def main(port: int) -> None:
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    import uvloop

    uvloop.run(main(int(sys.argv[1])))
