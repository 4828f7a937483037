"""Starting the Raft node before the platform is imported (`python -m marquee_coordinator`).

A node spends most of its start-up importing the platform (pydantic-settings,
grpc, OpenTelemetry, structlog: ~1 s of CPU, several on a loaded machine),
and a fresh cluster cannot elect before two members run Raft. So `__main__`
starts the Raft node first, from the few settings it needs read straight from
the environment, and the election runs while the rest is imported; `register`
then adopts the node once the full settings are validated.

The environment is read strictly: the node is started early only when every
variable it depends on is spelt exactly as `CoordinatorSettings` reads it and
holds a plain value (digits for numbers, host:port addresses, one of the
literal choices). Anything else (a name in another case, which pydantic-settings
would also match, an unusual number) starts nothing early and leaves it all to
the ordinary path. `adopt` compares the early node's `NodeConfig` with the one
the validated settings give and discards the early node unless they are equal.

Log lines of the early phase are held and written once the platform's logging
is configured (`adopt`), so they come out in the same format as the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import structlog

from marquee_coordinator.raft_config import FAST_TIMING, NodeConfig, RaftTiming, check_address
from marquee_coordinator.raft_node import LeaseNode

PREFIX = "MARQUEE_COORDINATOR_"
# Every CoordinatorSettings field NodeConfig.from_settings and client_address read.
FIELDS = (
    "node_id",
    "raft_address",
    "peers",
    "data_dir",
    "cluster_secret",
    "profile",
    "raft_timing",
    "grpc_host",
    "grpc_port",
    "advertise_address",
    "local_renewal",
)
# CoordinatorSettings' defaults for the fields above that may be left unset.
DEFAULT_DATA_DIR = ".data/coordinator"
DEFAULT_PROFILE = "dev"
DEFAULT_GRPC_HOST = "127.0.0.1"


def config_from_environment(environ: Mapping[str, str]) -> NodeConfig | None:
    """The NodeConfig the settings would give, or None unless every value is plain."""
    names = {PREFIX + field.upper() for field in FIELDS}
    if any(key.upper() in names and key not in names for key in environ):
        return None  # pydantic-settings would read it too: leave it to the full settings
    if any(environ.get(name) == "" for name in names):
        return None  # pydantic reads "" its own way (a path ".", an invalid number)

    def get(field: str) -> str | None:
        return environ.get(PREFIX + field.upper())

    node_id, raft_address = get("node_id"), get("raft_address")
    if node_id is None or raft_address is None or not _digits(node_id) or int(node_id) < 1:
        return None
    grpc_port = get("grpc_port") or "0"
    profile = get("profile") or DEFAULT_PROFILE
    timing = get("raft_timing") or "default"
    if not _digits(grpc_port) or int(grpc_port) > 65535:
        return None
    if profile not in ("dev", "prod") or timing not in ("default", "fast"):
        return None
    local_renewal = get("local_renewal") or "true"
    if local_renewal not in ("true", "false"):
        return None
    try:
        check_address(raft_address)
        peers = [check_address(p.strip()) for p in (get("peers") or "").split(",") if p.strip()]
        advertise = get("advertise_address")
        if advertise is not None:
            check_address(advertise)
    except ValueError:
        return None
    grpc_host = get("grpc_host") or DEFAULT_GRPC_HOST
    port = int(grpc_port)
    client_address = advertise or (f"{grpc_host}:{port}" if port else None)
    return NodeConfig(
        node_id=int(node_id),
        raft_address=raft_address,
        peers=tuple(p for p in peers if p != raft_address),
        data_dir=Path(get("data_dir") or DEFAULT_DATA_DIR),
        cluster_secret=get("cluster_secret"),
        allow_insecure=profile == "dev",
        client_address=client_address,
        timing=FAST_TIMING if timing == "fast" else RaftTiming(),
        local_renewal=local_renewal == "true",
    )


def _digits(value: str) -> bool:
    return value.isascii() and value.isdigit()


class _HeldRecords(logging.Handler):
    """Keeps the early phase's log records until the platform's logging is configured."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _hold_logs() -> _HeldRecords:
    """Route structlog through stdlib into a holding handler (as the platform will, later).

    The platform's processors are added at write time by its formatter; the ones
    that depend on when a line was logged (time, level, logger) run now.
    """
    structlog.configure(
        processors=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    held = _HeldRecords()
    root = logging.getLogger()
    root.handlers = [held]
    root.setLevel(logging.INFO)
    return held


class _Early:
    node: LeaseNode | None = None
    held: _HeldRecords | None = None


def start_from_environment(environ: Mapping[str, str]) -> LeaseNode | None:
    """Start the Raft node now if the environment allows it (see the module docstring)."""
    config = config_from_environment(environ)
    if config is None:
        return None
    _Early.held = _hold_logs()
    try:
        _Early.node = LeaseNode(config)
    except Exception:
        # Insecure, locked, the port taken, the data dir not writable: the ordinary
        # path meets the same failure in `register` and reports it as the platform does.
        _Early.node = None
    return _Early.node


def started() -> bool:
    """Whether start_from_environment ran in this process and held logs for adopt."""
    return _Early.held is not None


def adopt(config: NodeConfig, service: str) -> LeaseNode | None:
    """The early node if it was started with exactly `config` (else it is closed); writes
    out the held log lines through the logging configured since."""
    node, _Early.node = _Early.node, None
    _write_held(service)
    if node is not None and node.config != config:
        structlog.stdlib.get_logger(__name__).warning(
            "raft node started early with other settings; starting it again"
        )
        node.close()
        return None
    return node


def close_unadopted() -> None:
    """At exit: close an early node the service never took (its settings were invalid)."""
    node, _Early.node = _Early.node, None
    if node is not None:
        node.close()


def _write_held(service: str) -> None:
    held, _Early.held = _Early.held, None
    if held is None:
        return
    root = logging.getLogger()
    root.removeHandler(held)  # still there only if the platform did not configure logging
    for record in held.records:
        if isinstance(record.msg, dict):
            record.msg.setdefault("service", service)
        if logging.getLogger(record.name).isEnabledFor(record.levelno):
            for handler in root.handlers:
                handler.handle(record)
