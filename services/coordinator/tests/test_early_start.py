"""The Raft node started before the platform: the same NodeConfig the settings give, or none."""

from pathlib import Path

import pytest
from pydantic import SecretStr

from marquee_coordinator.early_start import config_from_environment
from marquee_coordinator.raft_config import FAST_TIMING, NodeConfig, RaftTiming
from marquee_coordinator.settings import CoordinatorSettings

BASE = {
    "MARQUEE_COORDINATOR_NODE_ID": "2",
    "MARQUEE_COORDINATOR_RAFT_ADDRESS": "127.0.0.1:7002",
}


def from_settings(monkeypatch: pytest.MonkeyPatch, environ: dict[str, str]) -> NodeConfig:
    """What app.register builds from the validated settings for this environment."""
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    settings = CoordinatorSettings()
    timing = FAST_TIMING if settings.raft_timing == "fast" else RaftTiming()
    return NodeConfig.from_settings(settings, client_address=settings.client_address, timing=timing)


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {
            "MARQUEE_COORDINATOR_PEERS": "127.0.0.1:7001, 127.0.0.1:7002,127.0.0.1:7003",
            "MARQUEE_COORDINATOR_DATA_DIR": "/var/lib/coordinator",
            "MARQUEE_COORDINATOR_CLUSTER_SECRET": "s3cret",
            "MARQUEE_COORDINATOR_PROFILE": "prod",
            "MARQUEE_COORDINATOR_RAFT_TIMING": "fast",
            "MARQUEE_COORDINATOR_GRPC_HOST": "0.0.0.0",
            "MARQUEE_COORDINATOR_GRPC_PORT": "50051",
            "MARQUEE_COORDINATOR_LOCAL_RENEWAL": "true",
        },
        {
            "MARQUEE_COORDINATOR_GRPC_PORT": "50051",
            "MARQUEE_COORDINATOR_ADVERTISE_ADDRESS": "coordinator-2:50051",
            "MARQUEE_COORDINATOR_LOCAL_RENEWAL": "false",
        },
    ],
)
def test_the_early_config_is_the_one_the_settings_give(
    monkeypatch: pytest.MonkeyPatch, extra: dict[str, str]
) -> None:
    environ = {**BASE, **extra}
    assert config_from_environment(environ) == from_settings(monkeypatch, environ)


@pytest.mark.parametrize(
    "environ",
    [
        {"MARQUEE_COORDINATOR_RAFT_ADDRESS": "127.0.0.1:7002"},  # no node id
        {**BASE, "marquee_coordinator_data_dir": "/elsewhere"},  # pydantic reads this too
        {**BASE, "MARQUEE_COORDINATOR_DATA_DIR": ""},  # pydantic reads "" as "."
        {**BASE, "MARQUEE_COORDINATOR_NODE_ID": "+2"},
        {**BASE, "MARQUEE_COORDINATOR_GRPC_PORT": "5e4"},
        {**BASE, "MARQUEE_COORDINATOR_PROFILE": "Prod"},
        {**BASE, "MARQUEE_COORDINATOR_PEERS": "127.0.0.1:7001,:7003"},
        {**BASE, "MARQUEE_COORDINATOR_LOCAL_RENEWAL": "1"},  # pydantic's own reading
    ],
)
def test_anything_unusual_starts_nothing_early(environ: dict[str, str]) -> None:
    assert config_from_environment(environ) is None


def test_a_secret_and_a_path_are_taken_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    environ = {
        **BASE,
        "MARQUEE_COORDINATOR_CLUSTER_SECRET": " s p ",
        "MARQUEE_COORDINATOR_DATA_DIR": "rel/dir",
    }
    config = config_from_environment(environ)
    assert config is not None
    assert config.cluster_secret == " s p " == SecretStr(" s p ").get_secret_value()
    assert config.data_dir == Path("rel/dir")
    assert config == from_settings(monkeypatch, environ)
