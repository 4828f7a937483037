"""Entry point: `python -m marquee_coordinator`."""

from marquee_coordinator.app import register
from marquee_coordinator.settings import CoordinatorSettings
from marquee_platform import run_service

if __name__ == "__main__":
    run_service("coordinator", CoordinatorSettings, register)
