"""Server reflection under both names clients ask for: grpc.reflection.v1 and v1alpha.

grpcio-reflection (1.85) implements only grpc.reflection.v1alpha. v1 is the
same protocol renamed: the same messages, field for field, so the same bytes
on the wire. v1 is therefore served by the same servicer through v1alpha's
message types, and its descriptor, derived from v1alpha's, is added to the
default pool so that reflection describes v1 too (`grpcurl describe`, or a
tool that builds its requests from the schema reflection gives it).
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
import grpc.aio
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

V1_SERVICE = "grpc.reflection.v1.ServerReflection"
V1ALPHA_SERVICE: str = reflection.SERVICE_NAME
SERVICES = (V1_SERVICE, V1ALPHA_SERVICE)

_V1_FILE = "grpc/reflection/v1/reflection.proto"
_V1_PACKAGE = "grpc.reflection.v1"


def enable_reflection(server: grpc.aio.Server, service_names: Iterable[str]) -> None:
    """Serve reflection v1 and v1alpha, listing `service_names` and themselves."""
    _add_v1_descriptor(descriptor_pool.Default())
    servicer = reflection.aio.ReflectionServicer([*service_names, *SERVICES])
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    v1 = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(V1_SERVICE, {"ServerReflectionInfo": v1})]
    )


def _add_v1_descriptor(pool: descriptor_pool.DescriptorPool) -> None:
    try:
        pool.FindFileByName(_V1_FILE)
        return  # added before (or by a library that ships v1)
    except KeyError:
        pass
    pool.AddSerializedFile(v1_file_descriptor().SerializeToString())


def v1_file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    """grpc/reflection/v1/reflection.proto, from v1alpha's descriptor with the names changed."""
    v1 = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(v1)
    old = f".{v1.package}."
    new = f".{_V1_PACKAGE}."
    v1.name = _V1_FILE
    v1.package = _V1_PACKAGE
    for message in v1.message_type:
        for field in message.field:
            if field.HasField("type_name"):
                field.type_name = field.type_name.replace(old, new)
            # As protoc sets it, for clients that print JSON (grpcurl: listServicesResponse).
            head, *rest = field.name.split("_")
            field.json_name = head + "".join(part.capitalize() for part in rest)
    for service in v1.service:
        for method in service.method:
            method.input_type = method.input_type.replace(old, new)
            method.output_type = method.output_type.replace(old, new)
    # v1alpha's language options (package paths) do not apply to v1; none are needed here.
    v1.options.Clear()
    return v1
