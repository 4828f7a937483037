"""gRPC wiring of the auth service."""

import grpc

from marquee.auth.v1 import auth_pb2, auth_pb2_grpc, policy_pb2, policy_pb2_grpc
from marquee_auth.settings import AuthSettings
from marquee_jobs import cleanup_job
from marquee_jobs.service import start_job_runtime
from marquee_platform import ServiceContext
from marquee_platform.placeholders import add_pending

MISSING = "passwords, sessions, MFA, OIDC and RBAC arrive with the auth issue"


async def register(server: grpc.aio.Server, ctx: ServiceContext) -> list[str]:
    settings = ctx.settings
    assert isinstance(settings, AuthSettings)
    if settings.run_jobs:
        # Auth owns a database, so it hosts the queue's own `cleanup` job; the
        # coordinator lease keeps it to one replica however many run.
        await start_job_runtime(
            ctx,
            str(settings.database_url),
            settings.coordinator_endpoints,
            periodic=[cleanup_job],
            migrate=settings.migrate_on_start,
        )
    return [
        add_pending(
            server,
            auth_pb2_grpc.add_AuthServiceServicer_to_server,
            auth_pb2_grpc.AuthServiceServicer,
            auth_pb2.DESCRIPTOR.services_by_name["AuthService"],
            MISSING,
        ),
        add_pending(
            server,
            policy_pb2_grpc.add_PolicyServiceServicer_to_server,
            policy_pb2_grpc.PolicyServiceServicer,
            policy_pb2.DESCRIPTOR.services_by_name["PolicyService"],
            MISSING,
        ),
    ]
