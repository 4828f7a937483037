"""Entry point: `python -m marquee_auth`."""

from marquee_auth.app import register
from marquee_auth.settings import AuthSettings
from marquee_platform import run_service

if __name__ == "__main__":
    run_service("auth", AuthSettings, register)
