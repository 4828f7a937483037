"""The images' entrypoint: secrets from files, a StatefulSet member's identity, then exec.

    python /opt/marquee/entrypoint.py MODULE     (e.g. marquee_coordinator)

1. Secret files. Every file in /run/secrets (where compose mounts `secrets:`)
   whose name is a setting variable (`MARQUEE_...`)
   becomes that variable, unless the environment already sets it. The services
   read settings from the environment only; this keeps secrets out of
   compose.yaml and out of `docker inspect`. Trailing newlines are dropped.
2. Coordinator identity under a StatefulSet. With COORDINATOR_PEER_DOMAIN set
   (the headless Service's domain, e.g. `coordinator-peers.marquee.svc.cluster.local`),
   a pod named `<set>-<ordinal>` gets NODE_ID = ordinal + 1, RAFT_ADDRESS and
   ADVERTISE_ADDRESS = its stable DNS name, and PEERS = the other members a
   member with this ordinal can have: ordinals 0 .. max(COORDINATOR_INITIAL_MEMBERS,
   ordinal + 1) - 1. That is the initial cluster for the first members and, for
   a member added later with MemberAdd (ordinal n after members 0..n-1), the
   membership it joins; the Raft log keeps membership changes, so a restart
   with these PEERS converges to the current members. Explicit MARQUEE_
   variables win. It then waits (bounded) until its own name resolves, as
   pysyncobj binds the Raft port to that name.
3. exec `python -m MODULE`: the service replaces this process (PID 1), so the
   runtime's SIGTERM reaches it and starts its drain.

Stdlib only, no network besides DNS.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import time
from collections.abc import Mapping, MutableMapping
from pathlib import Path

SETTING_FILE = re.compile(r"^MARQUEE_[A-Z0-9_]+$")
ORDINAL = re.compile(r"^(?P<set>.+)-(?P<ordinal>\d+)$")
DNS_WAIT_SECONDS = 120.0
SECRETS_DIR = Path("/run/secrets")


def load_secret_files(env: MutableMapping[str, str], directory: Path) -> list[str]:
    """Set env[NAME] from directory/NAME for every setting-named file; the names set."""
    loaded: list[str] = []
    if not directory.is_dir():
        return loaded
    for path in sorted(directory.iterdir()):
        if SETTING_FILE.match(path.name) and path.is_file() and path.name not in env:
            env[path.name] = path.read_text().rstrip("\r\n")
            loaded.append(path.name)
    return loaded


def coordinator_identity(hostname: str, env: Mapping[str, str]) -> dict[str, str]:
    """The MARQUEE_COORDINATOR_* settings of StatefulSet member `hostname`."""
    domain = env["COORDINATOR_PEER_DOMAIN"]
    match = ORDINAL.match(hostname)
    if match is None:
        raise SystemExit(f"entrypoint: pod name {hostname!r} has no StatefulSet ordinal")
    name, ordinal = match.group("set"), int(match.group("ordinal"))
    initial = int(env.get("COORDINATOR_INITIAL_MEMBERS", "3"))
    raft_port = int(env.get("COORDINATOR_RAFT_PORT", "50250"))
    grpc_port = int(env.get("MARQUEE_COORDINATOR_GRPC_PORT", "50054"))

    def host(n: int) -> str:
        return f"{name}-{n}.{domain}"

    members = range(max(initial, ordinal + 1))
    return {
        "MARQUEE_COORDINATOR_NODE_ID": str(ordinal + 1),
        "MARQUEE_COORDINATOR_RAFT_ADDRESS": f"{host(ordinal)}:{raft_port}",
        "MARQUEE_COORDINATOR_ADVERTISE_ADDRESS": f"{host(ordinal)}:{grpc_port}",
        "MARQUEE_COORDINATOR_PEERS": ",".join(
            f"{host(n)}:{raft_port}" for n in members if n != ordinal
        ),
    }


def wait_for_name(host: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.getaddrinfo(host, None)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"entrypoint: {host} did not resolve in {timeout:.0f} s") from None
            time.sleep(1.0)


def main(argv: list[str]) -> None:
    if len(argv) != 2 or not re.fullmatch(r"marquee_[a-z_]+", argv[1]):
        raise SystemExit("usage: entrypoint.py marquee_<service>")
    module = argv[1]
    env = os.environ
    load_secret_files(env, SECRETS_DIR)
    if module == "marquee_coordinator" and env.get("COORDINATOR_PEER_DOMAIN"):
        for key, value in coordinator_identity(socket.gethostname(), env).items():
            env.setdefault(key, value)
        raft_host = env["MARQUEE_COORDINATOR_RAFT_ADDRESS"].rpartition(":")[0]
        wait_for_name(raft_host, DNS_WAIT_SECONDS)
    os.execv(sys.executable, [sys.executable, "-m", module])  # noqa: S606 (a fixed argv)


if __name__ == "__main__":
    main(sys.argv)
