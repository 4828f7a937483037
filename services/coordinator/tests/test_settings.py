import pytest
from pydantic import ValidationError

from marquee_coordinator.settings import CoordinatorSettings


def test_peers_are_read_as_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARQUEE_COORDINATOR_PEERS", "127.0.0.1:7001, 127.0.0.1:7002")
    monkeypatch.setenv("MARQUEE_COORDINATOR_NODE_ID", "2")
    settings = CoordinatorSettings()
    assert settings.peers == ["127.0.0.1:7001", "127.0.0.1:7002"]
    assert settings.node_id == 2


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MARQUEE_COORDINATOR_RAFT_ADDRESS", "no-port"),
        ("MARQUEE_COORDINATOR_RAFT_ADDRESS", "host:99999"),
        ("MARQUEE_COORDINATOR_PEERS", "127.0.0.1:7001,:7002"),
        ("MARQUEE_COORDINATOR_NODE_ID", "0"),
    ],
)
def test_bad_addresses_and_ids_are_refused(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError):
        CoordinatorSettings()


def test_a_cluster_secret_is_required_outside_dev(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARQUEE_COORDINATOR_PROFILE", "prod")
    with pytest.raises(ValidationError, match="cluster_secret is required"):
        CoordinatorSettings()
    monkeypatch.setenv("MARQUEE_COORDINATOR_CLUSTER_SECRET", "s3cret")
    assert CoordinatorSettings().cluster_secret is not None


def test_the_admin_credential_is_the_admin_token_or_else_the_cluster_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MARQUEE_COORDINATOR_CLUSTER_SECRET", "s3cret")
    assert CoordinatorSettings().admin_credential is None  # dev: the admin calls are open
    monkeypatch.setenv("MARQUEE_COORDINATOR_PROFILE", "prod")
    assert CoordinatorSettings().admin_credential == "s3cret"
    monkeypatch.setenv("MARQUEE_COORDINATOR_ADMIN_TOKEN", "t0ken")
    assert CoordinatorSettings().admin_credential == "t0ken"
    monkeypatch.setenv("MARQUEE_COORDINATOR_ADMIN_TOKEN", " ")
    with pytest.raises(ValidationError, match="must not be empty"):
        CoordinatorSettings()
