"""`marquee cluster` against a prod-profile coordinator: the admin credential is sent or refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from marquee_cli.main import app
from marquee_testing.coordinator import CLUSTER_SECRET, CoordinatorCluster

runner = CliRunner()


@pytest.mark.timeout(180)
def test_transfer_needs_the_admin_credential_outside_dev(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The nodes inherit this environment: a prod cluster, admin token = its cluster secret.
    monkeypatch.setenv("MARQUEE_COORDINATOR_PROFILE", "prod")
    monkeypatch.delenv("MARQUEE_COORDINATOR_ADMIN_TOKEN", raising=False)
    with CoordinatorCluster(tmp_path / "cluster") as cluster:
        cluster.wait_for_leader()
        endpoints = ",".join(node.grpc_address for node in cluster.nodes)
        base = ["cluster", "transfer", "--json", "--endpoints", endpoints, "--timeout", "20"]

        refused = runner.invoke(app, base)
        assert refused.exit_code == 1, refused.output
        assert "UNAUTHENTICATED" in refused.stdout

        wrong = runner.invoke(app, [*base, "--admin-token", "not-the-secret"])
        assert wrong.exit_code == 1, wrong.output
        assert "PERMISSION_DENIED" in wrong.stdout

        moved = runner.invoke(app, base, env={"MARQUEE_COORDINATOR_ADMIN_TOKEN": CLUSTER_SECRET})
        assert moved.exit_code == 0, moved.output
        assert json.loads(moved.stdout)["leader"]["id"]
