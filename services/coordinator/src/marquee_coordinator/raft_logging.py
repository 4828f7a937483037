"""Route pysyncobj's stdlib logs through the platform's structured logging with their fields (K-5).

pysyncobj logs %-style messages on module loggers (`pysyncobj.syncobj`, ...),
which the platform's root handler already renders as JSON. What would be lost
is structure: the interpolated values exist only inside the message text. This
filter keeps them as fields - the template, the arguments and the node - so a
log query can group by template or pick out one node's lines.
"""

from __future__ import annotations

import logging

# pysyncobj's modules that log; filters on a parent logger do not see children's records.
_RAFT_LOGGERS = (
    "pysyncobj.syncobj",
    "pysyncobj.serializer",
    "pysyncobj.dns_resolver",
    "pysyncobj.transport",
    "pysyncobj.tcp_connection",
)


class RaftLogFields(logging.Filter):
    def __init__(self, raft_node: str) -> None:
        super().__init__()
        self.raft_node = raft_node

    def filter(self, record: logging.LogRecord) -> bool:
        # Attributes set here become JSON fields through structlog's ExtraAdder.
        record.raft_node = self.raft_node
        record.raft_template = str(record.msg)
        if isinstance(record.args, tuple) and record.args:
            record.raft_args = [_plain(a) for a in record.args]
        return True


def _plain(value: object) -> object:
    return value if isinstance(value, (int, float, str, bool, type(None))) else repr(value)


def install(raft_node: str) -> RaftLogFields:
    """Attach the fields to every pysyncobj logger; returns the filter for `uninstall`."""
    fields = RaftLogFields(raft_node)
    for name in _RAFT_LOGGERS:
        logging.getLogger(name).addFilter(fields)
    return fields


def uninstall(fields: RaftLogFields) -> None:
    for name in _RAFT_LOGGERS:
        logging.getLogger(name).removeFilter(fields)
