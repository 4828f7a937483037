"""Where a command finds a suite service: `--address`, or the running suite's endpoints.json."""

from __future__ import annotations

from pathlib import Path

from marquee_cli.endpoints import EndpointsFileError, endpoints_path, read_endpoints
from marquee_cli.output import fail


def suite_service_address(process: str, address: str | None, data_dir: Path) -> str:
    """`address` if given, else the gRPC address of `process` in the suite under `data_dir`."""
    if address:
        return address
    path = endpoints_path(data_dir.absolute())
    try:
        suite = read_endpoints(path)
    except FileNotFoundError:
        raise fail(f"no suite running ({path} does not exist); pass --address") from None
    except EndpointsFileError as exc:
        raise fail(f"cannot read endpoints file: {exc}") from None
    for running in suite.processes:
        if running.name == process and running.grpc:
            return running.grpc
    raise fail(f"the suite in {path} runs no {process} service")
